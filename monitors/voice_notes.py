"""Voice notes of parse_messages: which are kept (monitors.decisions.voice), their download
through getFile into the audio directory, and their retention.

Kept files are audio_files rows (audio db), deduplicated by file_unique_id, claimed under a lease
for download; files over the size cap end `too_large`, transient failures are retried
(DOWNLOAD_RETRY), and files older than the retention are deleted with their rows.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from monitors import metrics
from monitors.decisions.telegram import Verdict, classify_telegram_response
from monitors.decisions.voice import VoiceLimits, voice_refusal
from monitors.paid_chats import is_paid_chat
from monitors.telegram_client import TelegramClient
from payments.entitlement import entitled_user
from runtime.errors import MonitorError
from runtime.monitor import MonitorContext
from runtime.retry import RetrySchedule

DOWNLOAD_RETRY = RetrySchedule(base_s=30.0, cap_s=3600.0, max_attempts=8, jitter_fraction=0.2)
_AUDIO_KINDS = ("voice", "audio", "video_note")
_EXTENSIONS = {"voice": ".oga", "audio": ".mp3", "video_note": ".mp4"}
#: 1 when the Telegram user may have voice notes kept: a live subscription, or staff.
_ENTITLED_SENDER = f"SELECT 1 FROM users u WHERE u.telegram_id = ? AND {entitled_user('u')}"


class VoiceNotes:
    def __init__(
        self,
        ctx: MonitorContext,
        telegram: TelegramClient,
        *,
        audio_dir: Path,
        limits: VoiceLimits,
        batch_size: int,
        lease_s: float,
    ) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.log = ctx.log
        self.clock = ctx.clock
        self.owner = ctx.owner
        self.telegram = telegram
        self.audio_dir = audio_dir
        self.limits = limits
        self.batch_size = batch_size
        self.lease_s = lease_s

    async def queue(self, row: dict[str, Any], message: dict[str, Any]) -> bool:
        """Queue the voice note a message carries, if kept; True when it carries a kept one."""
        for kind in _AUDIO_KINDS:
            media = message.get(kind)
            if isinstance(media, dict) and media.get("file_unique_id") and media.get("file_id"):
                sender = row["from_user_id"] or (message.get("from") or {}).get("id")
                refusal = await self._refusal(row["chat_id"], sender, media)
                if refusal is not None:
                    metrics.AUDIO_REFUSED.labels(reason=refusal).inc()
                    self.log.info(
                        "audio_refused",
                        reason=refusal,
                        chat_id=row["chat_id"],
                        message_id=row["message_id"],
                    )
                    return False
                await self.db.execute(
                    "INSERT INTO audio_files (file_unique_id, file_id, kind, chat_id, message_id,"
                    " from_user_id, duration_s, size_bytes, mime_type)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file_unique_id) DO NOTHING",
                    (
                        media["file_unique_id"],
                        media["file_id"],
                        kind,
                        row["chat_id"],
                        row["message_id"],
                        sender,
                        media.get("duration"),
                        media.get("file_size"),
                        media.get("mime_type"),
                    ),
                    db="audio",
                )
                return True
        return False

    async def _refusal(self, chat_id: int, sender: int | None, media: dict[str, Any]) -> str | None:
        if await self.db.fetchval(
            "SELECT 1 FROM audio_files WHERE file_unique_id = ?",
            (media["file_unique_id"],),
            db="audio",
        ):
            return None  # already kept: a forward of it costs nothing
        now = self.clock.now()
        chat_allowed = sender is not None and chat_id == sender
        if not chat_allowed:
            chat_allowed = await is_paid_chat(self.db, chat_id)
        entitled = sender is not None and bool(
            await self.db.fetchval(_ENTITLED_SENDER, (sender, now))
        )
        limits = self.limits
        member_used = await self.db.fetchval(
            "SELECT COALESCE(SUM(COALESCE(size_bytes, ?)), 0) FROM audio_files"
            " WHERE from_user_id = ? AND created_at > ?",
            (limits.max_bytes, sender, now - timedelta(days=1)),
            db="audio",
        )
        stored = await self.db.fetchval(
            "SELECT COALESCE(SUM(COALESCE(size_bytes, ?)), 0) FROM audio_files"
            " WHERE status IN ('queued', 'downloading', 'downloaded')",
            (limits.max_bytes,),
            db="audio",
        )
        size = media.get("file_size")
        return voice_refusal(
            limits,
            size=size if isinstance(size, int) else None,
            chat_allowed=chat_allowed,
            sender_entitled=entitled,
            member_used_bytes=int(member_used),
            stored_bytes=int(stored),
        )

    async def download_due(self) -> int:
        """Download the queued files due now; how many were claimed."""
        now = self.clock.now()
        files = await self.db.claim(
            "audio_files",
            db="audio",
            where="status IN ('queued', 'downloading') AND next_attempt_at <= ?",
            params=(now,),
            order_by="id",
            limit=self.batch_size,
            owner=self.owner,
            lease_s=self.lease_s,
            now=now,
        )
        for audio in files:
            if self.ctx.stop_requested:
                await self._update(audio, "queued", None)
                continue
            await self._download_one(audio)
        return len(files)

    async def _download_one(self, audio: dict[str, Any]) -> None:
        limit = self.limits.max_bytes
        if audio["size_bytes"] is not None and audio["size_bytes"] > limit:
            await self._update(audio, "too_large", f"{audio['size_bytes']} bytes")
            metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
            return
        await self._update(audio, "downloading", None, keep_lease=True)
        status, body = await self.telegram.call("getFile", {"file_id": audio["file_id"]})
        outcome = classify_telegram_response(status, body)
        if outcome.verdict is not Verdict.DELIVERED:
            if "too big" in outcome.description.lower():
                await self._update(audio, "too_large", outcome.description)
                metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
                return
            if outcome.verdict is Verdict.BOT_FAULT:
                await self._update(audio, "queued", outcome.description)
                raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
            transient = outcome.verdict in (Verdict.BACKOFF, Verdict.RETRY_AFTER)
            await self._retry(audio, outcome.description, permanent=not transient)
            return
        result = (body or {}).get("result") or {}
        if (result.get("file_size") or 0) > limit:
            await self._update(audio, "too_large", f"{result['file_size']} bytes")
            metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
            return
        relative = Path(str(audio["chat_id"])) / (
            audio["file_unique_id"] + _EXTENSIONS.get(audio["kind"], "")
        )
        download = await self.telegram.download(
            str(result.get("file_path")), self.audio_dir / relative, max_bytes=limit
        )
        if download.too_large:
            await self._update(audio, "too_large", f"more than {limit} bytes")
            metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
            return
        if download.sha256 is None:
            await self._retry(audio, f"download: HTTP {download.status}", permanent=False)
            return
        now = self.clock.now()
        await self.db.execute(
            "UPDATE audio_files SET status = 'downloaded', path = ?, sha256 = ?, size_bytes = ?,"
            " downloaded_at = ?, attempts = attempts + 1, last_error = NULL, updated_at = ?,"
            " lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
            (
                relative.as_posix(),
                download.sha256,
                download.size,
                now,
                now,
                audio["id"],
                self.owner,
            ),
            db="audio",
        )
        metrics.AUDIO_DOWNLOADS.labels(outcome="downloaded").inc()
        self.log.info("audio_downloaded", audio_id=audio["id"], size_bytes=download.size)

    async def expire(self) -> int:
        """Delete the files (and rows) past the retention; how many."""
        cutoff = self.clock.now() - self.limits.retention
        rows = await self.db.fetchall(
            "SELECT id, path FROM audio_files WHERE created_at < ? AND status <> 'downloading'"
            " ORDER BY id LIMIT ?",
            (cutoff, self.batch_size),
            db="audio",
        )
        for audio in rows:
            if audio["path"]:
                # Another replica may have removed it already: gone is what we want.
                (self.audio_dir / audio["path"]).unlink(missing_ok=True)
            await self.db.execute(
                "DELETE FROM audio_files WHERE id = ? AND status <> 'downloading'",
                (audio["id"],),
                db="audio",
            )
        if rows:
            metrics.AUDIO_EXPIRED.inc(len(rows))
            self.log.info("audio_expired", files=len(rows))
        return len(rows)

    async def _update(
        self, audio: dict[str, Any], status: str, error: str | None, *, keep_lease: bool = False
    ) -> None:
        lease = "" if keep_lease else ", lease_owner = NULL, lease_expires_at = NULL"
        await self.db.execute(
            f"UPDATE audio_files SET status = ?, last_error = ?, updated_at = ?{lease}"
            " WHERE id = ? AND lease_owner = ?",
            (status, error, self.clock.now(), audio["id"], self.owner),
            db="audio",
        )

    async def _retry(self, audio: dict[str, Any], error: str, *, permanent: bool) -> None:
        attempts = audio["attempts"] + 1
        now = self.clock.now()
        retry_at = None if permanent else DOWNLOAD_RETRY.next_attempt_at(now, attempts)
        status = "failed" if retry_at is None else "queued"
        await self.db.execute(
            "UPDATE audio_files SET status = ?, attempts = ?, next_attempt_at = ?,"
            " last_error = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (status, attempts, retry_at or now, error[:500], now, audio["id"], self.owner),
            db="audio",
        )
        outcome = "failed" if retry_at is None else "retried"
        metrics.AUDIO_DOWNLOADS.labels(outcome=outcome).inc()
        self.log.warning("audio_download_failed", audio_id=audio["id"], error=error, retry=outcome)
