"""The Monitor base class and the context the runner hands to every monitor."""

from __future__ import annotations

import abc
import asyncio
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self

from runtime.config import Settings
from runtime.monitor.clock import Clock

if TYPE_CHECKING:
    # Annotations only: `domos monitor NAME --check` must stay light (no DB drivers).
    from structlog.stdlib import BoundLogger

    from runtime.db import AsyncDatabase

MonitorMode = Literal["singleton", "claiming"]
MONITOR_MODES: tuple[MonitorMode, ...] = ("singleton", "claiming")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MonitorConfig(Protocol):
    """A monitor's own settings: a frozen dataclass read once from the environment.

    `from_env` raises ConfigError naming the variable, so a bad value stops the process before
    its first tick (and before the database is opened).
    """

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> Self: ...


@dataclass(frozen=True)
class NoConfig:
    """For a monitor that has no settings of its own."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> Self:
        return cls()


@dataclass(frozen=True)
class MonitorContext:
    settings: Settings
    #: The process's database, opened before the first tick.
    db: AsyncDatabase
    #: Bound with `monitor=<name>`; inside a tick the runner also binds `tick_id` (contextvars).
    log: BoundLogger
    clock: Clock
    #: Unique per process: pass it as `owner=` to `db.claim()`.
    owner: str
    #: Set when the process was asked to stop; long ticks may check it between items and return.
    stop_event: asyncio.Event
    #: Long ticks call it after each item done: health and the progress metric then show a
    #: working monitor rather than one whose last success is getting old. Cheap to call often.
    progress: Callable[[], None] = lambda: None
    #: The monitor's own settings, built by `build_config` from the same environment as
    #: `settings`; an instance of the monitor class's `config_type`.
    config: object = NoConfig()

    @property
    def stop_requested(self) -> bool:
        return self.stop_event.is_set()


class Monitor(abc.ABC):
    """A background job: a name, an interval and an async `tick()` that returns the item count.

    `mode = "singleton"`: one instance in the whole deployment ticks (the runner holds the DB
    singleton lock `monitor:<name>`; other instances stand by). `mode = "claiming"`: every replica
    ticks and the monitor takes its work with `ctx.db.claim(..., owner=ctx.owner)`, so no item is
    processed twice.
    """

    name: ClassVar[str]
    interval_s: ClassVar[float]
    mode: ClassVar[MonitorMode] = "singleton"
    #: Random delay added to each slot: `jitter_s` if set, else `jitter_ratio * interval_s`.
    jitter_s: ClassVar[float | None] = None
    jitter_ratio: ClassVar[float] = 0.1
    #: Retry delay after failures: base * 2**(failures-1), capped, with jitter.
    backoff_base_s: ClassVar[float] = 1.0
    backoff_max_s: ClassVar[float] = 300.0
    #: On SIGTERM the tick in flight gets this long to finish before it is cancelled.
    stop_timeout_s: ClassVar[float] = 30.0
    #: How often a standby singleton instance retries the lock (None: min(interval_s, 5 s)).
    lock_retry_s: ClassVar[float | None] = None
    #: The class of `config`; subclasses narrow the `config` annotation to it.
    config_type: ClassVar[type[MonitorConfig]] = NoConfig
    config: Any

    def __init__(self, ctx: MonitorContext) -> None:
        if not isinstance(ctx.config, self.config_type):
            raise TypeError(
                f"{self.name}: ctx.config is a {type(ctx.config).__name__}, "
                f"expected {self.config_type.__name__} (build it with build_config)"
            )
        self.ctx = ctx
        self.db: AsyncDatabase = ctx.db
        self.log = ctx.log
        self.config = ctx.config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls):
            _validate(cls)

    async def setup(self) -> None:
        """Acquire resources the ticks share (HTTP sessions, bots); called once before ticking."""
        return None

    async def teardown(self) -> None:
        """Release what `setup` acquired; called once when the runner stops."""
        return None

    @abc.abstractmethod
    async def tick(self) -> int:
        """Do one round of work and return the number of items processed."""

    @classmethod
    def effective_lock_retry_s(cls) -> float:
        return cls.lock_retry_s if cls.lock_retry_s is not None else min(cls.interval_s, 5.0)


def build_config(
    monitor_cls: type[Monitor], environ: Mapping[str, str], settings: Settings
) -> object:
    """The monitor's own settings from the environment `settings` were read from."""
    return monitor_cls.config_type.from_env(environ, settings)


def _validate(cls: type[Monitor]) -> None:
    where = f"{cls.__module__}.{cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise TypeError(f"{where}.name must be a snake_case identifier, got {name!r}")
    interval = getattr(cls, "interval_s", None)
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
        raise TypeError(f"{where}.interval_s must be a positive number, got {interval!r}")
    if cls.mode not in MONITOR_MODES:
        raise TypeError(f"{where}.mode must be one of {MONITOR_MODES}, got {cls.mode!r}")
    spread = cls.jitter_s if cls.jitter_s is not None else cls.jitter_ratio * interval
    if not 0 <= spread < interval:
        raise TypeError(f"{where}: jitter ({spread} s) must be within [0, interval_s)")
    if cls.backoff_base_s <= 0 or cls.backoff_max_s < cls.backoff_base_s:
        raise TypeError(f"{where}: need 0 < backoff_base_s <= backoff_max_s")
    if cls.stop_timeout_s < 0:
        raise TypeError(f"{where}.stop_timeout_s must not be negative")
