from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

from monitors.parse_messages import ParseMessages
from tests.integration.monitors import factories
from tests.integration.monitors.conftest import metric, utcnow

NMARKET = -1_002_000_000_001
TRADEAGENT = -1_002_000_000_002
CHAT = -1_002_000_000_003
_message_ids = itertools.count(1)

LISTING = "ЖК Солнечный, 2-к кв 54,3 м², 7/17 эт, 8 450 000 ₽, комиссия 2,5%"
ENV = {"NMARKET_CHATS": str(NMARKET), "TRADEAGENT_CHATS": "@tradeagent_spb"}


async def inbox(
    db: Any,
    chat_id: int,
    text: str | None,
    *,
    username: str | None = None,
    raw: dict[str, Any] | None = None,
    at: Any = None,
) -> int:
    message_id = next(_message_ids)
    kind = "channel_post" if chat_id in (NMARKET, TRADEAGENT) else "message"
    row_id: int = await db.fetchval(
        "INSERT INTO chat_messages (chat_id, message_id, chat_username, kind, text, message_date,"
        " raw) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            chat_id,
            message_id,
            username,
            "voice" if raw and "voice" in raw.get("message", {}) else kind,
            text,
            at or utcnow(),
            raw or {kind: {"message_id": message_id, "text": text}},
        ),
        db="useful",
    )
    return row_id


async def paid_chat(db: Any, chat_id: int = CHAT) -> None:
    """The chat is one of the community's paid chats (useful messages come from those)."""
    await db.execute(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', TRUE)",
        (chat_id,),
    )


async def statuses(db: Any) -> dict[int, str]:
    rows = await db.fetchall("SELECT id, parse_status FROM chat_messages", db="useful")
    return {row["id"]: row["parse_status"] for row in rows}


async def test_listings_useful_messages_and_unparsed_posts(db, sandbox, monitors):
    await paid_chat(db)
    listing = await inbox(db, NMARKET, LISTING)
    unparsed = await inbox(db, TRADEAGENT, "Доброе утро, коллеги!", username="TradeAgent_SPB")
    useful = await inbox(db, CHAT, "#полезное как оформить налоговый вычет за квартиру")
    plain = await inbox(db, CHAT, "ок")
    before = metric("domos_parse_messages_total", outcome="unparsed")
    monitor = await monitors(ParseMessages, **ENV)
    assert await monitor.tick() == 4
    assert await monitor.tick() == 0

    assert await statuses(db) == {
        listing: "parsed",
        unparsed: "unparsed",
        useful: "parsed",
        plain: "ignored",
    }
    [flat] = await db.fetchall(
        "SELECT f.*, c.name FROM nmarket_flats f JOIN nmarket_complexes c ON c.id = f.complex_id",
        db="nmarket",
    )
    assert (flat["name"], flat["rooms"], flat["area_dm2"]) == ("Солнечный", 2, 5430)
    assert (flat["floor"], flat["floors_total"]) == (7, 17)
    assert (flat["price_minor"], flat["commission_bp"]) == (845_000_000, 250)
    [post] = await db.fetchall("SELECT * FROM tradeagent_posts", db="tradeagent")
    assert (post["status"], post["error"]) == ("unparsed", "no_complex")
    [kept] = await db.fetchall("SELECT * FROM useful_messages", db="useful")
    assert kept["chat_message_id"] == useful
    assert "hashtag:полезное" in kept["matched_rules"]
    assert metric("domos_parse_messages_total", outcome="unparsed") - before == 1


async def test_price_history_grows_once_per_post(db, sandbox, monitors):
    first_seen = utcnow() - timedelta(days=2)
    first = await inbox(db, NMARKET, LISTING, at=first_seen)
    await inbox(db, NMARKET, LISTING.replace("8 450 000", "8 300 000"))
    monitor = await monitors(ParseMessages, **ENV)
    await monitor.tick()
    # An edit (or a crash after the writes) parses the first post again: nothing is added.
    await db.execute(
        "UPDATE chat_messages SET parse_status = 'pending' WHERE id = ?", (first,), db="useful"
    )
    await monitor.tick()

    [flat] = await db.fetchall("SELECT * FROM nmarket_flats", db="nmarket")
    assert flat["price_minor"] == 830_000_000
    assert flat["first_seen_at"] == first_seen
    snapshots = await db.fetchall(
        "SELECT price_minor FROM nmarket_price_snapshots ORDER BY seen_at", db="nmarket"
    )
    assert [s["price_minor"] for s in snapshots] == [845_000_000, 830_000_000]
    assert len(await db.fetchall("SELECT * FROM nmarket_posts", db="nmarket")) == 2


async def test_useful_rules_from_the_admin_apply(db, sandbox, monitors):
    await paid_chat(db)
    await db.execute(
        "INSERT INTO useful_rules (kind, pattern) VALUES ('regex', ?)",
        (r"\bкешбэк\s+\d+%",),
        db="useful",
    )
    hit = await inbox(db, CHAT, "Кешбэк 5% на все объекты")
    monitor = await monitors(ParseMessages, **ENV)
    await monitor.tick()
    [kept] = await db.fetchall("SELECT * FROM useful_messages", db="useful")
    assert kept["chat_message_id"] == hit
    assert kept["matched_rules"] == [r"regex:\bкешбэк\s+\d+%"]


async def test_a_group_anyone_added_the_bot_to_feeds_no_useful_messages(db, sandbox, monitors):
    """Found from outside: a stranger's group with the bot in it put a scam link, tagged
    #полезное, into the staff's list. Only the paid chats and listing channels count."""
    await paid_chat(db)
    elsewhere = await inbox(db, -1_007_770_001, "#полезное купите крипту https://scam.example")
    ours = await inbox(db, CHAT, "#полезное как оформить налоговый вычет за квартиру")
    monitor = await monitors(ParseMessages, **ENV)
    await monitor.tick()

    assert await statuses(db) == {elsewhere: "ignored", ours: "parsed"}
    [kept] = await db.fetchall("SELECT * FROM useful_messages", db="useful")
    assert kept["chat_message_id"] == ours


async def voice_message(
    sandbox: Any, size: int, *, user: int | None = None, chat_id: int | None = None
) -> dict[str, Any]:
    """A voice note at the sandbox: by `user` (a new Telegram user if None), in `chat_id` (the
    user's private chat with the bot if None)."""
    body: dict[str, Any] = {"user_id": user or await sandbox.new_user(), "size": size}
    if chat_id is not None:
        body["chat_id"] = chat_id
    message: dict[str, Any] = await sandbox.control(
        "POST", "/telegram/voice", {**body, "duration": 4}
    )
    return message


async def paying_member(db: Any, sandbox: Any) -> int:
    """The Telegram id of a member with a live subscription."""
    user = await factories.member(db, sandbox)
    await factories.subscription(db, user, await factories.tariff(db))
    return int(user["telegram_id"])


async def voice_inbox(db: Any, note: dict[str, Any]) -> int:
    return await inbox(db, note["chat"]["id"], None, raw={"message": note})


async def test_voice_notes_are_downloaded_once_within_the_size_limit(db, sandbox, monitors):
    member = await paying_member(db, sandbox)
    small = await voice_message(sandbox, 3000, user=member)
    big = await voice_message(sandbox, 9000, user=member)
    undeclared = await voice_message(sandbox, 9000, user=member)
    del undeclared["voice"]["file_size"]  # only getFile tells its size
    await voice_inbox(db, small)
    await voice_inbox(db, small)  # forwarded again: same file_unique_id
    await voice_inbox(db, big)
    await voice_inbox(db, undeclared)
    before = metric("domos_audio_downloads_total", outcome="downloaded")
    refused = metric("domos_audio_refused_total", reason="too_large")
    monitor = await monitors(
        ParseMessages, AUDIO_MAX_BYTES="5000", AUDIO_MEMBER_MB_PER_DAY="1", **ENV
    )
    await monitor.tick()
    await monitor.tick()

    rows = {
        row["file_unique_id"]: row
        for row in await db.fetchall("SELECT * FROM audio_files", db="audio")
    }
    assert len(rows) == 2
    done = rows[small["voice"]["file_unique_id"]]
    assert (done["status"], done["size_bytes"], done["duration_s"]) == ("downloaded", 3000, 4)
    path = Path(monitor.config.audio_dir) / done["path"]
    assert path.stat().st_size == 3000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == done["sha256"]
    assert big["voice"]["file_unique_id"] not in rows  # refused before any download
    assert metric("domos_audio_refused_total", reason="too_large") - refused == 1
    assert rows[undeclared["voice"]["file_unique_id"]]["status"] == "too_large"
    assert not any(p.name.endswith(".part") for p in path.parent.iterdir())
    assert metric("domos_audio_downloads_total", outcome="downloaded") - before == 1


async def test_voice_notes_only_from_members_in_paid_or_private_chats(db, sandbox, monitors):
    member = await paying_member(db, sandbox)
    lapsed = await factories.member(db, sandbox)
    await factories.subscription(
        db, lapsed, await factories.tariff(db), status="expired", ends_in=timedelta(days=-5)
    )
    staff = await factories.member(db, sandbox, role="staff")
    paid = await factories.managed_chat(db, sandbox)
    strangers = -1_003_000_000_000 - next(_message_ids)
    await sandbox.control("POST", "/telegram/chats", {"id": strangers, "type": "supergroup"})
    kept = [
        await voice_message(sandbox, 1000, user=member),
        await voice_message(sandbox, 1000, user=member, chat_id=paid["telegram_chat_id"]),
        await voice_message(sandbox, 1000, user=staff["telegram_id"]),
    ]
    refused = {
        "not_a_paid_chat": await voice_message(sandbox, 1000, user=member, chat_id=strangers),
        "not_a_member": await voice_message(sandbox, 1000, user=lapsed["telegram_id"]),
    }
    stranger = await voice_message(sandbox, 1000)  # never registered, in their private chat
    for note in [*kept, *refused.values(), stranger]:
        await voice_inbox(db, note)
    before = {r: metric("domos_audio_refused_total", reason=r) for r in refused}
    not_member = metric("domos_audio_refused_total", reason="not_a_member")
    monitor = await monitors(ParseMessages, **ENV)
    await monitor.tick()

    rows = await db.fetchall("SELECT file_unique_id FROM audio_files", db="audio")
    assert {r["file_unique_id"] for r in rows} == {n["voice"]["file_unique_id"] for n in kept}
    assert metric("domos_audio_refused_total", reason="not_a_paid_chat") == (
        before["not_a_paid_chat"] + 1
    )
    assert metric("domos_audio_refused_total", reason="not_a_member") - not_member == 2
    # The messages themselves are parsed as usual: only the files are refused.
    assert set((await statuses(db)).values()) <= {"parsed", "ignored"}


async def test_voice_quotas_per_member_and_in_total(db, sandbox, monitors):
    anna, boris, vera = [await paying_member(db, sandbox) for _ in range(3)]
    # Each 400 kB; a member may queue 1 MB a day and all of them 1 MB at once.
    notes = {
        name: [await voice_message(sandbox, 400_000, user=user) for _ in range(3)]
        for name, user in (("anna", anna), ("boris", boris), ("vera", vera))
    }
    for note in notes["anna"]:
        await voice_inbox(db, note)
    monitor = await monitors(ParseMessages, AUDIO_MEMBER_MB_PER_DAY="1", AUDIO_TOTAL_MB="1", **ENV)
    member_quota = metric("domos_audio_refused_total", reason="member_quota")
    total_quota = metric("domos_audio_refused_total", reason="total_quota")
    await monitor.parse_pending()
    assert len(await db.fetchall("SELECT id FROM audio_files", db="audio")) == 2
    assert metric("domos_audio_refused_total", reason="member_quota") - member_quota == 1

    await voice_inbox(db, notes["boris"][0])
    await monitor.parse_pending()
    assert len(await db.fetchall("SELECT id FROM audio_files", db="audio")) == 2
    assert metric("domos_audio_refused_total", reason="total_quota") - total_quota == 1


async def test_voice_notes_past_retention_are_deleted_with_their_files(db, sandbox, monitors):
    member = await paying_member(db, sandbox)
    old, new = [await voice_message(sandbox, 1500, user=member) for _ in range(2)]
    await voice_inbox(db, old)
    await voice_inbox(db, new)
    monitor = await monitors(ParseMessages, AUDIO_RETENTION_DAYS="30", **ENV)
    await monitor.tick()
    rows = {
        r["file_unique_id"]: r for r in await db.fetchall("SELECT * FROM audio_files", db="audio")
    }
    old_row = rows[old["voice"]["file_unique_id"]]
    old_path = Path(monitor.config.audio_dir) / old_row["path"]
    assert old_path.exists()
    await db.execute(
        "UPDATE audio_files SET created_at = ? WHERE id = ?",
        (utcnow() - timedelta(days=31), old_row["id"]),
        db="audio",
    )
    expired = metric("domos_audio_expired_total")
    assert await monitor.expire_audio() == 1
    left = await db.fetchall("SELECT file_unique_id, path FROM audio_files", db="audio")
    assert [r["file_unique_id"] for r in left] == [new["voice"]["file_unique_id"]]
    assert not old_path.exists()
    assert (Path(monitor.config.audio_dir) / left[0]["path"]).exists()
    assert metric("domos_audio_expired_total") - expired == 1


async def test_a_download_failure_is_retried_later(db, sandbox, monitors):
    note = await voice_message(sandbox, 2000, user=await paying_member(db, sandbox))
    await voice_inbox(db, note)
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 1})
    monitor = await monitors(ParseMessages, **ENV)
    await monitor.tick()
    [row] = await db.fetchall("SELECT * FROM audio_files", db="audio")
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["next_attempt_at"] > utcnow()

    await db.execute("UPDATE audio_files SET next_attempt_at = ?", (utcnow(),), db="audio")
    await monitor.tick()
    [row] = await db.fetchall("SELECT * FROM audio_files", db="audio")
    assert row["status"] == "downloaded"


async def test_an_edited_group_message_reaches_the_inbox_again(db):
    from datetime import UTC, datetime

    from aiogram.types import Message

    from services.bot.handlers.chats import group_message

    sent = int(utcnow().timestamp()) - 60

    def message(text: str, edit_date: int | None) -> Message:
        body = {
            "message_id": 77,
            "date": sent,
            "chat": {"id": CHAT, "type": "supergroup", "title": "Агенты"},
            "from": {"id": 700_000_123, "is_bot": False, "first_name": "Анна"},
            "text": text,
        }
        if edit_date is not None:
            body["edit_date"] = edit_date
        return Message.model_validate(body)

    await group_message(message("Продаю 1к", None), db, utcnow)
    # Telegram gives edit_date in Unix time: it is stored as a time, and parsed again.
    await group_message(message("Продаю 1к, торг", sent + 30), db, utcnow)
    [row] = await db.fetchall(
        "SELECT text, edited_at, parse_status FROM chat_messages WHERE chat_id = ?",
        (CHAT,),
        db="useful",
    )
    assert row["text"] == "Продаю 1к, торг"
    assert row["edited_at"] == datetime.fromtimestamp(sent + 30, UTC)
    assert row["parse_status"] == "pending"
