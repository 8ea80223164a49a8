"""YooKassa's error object: `{"type": "error", "id", "code", "description", "parameter"?}`."""

from __future__ import annotations

from typing import Any

from runtime.errors import DomosError

#: HTTP status for each documented error code.
STATUS_BY_CODE = {
    "invalid_request": 400,
    "invalid_credentials": 401,
    "forbidden": 403,
    "not_found": 404,
    "too_many_requests": 429,
    "internal_server_error": 500,
}


class YooKassaApiError(DomosError):
    def __init__(self, code: str, description: str, parameter: str | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameter = parameter

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]

    def body(self, error_id: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "error",
            "id": error_id,
            "code": self.code,
            "description": self.description,
        }
        if self.parameter is not None:
            data["parameter"] = self.parameter
        return data


def invalid(description: str, parameter: str | None = None) -> YooKassaApiError:
    return YooKassaApiError("invalid_request", description, parameter)


def missing(parameter: str) -> YooKassaApiError:
    return invalid(f"Required parameter {parameter} is missing", parameter)


def bad_value(parameter: str) -> YooKassaApiError:
    return invalid(f"Value of parameter {parameter} is invalid", parameter)
