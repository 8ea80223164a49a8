"""Progress: a rich progress bar on a terminal, structured log lines otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

log = structlog.get_logger("domos.migrate")


class PhaseProgress:
    """Counts units of one phase (rows copied, rows verified)."""

    def __init__(self, phase: str, total: int, *, enabled: bool | None = None) -> None:
        self.phase = phase
        self.total = total
        self.done = 0
        tty = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if tty:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> PhaseProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.phase, total=self.total)
        return self

    def add_total(self, units: int) -> None:
        """More units than announced (a table copied again)."""
        self.total += units
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=self.total)

    def advance(self, units: int, **fields: Any) -> None:
        self.done += units
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=units)
        else:
            log.info(f"{self.phase}_progress", done=self.done, total=self.total, **fields)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
