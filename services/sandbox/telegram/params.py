"""Method parameters from any of the four request forms Telegram accepts.

Query string, `application/x-www-form-urlencoded`, `application/json` and `multipart/form-data`
are merged into one mapping. Form values are strings; objects (reply_markup, allowed_updates,
commands) arrive in forms as JSON-serialized strings and are decoded on read.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from services.sandbox.telegram.errors import TelegramApiError, bad_request


class Upload:
    """A file sent in the request body."""

    __slots__ = ("content", "content_type", "filename")

    def __init__(self, filename: str, content: bytes, content_type: str) -> None:
        self.filename = filename
        self.content = content
        self.content_type = content_type


async def read_params(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise bad_request("JSON request body must be an object")
            values.update(body)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, FileField):
                    values[key] = Upload(
                        value.filename, value.file.read(), value.content_type or ""
                    )
                else:
                    values[key] = value
    return Params(values)


class Params:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" else value

    def has(self, name: str) -> bool:
        return self.raw(name) is not None

    def text(self, name: str, *, empty_error: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None:
            if empty_error is not None:
                raise bad_request(empty_error)
            return None
        if isinstance(value, Upload):
            raise bad_request(f'field "{name}" must be of type String')
        if isinstance(value, (dict, list)):
            raise bad_request(f'field "{name}" must be of type String')
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def integer(self, name: str, *, empty_error: str | None = None) -> int | None:
        value = self.raw(name)
        if value is None:
            if empty_error is not None:
                raise bad_request(empty_error)
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad_request(f"invalid {name} specified")

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return value != 0
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise bad_request(f"invalid {name} specified")

    def json_value(self, name: str, error: str) -> Any:
        """An object or array: taken as is from JSON bodies, decoded from strings in forms."""
        value = self.raw(name)
        if value is None or isinstance(value, (dict, list)):
            return value
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error) from None
        raise bad_request(error)

    def chat_id(self) -> int | str:
        """`chat_id`: an integer id or `@channelusername`."""
        value = self.raw("chat_id")
        if value is None:
            raise bad_request("chat_id is empty")
        if isinstance(value, bool):
            raise bad_request("chat not found")
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.startswith("@"):
            return text
        try:
            return int(text)
        except ValueError:
            raise bad_request("chat not found") from None

    def user_id(self) -> int:
        user_id = self.integer("user_id", empty_error="user_id is empty")
        assert user_id is not None
        return user_id


def require(condition: bool, error: TelegramApiError) -> None:
    if not condition:
        raise error
