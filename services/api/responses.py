"""A validated model answered as JSON without FastAPI's second pass over it.

An endpoint that returns a model has FastAPI validate it again against `response_model` and then
serialize it: the model was already built (and so checked) by the handler, so the second
validation is pure cost on the hot reads (bench/api). Returning `model_response(model)` serializes
it once with pydantic's own serializer; `response_model` on the route still documents the body.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(
        model.__pydantic_serializer__.to_json(model, by_alias=True),
        status_code=status_code,
        media_type="application/json",
    )
