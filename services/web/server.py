"""gunicorn, embedded: `domos web` runs it in-process (no shell, no config file)."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication


class WebServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from services.web.wsgi import application

        return application


def configure_program_logging(*_: Any) -> None:
    from runtime.config import Settings
    from runtime.logging import configure_logging

    configure_logging(Settings.from_env())


def _worker_exited(server: Any, worker: Any) -> None:
    # Multiprocess metrics: a dead worker's live gauges must not be reported any more.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def run_gunicorn(*, host: str, port: int, workers: int) -> int:
    configure_program_logging()
    WebServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "sync",
            "timeout": 30,
            # SIGTERM: stop accepting, let requests in flight finish within this many seconds;
            # below supervisord's stopwaitsecs (20), so a slow request is not SIGKILLed first.
            "graceful_timeout": 10,
            "accesslog": None,
            "errorlog": "-",
            # gunicorn's own lines in the program's log format, not gunicorn's.
            "logger_class": "services.common.gunicorn_logging.RootLogger",
            "post_fork": lambda server, worker: configure_program_logging(),
            "child_exit": _worker_exited,
            "proc_name": "domos-web",
            # No gunicornc control socket under $HOME/.gunicorn (root-owned in the image, shared
            # by every checkout on a laptop): supervisord is the control interface.
            "control_socket_disable": True,
        }
    ).run()
    return 0
