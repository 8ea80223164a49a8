"""Telegram's error envelope: `{"ok": false, "error_code": …, "description": …, "parameters"?}`."""

from __future__ import annotations

from typing import Any

from runtime.errors import DomosError


class TelegramApiError(DomosError):
    """Raised by a method handler; rendered as Telegram's error envelope."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(detail: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {detail}")


def forbidden(detail: str) -> TelegramApiError:
    return TelegramApiError(403, f"Forbidden: {detail}")


def unauthorized() -> TelegramApiError:
    return TelegramApiError(401, "Unauthorized")


def not_found() -> TelegramApiError:
    return TelegramApiError(404, "Not Found")


def conflict(detail: str) -> TelegramApiError:
    return TelegramApiError(409, f"Conflict: {detail}")


def too_many_requests(retry_after: int) -> TelegramApiError:
    return TelegramApiError(
        429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
    )


CHAT_NOT_FOUND = "chat not found"
USER_NOT_FOUND = "user not found"
BOT_BLOCKED = "bot was blocked by the user"
