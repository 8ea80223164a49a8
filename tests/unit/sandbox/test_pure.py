"""Pure pieces of the sandbox: clock, flood buckets, HTML entities, idempotence, retry delays."""

from __future__ import annotations

import pytest

from services.sandbox.clock import Clock, iso
from services.sandbox.config import FloodLimits
from services.sandbox.telegram.errors import TelegramApiError
from services.sandbox.telegram.formatting import format_text, parse_html
from services.sandbox.telegram.limits import FloodControl
from services.sandbox.webhooks import retry_delay_s
from services.sandbox.yookassa.errors import YooKassaApiError
from services.sandbox.yookassa.idempotence import IdempotenceStore, check_key, fingerprint
from services.sandbox.yookassa.service import cancellation_party, sandbox_uuid


def test_clock_freeze_set_advance() -> None:
    source = [100.0]
    clock = Clock(source=lambda: source[0])
    clock.freeze()
    source[0] = 200.0
    assert clock.now() == 100.0
    clock.set(1_000.0)
    clock.advance(5)
    assert clock.now() == 1_005.0
    clock.unfreeze()
    source[0] = 210.0  # 10 s of real time pass
    assert clock.now() == 1_015.0


def test_iso_has_milliseconds_and_z() -> None:
    assert iso(0.1234) == "1970-01-01T00:00:00.123Z"


@pytest.mark.parametrize(
    ("sends", "expected_retry_after"),
    [(3, None), (4, 1)],
)
def test_per_chat_bucket(sends: int, expected_retry_after: int | None) -> None:
    flood = FloodControl(FloodLimits(per_chat_per_s=1, per_chat_burst=3))
    results = [flood.check(1, 42, False, 0.0) for _ in range(sends)]
    assert results[-1] == expected_retry_after
    assert all(r is None for r in results[:3])


def test_per_bot_limit_spans_chats_and_refills() -> None:
    flood = FloodControl(
        FloodLimits(per_bot_per_s=30, per_bot_burst=30, per_chat_per_s=0, per_group_per_min=0)
    )
    assert all(flood.check(1, chat, False, 0.0) is None for chat in range(30))
    assert flood.check(1, 99, False, 0.0) == 1
    assert flood.check(2, 99, False, 0.0) is None  # another bot has its own budget
    assert flood.check(1, 99, False, 1 / 30) is None


def test_group_limit_is_per_minute() -> None:
    flood = FloodControl(FloodLimits(per_chat_per_s=0, per_group_per_min=20, per_group_burst=20))
    for _ in range(20):
        assert flood.check(1, -100, True, 0.0) is None
    assert flood.check(1, -100, True, 0.0) == 3
    assert flood.check(1, 5, False, 0.0) is None  # private chats have no group budget
    assert flood.check(1, -100, True, 3.0) is None


def test_disabled_limits_never_refuse() -> None:
    flood = FloodControl(FloodLimits(enabled=False))
    assert all(flood.check(1, 1, True, 0.0) is None for _ in range(1000))


@pytest.mark.parametrize(
    ("html", "plain", "entities"),
    [
        ("plain", "plain", []),
        ("<b>bold</b> x", "bold x", [{"type": "bold", "offset": 0, "length": 4}]),
        ("a &lt;b&gt; <i>c</i>", "a <b> c", [{"type": "italic", "offset": 6, "length": 1}]),
        ("😀<u>x</u>", "😀x", [{"type": "underline", "offset": 2, "length": 1}]),
        (
            '<a href="https://t.me/x">link</a>',
            "link",
            [{"type": "text_link", "offset": 0, "length": 4, "url": "https://t.me/x"}],
        ),
    ],
)
def test_parse_html(html: str, plain: str, entities: list[dict[str, object]]) -> None:
    assert parse_html(html) == (plain, entities)


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<marquee>x</marquee>", 'Unsupported start tag "marquee"'),
        ("<b>x</i>", 'Unmatched end tag "i"'),
    ],
)
def test_parse_html_errors(html: str, message: str) -> None:
    with pytest.raises(TelegramApiError) as caught:
        parse_html(html)
    assert caught.value.code == 400
    assert caught.value.description == f"Bad Request: can't parse entities: {message}"


def test_unknown_parse_mode_is_refused() -> None:
    with pytest.raises(TelegramApiError, match="unsupported parse_mode"):
        format_text("x", "BBCode")
    assert format_text("*x*", "MarkdownV2") == ("*x*", [])


def test_idempotence_store_replays_refuses_and_expires() -> None:
    store = IdempotenceStore(retention_s=100)
    first = fingerprint("POST", "/v3/payments", {"a": 1, "b": 2})
    assert first == fingerprint("POST", "/v3/payments", {"b": 2, "a": 1})
    store.remember("k", first, 200, {"id": "p1"}, now=0)
    stored = store.lookup("k", first, now=50)
    assert stored is not None
    assert stored.body == {"id": "p1"}
    other = fingerprint("POST", "/v3/payments", {"a": 1})
    with pytest.raises(YooKassaApiError, match="Idempotence key duplicated"):
        store.lookup("k", other, now=50)
    assert store.lookup("k", other, now=101) is None
    store.remember("k5", first, 500, {"code": "internal_server_error"}, now=0)
    assert store.lookup("k5", first, now=1) is None


@pytest.mark.parametrize("key", [None, "", "   ", "x" * 65])
def test_bad_idempotence_keys(key: str | None) -> None:
    with pytest.raises(YooKassaApiError) as caught:
        check_key(key)
    assert caught.value.parameter == "Idempotence-Key"
    assert caught.value.status == 400


def test_retry_delays_repeat_the_last_interval() -> None:
    intervals = (1.0, 5.0, 30.0)
    assert [retry_delay_s(intervals, n) for n in range(1, 6)] == [1.0, 5.0, 30.0, 30.0, 30.0]
    assert retry_delay_s((), 3) == 0.0


@pytest.mark.parametrize(
    ("reason", "party"),
    [
        ("canceled_by_merchant", "merchant"),
        ("permission_revoked", "yoo_money"),
        ("insufficient_funds", "payment_network"),
        ("card_expired", "payment_network"),
    ],
)
def test_cancellation_party(reason: str, party: str) -> None:
    assert cancellation_party(reason) == party


def test_ids_are_uuid_shaped_and_distinct() -> None:
    ids = {sandbox_uuid(n, 0x000F) for n in range(1, 100)}
    assert len(ids) == 99
    assert all(len(i) == 36 and i.count("-") == 4 for i in ids)
