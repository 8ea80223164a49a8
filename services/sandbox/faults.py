"""Fault injection: the next N calls of one API (or of one Bot API method) fail with a 500 or a
429, or answer after a long delay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultMode = Literal["500", "429", "timeout"]
FAULT_APIS = ("telegram", "yookassa")


@dataclass
class Fault:
    mode: FaultMode
    remaining: int
    delay_s: float
    #: Only calls of this Bot API method (case-insensitive), None for every call of the API.
    method: str | None = None


class Faults:
    def __init__(self) -> None:
        self._pending: dict[str, Fault] = {}

    def arm(
        self, api: str, mode: FaultMode, count: int, delay_s: float, method: str | None = None
    ) -> None:
        if count <= 0:
            self._pending.pop(api, None)
            return
        self._pending[api] = Fault(mode=mode, remaining=count, delay_s=delay_s, method=method)

    def take(self, api: str, method: str | None = None) -> Fault | None:
        """The fault for this call (of `method`, for the Bot API), if one is armed; counts it
        down."""
        fault = self._pending.get(api)
        if fault is None:
            return None
        if fault.method is not None and (method or "").lower() != fault.method.lower():
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            del self._pending[api]
        return fault

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {
            api: {
                "mode": f.mode,
                "remaining": f.remaining,
                "delay_s": f.delay_s,
                "method": f.method,
            }
            for api, f in self._pending.items()
        }

    def reset(self) -> None:
        self._pending.clear()
