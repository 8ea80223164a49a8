"""gunicorn settings of botapi (`gunicorn -c services/botapi/gunicorn_conf.py`).

Sync workers; SIGTERM is gunicorn's graceful stop: workers finish the request in flight within
`graceful_timeout`. Metrics of every worker are added up through prometheus_client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by `domos botapi` before gunicorn starts).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import multiprocess

from runtime.logging import configure_logging
from services.botapi.main import program_settings
from services.botapi.settings import BotApiSettings

# BOTAPI_* have one reader, the one `domos botapi` and the app use; `--bind`/`--workers` win.
_botapi = BotApiSettings.from_env()
bind = f"{_botapi.host}:{_botapi.port}"
workers = _botapi.workers
worker_class = "sync"
timeout = 30
graceful_timeout = 10
# A worker per request at a time: webhook fetches take up to BOTAPI_PROVIDER_TIMEOUT_S.
keepalive = 2
accesslog = None
# gunicorn's own lines go through the program's logging, in the program's format: set up here,
# as the master loads this file before its first line ("Starting gunicorn"), and again in each
# worker when it builds the app.
errorlog = "-"
logger_class = "services.common.gunicorn_logging.RootLogger"
configure_logging(program_settings())
proc_name = "domos-botapi"
# gunicorn 25.1+ opens a control socket (for gunicornc) under $XDG_RUNTIME_DIR or
# $HOME/.gunicorn: $HOME is root-owned in the image (Permission denied), and on a laptop every
# gunicorn of every checkout would share ~/.gunicorn. supervisord is the control interface here.
control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
