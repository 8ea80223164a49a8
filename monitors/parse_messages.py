"""parse_messages: the bot's inbox of chat messages and channel posts, made useful.

Work-claiming, two stages per tick:
1. pending chat_messages (useful db) are claimed and read:
   - posts of the nmarket / tradeagent channels become listings in their database (complex, flat,
     price, commission) with one price snapshot per flat and post date; an unparseable post is
     kept in `<p>_posts` with the parser's reason and counted, and the message is 'unparsed';
   - any text matching the useful rules (env defaults plus the active useful_rules rows:
     hashtags, keywords, link domains, regexes) becomes a useful_messages row;
   - voice notes, audio and video notes are queued in audio_files, deduplicated by
     file_unique_id, when `monitors.decisions.voice` keeps them: from a member (live subscription,
     or staff), in a paid chat or the member's private chat with the bot, within the size cap and
     the per-member and total quotas; refusals are counted by reason.
   Writes are idempotent upserts, so a message parsed twice after a crash changes nothing.
2. queued audio files are claimed and downloaded through getFile into the audio directory,
   refusing files over the size limit (status too_large) and retrying transient failures.
3. audio files older than the retention period are deleted, with their rows.

Settings: NMARKET_CHATS, TRADEAGENT_CHATS (comma-separated chat ids or @usernames), USEFUL_*
(monitors.decisions.useful), AUDIO_DIR (DOMOS_DATA_DIR/audio), AUDIO_MAX_BYTES (20 MB),
AUDIO_MEMBER_MB_PER_DAY (200), AUDIO_TOTAL_MB (10240), AUDIO_RETENTION_DAYS (180),
PARSE_BATCH_SIZE (200), PARSE_LEASE_S (120).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from monitors import metrics
from monitors.decisions.listings import Listing, Unparsed, parse_listing
from monitors.decisions.telegram import Verdict, classify_telegram_response
from monitors.decisions.useful import UsefulRules, UsefulVerdict
from monitors.decisions.voice import REFUSALS, VoiceLimits, voice_refusal
from monitors.telegram_client import TelegramClient
from runtime.config import Env, Settings
from runtime.db import AsyncTransaction
from runtime.errors import DatabaseError, MonitorError
from runtime.monitor import Monitor
from runtime.retry import RetrySchedule

PARSER_VERSION = 1
#: A message whose parsing raised is retried this often before it is marked failed.
MAX_PARSE_ATTEMPTS = 3
DOWNLOAD_RETRY = RetrySchedule(base_s=30.0, cap_s=3600.0, max_attempts=8, jitter_fraction=0.2)
_AUDIO_KINDS = ("voice", "audio", "video_note")
_EXTENSIONS = {"voice": ".oga", "audio": ".mp3", "video_note": ".mp4"}
#: 1 when the Telegram user may have voice notes kept: a live subscription, or staff.
_ENTITLED_SENDER = (
    "SELECT 1 FROM users u WHERE u.telegram_id = ? AND (u.role <> 'member' OR EXISTS ("
    " SELECT 1 FROM subscriptions s WHERE s.user_id = u.id"
    " AND (s.status = 'active' OR (s.status = 'grace' AND s.grace_until > ?))))"
)


def _chat_set(raw: str | None) -> frozenset[str]:
    if raw is None:
        return frozenset()
    return frozenset(item.strip().lstrip("@").lower() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class ParseSettings:
    listing_chats: Mapping[str, frozenset[str]]
    rules: UsefulRules
    audio_dir: Path
    voice: VoiceLimits
    batch_size: int
    lease_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> ParseSettings:
        env = Env(environ)
        data_dir = settings.db.data_dir
        audio_dir = Path(env.text("AUDIO_DIR") or data_dir / "audio")
        return cls(
            listing_chats={
                "nmarket": _chat_set(env.text("NMARKET_CHATS")),
                "tradeagent": _chat_set(env.text("TRADEAGENT_CHATS")),
            },
            rules=UsefulRules.from_env(environ),
            audio_dir=audio_dir if audio_dir.is_absolute() else data_dir / audio_dir,
            voice=VoiceLimits.read(env),
            batch_size=env.integer("PARSE_BATCH_SIZE", 200, minimum=1),
            lease_s=env.number("PARSE_LEASE_S", 120.0, minimum=1.0),
        )

    def listing_source(self, chat_id: int, username: str | None) -> str | None:
        keys = {str(chat_id), (username or "").lower()}
        for source, chats in self.listing_chats.items():
            if keys & chats:
                return source
        return None


def normalized_complex(name: str) -> str:
    folded = name.lower().replace("ё", "е")
    folded = re.sub(r"[«»\"“”„']", " ", folded)
    folded = re.sub(r"^\s*жк\s+", "", folded)
    return " ".join(folded.split())


def area_dm2(area_m2: Decimal | None) -> int | None:
    if area_m2 is None:
        return None
    return int((area_m2 * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def commission_bp(percent: Decimal | None) -> int | None:
    if percent is None:
        return None
    return int((percent * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _message_of(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    for key in ("message", "channel_post", "edited_message", "edited_channel_post"):
        if isinstance(raw.get(key), dict):
            return dict(raw[key])
    return raw


class ParseMessages(Monitor):
    name = "parse_messages"
    interval_s = 10.0
    mode = "claiming"
    config_type = ParseSettings
    config: ParseSettings

    async def setup(self) -> None:
        metrics.start_at_zero(metrics.AUDIO_REFUSED, "reason", REFUSALS)
        self.telegram = TelegramClient(self.ctx.settings)
        await self.telegram.open()

    async def teardown(self) -> None:
        await self.telegram.close()

    async def tick(self) -> int:
        return await self.parse_pending() + await self.download_audio() + await self.expire_audio()

    # --- 1. the inbox ---

    async def parse_pending(self) -> int:
        now = self.ctx.clock.now()
        rows = await self.db.claim(
            "chat_messages",
            db="useful",
            where="parse_status = 'pending'",
            order_by="id",
            limit=self.config.batch_size,
            owner=self.ctx.owner,
            lease_s=self.config.lease_s,
            now=now,
        )
        if not rows:
            return 0
        rules = await self._rules()
        for row in rows:
            try:
                status, error = await self._parse_one(row, rules)
            except DatabaseError as exc:
                await self._parse_failed(row, exc)
                continue
            await self._finish(row, status, error)
        return len(rows)

    async def _rules(self) -> tuple[UsefulRules, list[tuple[re.Pattern[str], str]]]:
        """The env rules merged with the active useful_rules rows (editable in the admin)."""
        base = self.config.rules
        rows = await self.db.fetchall(
            "SELECT kind, pattern FROM useful_rules WHERE is_active ORDER BY id", db="useful"
        )
        by_kind: dict[str, list[str]] = {"hashtag": [], "keyword": [], "link": [], "regex": []}
        for row in rows:
            by_kind[row["kind"]].append(row["pattern"].strip().lstrip("#").lower())
        rules = replace(
            base,
            hashtags=tuple(dict.fromkeys(base.hashtags + tuple(by_kind["hashtag"]))),
            keywords=tuple(dict.fromkeys(base.keywords + tuple(by_kind["keyword"]))),
            link_domains=tuple(dict.fromkeys(base.link_domains + tuple(by_kind["link"]))),
        )
        regexes = []
        for pattern in by_kind["regex"]:
            try:
                regexes.append((re.compile(pattern, re.IGNORECASE), pattern))
            except re.error:
                self.log.warning("useful_rule_invalid_regex", pattern=pattern)
        return rules, regexes

    async def _parse_one(
        self, row: dict[str, Any], rules: tuple[UsefulRules, list[tuple[re.Pattern[str], str]]]
    ) -> tuple[str, str | None]:
        message = _message_of(row["raw"])
        status, error = "ignored", None
        if await self._queue_audio(row, message):
            status = "parsed"
            metrics.MESSAGES_PARSED.labels(outcome="voice").inc()
        source = self.config.listing_source(row["chat_id"], row["chat_username"])
        if source is not None:
            result = parse_listing(row["text"] or "")
            await self._store_listing(source, row, result)
            if isinstance(result, Unparsed):
                status, error = "unparsed", result.reason
                metrics.MESSAGES_PARSED.labels(outcome="unparsed").inc()
                self.log.info("post_unparsed", source=source, reason=result.reason)
            else:
                status = "parsed"
                metrics.MESSAGES_PARSED.labels(outcome="listing").inc()
        verdict = self._useful(row["text"], *rules)
        if verdict.useful:
            await self._store_useful(row, verdict)
            if status == "ignored":
                status = "parsed"
            metrics.MESSAGES_PARSED.labels(outcome="useful").inc()
        if status == "ignored":
            metrics.MESSAGES_PARSED.labels(outcome="plain").inc()
        return status, error

    @staticmethod
    def _useful(
        text: str | None, rules: UsefulRules, regexes: list[tuple[re.Pattern[str], str]]
    ) -> UsefulVerdict:
        verdict = rules.classify(text)
        extra = tuple(
            f"regex:{source}" for pattern, source in regexes if pattern.search(text or "")
        )
        reasons = verdict.reasons + extra
        return UsefulVerdict(bool(reasons), reasons)

    async def _store_useful(self, row: dict[str, Any], verdict: UsefulVerdict) -> None:
        await self.db.execute(
            "INSERT INTO useful_messages (chat_message_id, chat_id, message_id, matched_rules,"
            " score, text, message_date) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (chat_message_id) DO UPDATE SET matched_rules = excluded.matched_rules,"
            " score = excluded.score, text = excluded.text",
            (
                row["id"],
                row["chat_id"],
                row["message_id"],
                list(verdict.reasons),
                len(verdict.reasons),
                row["text"],
                row["message_date"],
            ),
            db="useful",
        )

    async def _queue_audio(self, row: dict[str, Any], message: dict[str, Any]) -> bool:
        for kind in _AUDIO_KINDS:
            media = message.get(kind)
            if isinstance(media, dict) and media.get("file_unique_id") and media.get("file_id"):
                sender = row["from_user_id"] or (message.get("from") or {}).get("id")
                refusal = await self._voice_refusal(row["chat_id"], sender, media)
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

    async def _voice_refusal(
        self, chat_id: int, sender: int | None, media: dict[str, Any]
    ) -> str | None:
        if await self.db.fetchval(
            "SELECT 1 FROM audio_files WHERE file_unique_id = ?",
            (media["file_unique_id"],),
            db="audio",
        ):
            return None  # already kept: a forward of it costs nothing
        now = self.ctx.clock.now()
        chat_allowed = sender is not None and chat_id == sender
        if not chat_allowed:
            chat_allowed = bool(
                await self.db.fetchval(
                    "SELECT is_managed FROM chats WHERE telegram_chat_id = ?", (chat_id,)
                )
            )
        entitled = sender is not None and bool(
            await self.db.fetchval(_ENTITLED_SENDER, (sender, now))
        )
        limits = self.config.voice
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

    async def _store_listing(
        self, source: str, row: dict[str, Any], result: Listing | Unparsed
    ) -> None:
        p = source  # table prefix and logical database name
        seen = row["message_date"]
        parsed = isinstance(result, Listing)
        async with self.db.transaction(db=source) as tx:
            post_id = await tx.fetchval(
                f"INSERT INTO {p}_posts (chat_id, message_id, message_date, text, status,"
                " flats_found, error, parser_version, parsed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (chat_id, message_id) DO UPDATE SET text = excluded.text,"
                " status = excluded.status, flats_found = excluded.flats_found,"
                " error = excluded.error, parser_version = excluded.parser_version,"
                " parsed_at = excluded.parsed_at RETURNING id",
                (
                    row["chat_id"],
                    row["message_id"],
                    seen,
                    row["text"],
                    "parsed" if parsed else "unparsed",
                    len(result.flats) if isinstance(result, Listing) else 0,
                    None if isinstance(result, Listing) else result.reason,
                    PARSER_VERSION,
                    self.ctx.clock.now(),
                ),
            )
            if isinstance(result, Listing):
                await self._store_flats(tx, p, result, post_id, seen)

    @staticmethod
    async def _store_flats(
        tx: AsyncTransaction, p: str, listing: Listing, post_id: int, seen: datetime
    ) -> None:
        complex_id = await tx.fetchval(
            f"INSERT INTO {p}_complexes (name, normalized_name, first_seen_at, last_seen_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (normalized_name) DO UPDATE SET"
            f" last_seen_at = CASE WHEN excluded.last_seen_at > {p}_complexes.last_seen_at"
            f" THEN excluded.last_seen_at ELSE {p}_complexes.last_seen_at END RETURNING id",
            (listing.complex_name, normalized_complex(listing.complex_name), seen, seen),
        )
        commission = listing.commission
        for flat in listing.flats:
            area = area_dm2(flat.area_m2)
            key = f"{flat.rooms}|{area}|{flat.floor}"
            newer = f"excluded.last_seen_at >= {p}_flats.last_seen_at"
            flat_id = await tx.fetchval(
                f"INSERT INTO {p}_flats (complex_id, external_key, rooms, area_dm2, floor,"
                " floors_total, price_minor, commission_bp, commission_minor, first_post_id,"
                " last_post_id, first_seen_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (complex_id, external_key) DO UPDATE SET"
                f" price_minor = CASE WHEN {newer} THEN excluded.price_minor"
                f" ELSE {p}_flats.price_minor END,"
                f" commission_bp = CASE WHEN {newer} THEN excluded.commission_bp"
                f" ELSE {p}_flats.commission_bp END,"
                f" commission_minor = CASE WHEN {newer} THEN excluded.commission_minor"
                f" ELSE {p}_flats.commission_minor END,"
                f" last_post_id = CASE WHEN {newer} THEN excluded.last_post_id"
                f" ELSE {p}_flats.last_post_id END,"
                f" last_seen_at = CASE WHEN {newer} THEN excluded.last_seen_at"
                f" ELSE {p}_flats.last_seen_at END RETURNING id",
                (
                    complex_id,
                    key,
                    flat.rooms,
                    area,
                    flat.floor,
                    flat.floors_total,
                    flat.price_rub * 100,
                    commission_bp(commission.percent) if commission else None,
                    commission.amount_rub * 100 if commission and commission.amount_rub else None,
                    post_id,
                    post_id,
                    seen,
                    seen,
                ),
            )
            await tx.execute(
                f"INSERT INTO {p}_price_snapshots (flat_id, price_minor, seen_at, post_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (flat_id, seen_at) DO NOTHING",
                (flat_id, flat.price_rub * 100, seen, post_id),
            )

    async def _finish(self, row: dict[str, Any], status: str, error: str | None) -> None:
        now = self.ctx.clock.now()
        await self.db.execute(
            "UPDATE chat_messages SET parse_status = ?, parse_error = ?, parsed_at = ?,"
            " parse_attempts = parse_attempts + 1, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (status, error, now, row["id"], self.ctx.owner),
            db="useful",
        )

    async def _parse_failed(self, row: dict[str, Any], exc: Exception) -> None:
        attempts = row["parse_attempts"] + 1
        status = "failed" if attempts >= MAX_PARSE_ATTEMPTS else "pending"
        self.log.warning("message_parse_failed", chat_message_id=row["id"], error=str(exc))
        await self.db.execute(
            "UPDATE chat_messages SET parse_status = ?, parse_error = ?, parse_attempts = ?,"
            " lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
            (status, str(exc)[:500], attempts, row["id"], self.ctx.owner),
            db="useful",
        )

    # --- 2. voice notes ---

    async def download_audio(self) -> int:
        now = self.ctx.clock.now()
        files = await self.db.claim(
            "audio_files",
            db="audio",
            where="status IN ('queued', 'downloading') AND next_attempt_at <= ?",
            params=(now,),
            order_by="id",
            limit=self.config.batch_size,
            owner=self.ctx.owner,
            lease_s=self.config.lease_s,
            now=now,
        )
        for audio in files:
            if self.ctx.stop_requested:
                await self._audio_update(audio, "queued", None)
                continue
            await self._download_one(audio)
        return len(files)

    async def _download_one(self, audio: dict[str, Any]) -> None:
        limit = self.config.voice.max_bytes
        if audio["size_bytes"] is not None and audio["size_bytes"] > limit:
            await self._audio_update(audio, "too_large", f"{audio['size_bytes']} bytes")
            metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
            return
        await self._audio_update(audio, "downloading", None, keep_lease=True)
        status, body = await self.telegram.call("getFile", {"file_id": audio["file_id"]})
        outcome = classify_telegram_response(status, body)
        if outcome.verdict is not Verdict.DELIVERED:
            if "too big" in outcome.description.lower():
                await self._audio_update(audio, "too_large", outcome.description)
                metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
                return
            if outcome.verdict is Verdict.BOT_FAULT:
                await self._audio_update(audio, "queued", outcome.description)
                raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
            transient = outcome.verdict in (Verdict.BACKOFF, Verdict.RETRY_AFTER)
            await self._audio_retry(audio, outcome.description, permanent=not transient)
            return
        result = (body or {}).get("result") or {}
        if (result.get("file_size") or 0) > limit:
            await self._audio_update(audio, "too_large", f"{result['file_size']} bytes")
            metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
            return
        relative = Path(str(audio["chat_id"])) / (
            audio["file_unique_id"] + _EXTENSIONS.get(audio["kind"], "")
        )
        download = await self.telegram.download(
            str(result.get("file_path")), self.config.audio_dir / relative, max_bytes=limit
        )
        if download.too_large:
            await self._audio_update(audio, "too_large", f"more than {limit} bytes")
            metrics.AUDIO_DOWNLOADS.labels(outcome="too_large").inc()
            return
        if download.sha256 is None:
            await self._audio_retry(audio, f"download: HTTP {download.status}", permanent=False)
            return
        now = self.ctx.clock.now()
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
                self.ctx.owner,
            ),
            db="audio",
        )
        metrics.AUDIO_DOWNLOADS.labels(outcome="downloaded").inc()
        self.log.info("audio_downloaded", audio_id=audio["id"], size_bytes=download.size)

    # --- 3. retention ---

    async def expire_audio(self) -> int:
        cutoff = self.ctx.clock.now() - self.config.voice.retention
        rows = await self.db.fetchall(
            "SELECT id, path FROM audio_files WHERE created_at < ? AND status <> 'downloading'"
            " ORDER BY id LIMIT ?",
            (cutoff, self.config.batch_size),
            db="audio",
        )
        for audio in rows:
            if audio["path"]:
                # Another replica may have removed it already: gone is what we want.
                (self.config.audio_dir / audio["path"]).unlink(missing_ok=True)
            await self.db.execute(
                "DELETE FROM audio_files WHERE id = ? AND status <> 'downloading'",
                (audio["id"],),
                db="audio",
            )
        if rows:
            metrics.AUDIO_EXPIRED.inc(len(rows))
            self.log.info("audio_expired", files=len(rows))
        return len(rows)

    async def _audio_update(
        self, audio: dict[str, Any], status: str, error: str | None, *, keep_lease: bool = False
    ) -> None:
        lease = "" if keep_lease else ", lease_owner = NULL, lease_expires_at = NULL"
        await self.db.execute(
            f"UPDATE audio_files SET status = ?, last_error = ?, updated_at = ?{lease}"
            " WHERE id = ? AND lease_owner = ?",
            (status, error, self.ctx.clock.now(), audio["id"], self.ctx.owner),
            db="audio",
        )

    async def _audio_retry(self, audio: dict[str, Any], error: str, *, permanent: bool) -> None:
        attempts = audio["attempts"] + 1
        now = self.ctx.clock.now()
        retry_at = None if permanent else DOWNLOAD_RETRY.next_attempt_at(now, attempts)
        status = "failed" if retry_at is None else "queued"
        await self.db.execute(
            "UPDATE audio_files SET status = ?, attempts = ?, next_attempt_at = ?,"
            " last_error = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (status, attempts, retry_at or now, error[:500], now, audio["id"], self.ctx.owner),
            db="audio",
        )
        outcome = "failed" if retry_at is None else "retried"
        metrics.AUDIO_DOWNLOADS.labels(outcome=outcome).inc()
        self.log.warning("audio_download_failed", audio_id=audio["id"], error=error, retry=outcome)


MONITOR = ParseMessages
