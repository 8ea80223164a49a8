"""Fault injection: the next N calls of one API fail with a 500 or a 429, or answer after a long
delay."""

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


class Faults:
    def __init__(self) -> None:
        self._pending: dict[str, Fault] = {}

    def arm(self, api: str, mode: FaultMode, count: int, delay_s: float) -> None:
        if count <= 0:
            self._pending.pop(api, None)
            return
        self._pending[api] = Fault(mode=mode, remaining=count, delay_s=delay_s)

    def take(self, api: str) -> Fault | None:
        """The fault for this call, if one is armed; counts it down."""
        fault = self._pending.get(api)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            del self._pending[api]
        return fault

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {
            api: {"mode": f.mode, "remaining": f.remaining, "delay_s": f.delay_s}
            for api, f in self._pending.items()
        }

    def reset(self) -> None:
        self._pending.clear()
