"""parse_messages: the bot's inbox of chat messages and channel posts, made useful.

Work-claiming, two stages per tick:
1. pending chat_messages (useful db) are claimed and read:
   - posts of the nmarket / tradeagent channels become listings in their database (complex, flat,
     price, commission) with one price snapshot per flat and post date; an unparseable post is
     kept in `<p>_posts` with the parser's reason and counted, and the message is 'unparsed';
   - any text of a paid chat or a listing channel matching the useful rules (env defaults plus
     the active useful_rules rows: hashtags, keywords, link domains, regexes) becomes a
     useful_messages row (monitors.paid_chats: not a group anyone added the bot to);
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
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from monitors import metrics
from monitors.decisions.listings import Listing, Unparsed, parse_listing
from monitors.decisions.useful import UsefulRules, UsefulVerdict
from monitors.decisions.voice import REFUSALS, VoiceLimits
from monitors.paid_chats import is_paid_chat
from monitors.telegram_client import TelegramClient
from monitors.voice_notes import VoiceNotes
from runtime.config import Env, Settings
from runtime.db import AsyncTransaction
from runtime.errors import DatabaseError
from runtime.metrics import start_at_zero
from runtime.monitor import Monitor

PARSER_VERSION = 1
#: A message whose parsing raised is retried this often before it is marked failed.
MAX_PARSE_ATTEMPTS = 3


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
        start_at_zero(metrics.AUDIO_REFUSED, "reason", REFUSALS)
        self.telegram = TelegramClient(self.ctx.settings)
        await self.telegram.open()
        self.voice = VoiceNotes(
            self.ctx,
            self.telegram,
            audio_dir=self.config.audio_dir,
            limits=self.config.voice,
            batch_size=self.config.batch_size,
            lease_s=self.config.lease_s,
        )

    async def teardown(self) -> None:
        await self.telegram.close()

    async def tick(self) -> int:
        return await self.parse_pending() + await self.download_audio() + await self.expire_audio()

    async def download_audio(self) -> int:
        return await self.voice.download_due()

    async def expire_audio(self) -> int:
        return await self.voice.expire()

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
        if await self.voice.queue(row, message):
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
        # A group anyone added the bot to is no source of the staff's useful messages.
        community = source is not None or await is_paid_chat(self.db, row["chat_id"])
        verdict = self._useful(row["text"], *rules) if community else UsefulVerdict(False, ())
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


MONITOR = ParseMessages
