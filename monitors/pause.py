"""A test hook for crash tests: stop at a named point so the test can SIGKILL the process there.

Off unless DOMOS_TEST_PAUSE_AT names the point. Then the process writes the point's name to
DOMOS_TEST_PAUSE_FILE (so the test knows it arrived) and waits forever; the test kills it with
SIGKILL, which is exactly a crash at that line. Nothing else reads these variables.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def _announce(name: str) -> None:
    marker = os.environ.get("DOMOS_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(name)


async def pause_point(name: str) -> None:
    if os.environ.get("DOMOS_TEST_PAUSE_AT") != name:
        return
    _announce(name)
    await asyncio.Event().wait()
