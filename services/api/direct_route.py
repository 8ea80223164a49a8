"""DirectRoute: an APIRoute whose arguments are bound by adapters built once, not solved per
request by FastAPI's dependency machinery.

FastAPI documents, routes and answers errors for the route as for any other; only the step from
a request to the endpoint's arguments, and from its result to the response, differs:
- An endpoint may take `Request`, path parameters (an annotated type with `Path(...)`
  constraints) and one JSON body model, nothing else (checked at start-up).
- They are bound as FastAPI binds them: the body is parsed as JSON only under a JSON content
  type and validated in python mode; errors carry the same `loc` and become the same
  RequestValidationError, so the answers do not change (tests/unit/api/test_direct_route.py
  compares them with FastAPI's own binding).
- It returns its response model, serialized once (FastAPI would validate it again first), or
  a Response.

Why: FastAPI 0.165 re-inspects every parameter of every dependant on each request; binding
this way took a fifth off the CPU of a status or token-verify request (bench/api).
"""

from __future__ import annotations

import email.message
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.params import Path as PathParam
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import request_response

Binder = Callable[[Request, dict[str, Any], list[dict[str, Any]]], Awaitable[None]]


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if getattr(self, "max_body_size", None) is None:
            # Starlette's request_response: FastAPI's adds two AsyncExitStacks per request for
            # dependencies with `yield`, which a DirectRoute cannot have (bench/api).
            self.app = request_response(self.get_route_handler())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[..., Awaitable[BaseModel | Response]] = self.endpoint
        binders = [_binder(name, hint) for name, hint in _parameters(endpoint)]
        status_code = self.status_code or 200

        async def handler(request: Request) -> Response:
            arguments: dict[str, Any] = {}
            errors: list[dict[str, Any]] = []
            for bind in binders:
                await bind(request, arguments, errors)
            if errors:
                raise RequestValidationError(errors)
            result = await endpoint(**arguments)
            if isinstance(result, Response):
                return result
            # The model was validated when the endpoint built it: serialized once, where
            # FastAPI would validate it again against response_model first.
            return Response(
                result.__pydantic_serializer__.to_json(result, by_alias=True),
                status_code=status_code,
                media_type="application/json",
            )

        return handler


def _parameters(endpoint: Callable[..., Any]) -> list[tuple[str, Any]]:
    hints = get_type_hints(endpoint, include_extras=True)
    return [(name, hints[name]) for name in inspect.signature(endpoint).parameters]


def _binder(name: str, hint: Any) -> Binder:
    if hint is Request:

        async def bind_request(
            request: Request, arguments: dict[str, Any], errors: list[dict[str, Any]]
        ) -> None:
            arguments[name] = request

        return bind_request
    if get_origin(hint) is Annotated and any(isinstance(a, PathParam) for a in get_args(hint)):
        adapter: TypeAdapter[Any] = TypeAdapter(hint)

        async def bind_path(
            request: Request, arguments: dict[str, Any], errors: list[dict[str, Any]]
        ) -> None:
            try:
                arguments[name] = adapter.validate_python(request.path_params[name])
            except ValidationError as exc:
                errors.extend(_located(exc, ("path", name)))

        return bind_path
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        model = hint

        async def bind_body(
            request: Request, arguments: dict[str, Any], errors: list[dict[str, Any]]
        ) -> None:
            raw = await request.body()
            if not raw:
                errors.append(
                    {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
                )
                return
            value: Any = raw
            if _is_json(request.headers.get("content-type")):
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError as exc:
                    errors.append(
                        {
                            "type": "json_invalid",
                            "loc": ("body", exc.pos),
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": exc.msg},
                        }
                    )
                    return
                except Exception as exc:  # not UTF-8, say: FastAPI answers 400 the same way
                    raise HTTPException(400, "There was an error parsing the body") from exc
            try:
                arguments[name] = model.model_validate(value, from_attributes=True)
            except ValidationError as exc:
                errors.extend(_located(exc, ("body",)))

        return bind_body
    raise TypeError(f"DirectRoute cannot bind parameter {name!r}: {hint!r}")


@functools.lru_cache(maxsize=256)
def _is_json(content_type: str | None) -> bool:
    # Parsed by the email package as FastAPI does, once per distinct header value: clients
    # send a handful, and parsing was a fifth of binding a body (bench/api).
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _located(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    return [{**error, "loc": (*prefix, *error["loc"])} for error in exc.errors()]
