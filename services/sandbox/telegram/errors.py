"""Telegram's error envelope: `{"ok": false, "error_code": …, "description": …, "parameters"?}`."""

from __future__ import annotations

from typing import Any

from runtime.errors import DomosError


class TelegramApiError(DomosError):
    """Raised by a method handler; rendered as Telegram's error envelope."""

    def __init__(
        self,
        code: int,
        description: str,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        parameters = {
            key: value
            for key, value in (
                ("retry_after", self.retry_after),
                ("migrate_to_chat_id", self.migrate_to_chat_id),
            )
            if value is not None
        }
        if parameters:
            body["parameters"] = parameters
        return body


def bad_request(detail: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {detail}")


def chat_migrated(new_chat_id: int) -> TelegramApiError:
    return TelegramApiError(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=new_chat_id,
    )


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
