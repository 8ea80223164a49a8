"""Which voice notes are kept (monitors.decisions.voice)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitors.decisions.voice import MB, VoiceLimits, voice_refusal
from runtime.config import Env
from runtime.errors import ConfigError

LIMITS = VoiceLimits(max_bytes=10 * MB, member_bytes_per_day=25 * MB, total_bytes=100 * MB)


def refusal(**overrides: object) -> str | None:
    facts: dict[str, object] = {
        "size": 1 * MB,
        "chat_allowed": True,
        "sender_entitled": True,
        "member_used_bytes": 0,
        "stored_bytes": 0,
    } | overrides
    return voice_refusal(LIMITS, **facts)  # type: ignore[arg-type]


def test_a_member_in_an_allowed_chat_within_quota_is_kept() -> None:
    assert refusal() is None
    assert refusal(size=10 * MB, member_used_bytes=15 * MB, stored_bytes=90 * MB) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"chat_allowed": False}, "not_a_paid_chat"),
        ({"chat_allowed": False, "sender_entitled": False}, "not_a_paid_chat"),
        ({"sender_entitled": False}, "not_a_member"),
        ({"size": 10 * MB + 1}, "too_large"),
        ({"member_used_bytes": 24 * MB + 1}, "member_quota"),
        ({"stored_bytes": 99 * MB + 1}, "total_quota"),
        # A file that declares no size counts as the largest allowed.
        ({"size": None, "member_used_bytes": 16 * MB}, "member_quota"),
    ],
)
def test_refusals_name_their_reason(overrides: dict[str, object], reason: str) -> None:
    assert refusal(**overrides) == reason


def test_limits_from_the_environment() -> None:
    limits = VoiceLimits.read(
        Env(
            {
                "AUDIO_MAX_BYTES": "1000",
                "AUDIO_MEMBER_MB_PER_DAY": "5",
                "AUDIO_TOTAL_MB": "50",
                "AUDIO_RETENTION_DAYS": "30",
            }
        )
    )
    assert limits == VoiceLimits(1000, 5 * MB, 50 * MB, timedelta(days=30))
    assert VoiceLimits.read(Env({})) == VoiceLimits()
    with pytest.raises(ConfigError, match="AUDIO_TOTAL_MB"):
        VoiceLimits.read(Env({"AUDIO_TOTAL_MB": "0"}))
