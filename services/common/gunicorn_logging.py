"""gunicorn's own log lines (start, workers, signals, timeouts) in the program's log format.

gunicorn gives its `gunicorn.error` logger a handler and format of its own, so under
supervisord its lines came out as `[2026-12-04 18:52:28 +0300] [31849] [INFO] Starting
gunicorn` between the program's JSON or console lines. With `logger_class` set to
`RootLogger` they go to the root logger instead, which `runtime.logging.configure_logging` set
up in the master (and again in each worker).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


class RootLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
