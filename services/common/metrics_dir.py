"""prometheus_client's multiprocess directory for programs whose workers are forked (gunicorn).

No prometheus_client import here: the variable must be set before prometheus_client is first
imported, because it picks its value storage (memory or per-process files) at import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(environ: MutableMapping[str, str], *, program: str) -> str:
    """Set `PROMETHEUS_MULTIPROC_DIR` in `environ` to a clean directory and return it.

    A directory given in `environ` is emptied (stale files of a previous run would add old
    counts); without one, a fresh temporary directory is made.
    """
    path = environ.get(MULTIPROC_ENV)
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
    else:
        path = tempfile.mkdtemp(prefix=f"domos-{program}-metrics-")
    environ[MULTIPROC_ENV] = path
    return path
