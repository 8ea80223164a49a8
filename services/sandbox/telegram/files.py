"""Uploaded media: reading the InputFile field, and image sizes for PhotoSize objects."""

from __future__ import annotations

import struct
from typing import Any

from services.sandbox.telegram.errors import TelegramApiError, bad_request
from services.sandbox.telegram.params import Params, Upload
from services.sandbox.telegram.state import StoredFile, World


def input_file(
    world: World, params: Params, field: str, max_upload_bytes: int
) -> StoredFile | Upload:
    """The file of a send* method: an upload (direct or `attach://name`) or a known file_id."""
    value = params.raw(field)
    if value is None:
        raise bad_request(f"there is no {field} in the request")
    if isinstance(value, str) and value.startswith("attach://"):
        value = params.raw(value.removeprefix("attach://"))
        if not isinstance(value, Upload):
            raise bad_request(f"there is no {field} in the request")
    if isinstance(value, Upload):
        if len(value.content) > max_upload_bytes:
            raise TelegramApiError(413, "Request Entity Too Large")
        if not value.content:
            raise bad_request("file must be non-empty")
        return value
    stored = world.files.get(str(value))
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return stored


def image_size(content: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, GIF or JPEG; (0, 0) when the format is not recognised."""
    if content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) >= 24:
        width, height = struct.unpack(">II", content[16:24])
        return width, height
    if content[:6] in (b"GIF87a", b"GIF89a") and len(content) >= 10:
        width, height = struct.unpack("<HH", content[6:10])
        return width, height
    if content[:2] == b"\xff\xd8":
        return _jpeg_size(content)
    return 0, 0


def _jpeg_size(content: bytes) -> tuple[int, int]:
    index = 2
    while index + 9 < len(content):
        if content[index] != 0xFF:
            index += 1
            continue
        marker = content[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (segment_length,) = struct.unpack(">H", content[index + 2 : index + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", content[index + 5 : index + 9])
            return width, height
        index += 2 + segment_length
    return 0, 0


def file_api(stored: StoredFile, *, with_path: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.size,
    }
    if with_path:
        data["file_path"] = stored.file_path
    return data
