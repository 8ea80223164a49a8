"""Which voice notes are kept: members only, in the paid chats or their own private chat, within
a size cap and per-member and total quotas; kept files expire after a retention period.

Anyone can add the bot to any group and post 20 MB voice notes there; each is a download onto the
disk that also holds PostgreSQL and the backups. So intake is the narrow door, counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from runtime.config import Env

MB = 1024 * 1024

#: Refusal reasons, the label values of domos_audio_refused_total.
REFUSALS = ("not_a_paid_chat", "not_a_member", "too_large", "member_quota", "total_quota")


@dataclass(frozen=True)
class VoiceLimits:
    #: AUDIO_MAX_BYTES: one file; also the size assumed for a file that declares none.
    max_bytes: int = 20 * MB
    #: AUDIO_MEMBER_MB_PER_DAY: what one member may queue in 24 hours.
    member_bytes_per_day: int = 200 * MB
    #: AUDIO_TOTAL_MB: what may be queued or kept at once, all members together.
    total_bytes: int = 10_240 * MB
    #: AUDIO_RETENTION_DAYS: files (and their rows) older than this are deleted.
    retention: timedelta = timedelta(days=180)

    @classmethod
    def read(cls, env: Env) -> VoiceLimits:
        return cls(
            max_bytes=env.integer("AUDIO_MAX_BYTES", 20 * MB, minimum=1),
            member_bytes_per_day=env.integer("AUDIO_MEMBER_MB_PER_DAY", 200, minimum=1) * MB,
            total_bytes=env.integer("AUDIO_TOTAL_MB", 10_240, minimum=1) * MB,
            retention=timedelta(days=env.integer("AUDIO_RETENTION_DAYS", 180, minimum=1)),
        )

    def counted_size(self, size: int | None) -> int:
        """The bytes a file counts for against the quotas."""
        return self.max_bytes if size is None else size


def voice_refusal(
    limits: VoiceLimits,
    *,
    size: int | None,
    chat_allowed: bool,
    sender_entitled: bool,
    member_used_bytes: int,
    stored_bytes: int,
) -> str | None:
    """None to keep the file, else the reason it is refused (one of REFUSALS)."""
    if not chat_allowed:
        return "not_a_paid_chat"
    if not sender_entitled:
        return "not_a_member"
    if size is not None and size > limits.max_bytes:
        return "too_large"
    counted = limits.counted_size(size)
    if member_used_bytes + counted > limits.member_bytes_per_day:
        return "member_quota"
    if stored_bytes + counted > limits.total_bytes:
        return "total_quota"
    return None
