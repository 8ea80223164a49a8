"""The container tests run last, and their images build while the rest of the suite runs.

Building the images from nothing takes about three minutes, most of it waiting on the apt mirror
and PyPI; started when collection ends, the build overlaps the other tests instead of adding to
the suite's wall time. The `stack` fixture waits for it (compose_stack.wait_for_images).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.containers.compose_stack import engine_answers, start_image_build

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    if not ours:
        return
    items[:] = [item for item in items if not item.path.is_relative_to(HERE)] + ours
    if not config.option.collectonly and engine_answers():
        start_image_build()
