"""memberships.status for each Telegram ChatMember (monitors/decisions/membership.py)."""

from __future__ import annotations

import pytest

from monitors.decisions.membership import membership_status


@pytest.mark.parametrize(
    ("status", "is_member", "expected"),
    [
        ("creator", None, "member"),
        ("administrator", None, "member"),
        ("member", None, "member"),
        ("restricted", True, "member"),
        ("restricted", False, "left"),  # restricted, but not in the chat
        ("left", None, "left"),
        ("kicked", None, "banned"),
    ],
)
def test_membership_status(status: str, is_member: bool | None, expected: str) -> None:
    assert membership_status(status, is_member) == expected
