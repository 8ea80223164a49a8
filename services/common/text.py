"""Validation of client text before it reaches either database backend."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field


def storable(value: str) -> str:
    """PostgreSQL refuses NUL characters and lone surrogates cannot be encoded: both become a
    validation error (422/400) instead of a driver error (500)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def storable_json(value: Any) -> Any:
    """The same for a JSON value (JSONB refuses \\u0000 too)."""
    storable(json.dumps(value, ensure_ascii=False))
    return value


#: The JSON-schema form of the NUL rule, so clients (and schemathesis) see it; the validator
#: is what enforces it.
NO_NUL_PATTERN = "^[^\\u0000]*$"

#: A `str` field that both backends can store.
Text = Annotated[
    str, Field(json_schema_extra={"pattern": NO_NUL_PATTERN}), AfterValidator(storable)
]
