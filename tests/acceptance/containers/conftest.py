"""The container tests run last, and their images build while the rest of the suite runs.

Building the images from nothing takes about three minutes, most of it waiting on the apt mirror
and PyPI; started when the session starts (tests/parallel.py), the build overlaps the other tests
instead of adding to the suite's wall time. The `stack` fixture waits for it
(compose_stack.wait_for_images), starting it itself when the session did not. The older
version's image of test_compose_upgrade.py builds after it in the same background job
(build_old_image.sh; about a minute, once per machine: it is reused by its tag).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    if not ours:
        return
    items[:] = [item for item in items if not item.path.is_relative_to(HERE)] + ours
