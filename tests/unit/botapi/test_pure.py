"""Pure parts of botapi: client address behind proxies, allow-list, notification parsing."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.forwarded import client_address, parse_address
from services.botapi.ipallow import YOOKASSA_NETWORKS, allowed
from services.botapi.settings import BotApiSettings
from services.botapi.webhook import parse_notification, status_confirms

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("203.0.113.5", None, "203.0.113.5"),
        # an untrusted peer cannot choose its address
        ("203.0.113.5", "185.71.76.1", "203.0.113.5"),
        ("10.0.0.1", "185.71.76.1", "185.71.76.1"),
        # the right-most untrusted hop wins; what the client prepended is ignored
        ("10.0.0.1", "185.71.76.1, 198.51.100.2", "198.51.100.2"),
        ("10.0.0.1", "198.51.100.2, 10.0.0.7", "198.51.100.2"),
        ("127.0.0.1", "not-an-ip", None),
        ("::ffff:203.0.113.5", None, "203.0.113.5"),
        (None, None, None),
    ],
)
def test_client_address(remote: str | None, forwarded: str | None, client: str | None) -> None:
    found = client_address(remote, forwarded, PROXIES)
    assert (None if found is None else str(found)) == client


def test_allow_list() -> None:
    assert allowed(parse_address("1.2.3.4"), None)
    assert allowed(parse_address("185.71.76.31"), YOOKASSA_NETWORKS)
    assert not allowed(parse_address("185.71.76.32"), YOOKASSA_NETWORKS)
    assert allowed(parse_address("2a02:5180::1"), YOOKASSA_NETWORKS)
    assert not allowed(None, YOOKASSA_NETWORKS)


def test_settings_parse_the_allow_list() -> None:
    assert BotApiSettings.from_env({}).webhook_allowlist is None
    assert BotApiSettings.from_env({"BOTAPI_WEBHOOK_ALLOWLIST": "off"}).webhook_allowlist is None
    networks = BotApiSettings.from_env(
        {"BOTAPI_WEBHOOK_ALLOWLIST": "yookassa, 192.0.2.0/24"}
    ).webhook_allowlist
    assert networks is not None
    assert len(networks) == len(YOOKASSA_NETWORKS) + 1
    with pytest.raises(ConfigError, match="BOTAPI_TRUSTED_PROXIES"):
        BotApiSettings.from_env({"BOTAPI_TRUSTED_PROXIES": "10.0.0.0/33"})


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        (
            {"type": "notification", "event": "payment.succeeded", "object": {"id": "2d-1_a"}},
            ("payment.succeeded", "2d-1_a"),
        ),
        ([], "body must be a JSON object"),
        ({"type": "x", "event": "e", "object": {"id": "a"}}, "type must be 'notification'"),
        ({"type": "notification", "object": {"id": "a"}}, "event is required"),
        ({"type": "notification", "event": "deal.closed", "object": {"id": "../x"}}, "object.id"),
        ({"type": "notification", "event": "deal.closed", "object": "a"}, "object.id"),
        # Not an event name: refused before anything logs it (a megabyte of it, say).
        ({"type": "notification", "event": "x" * 1_000_000, "object": {"id": "a"}}, "event must"),
        ({"type": "notification", "event": "deal.closed\n{}", "object": {"id": "a"}}, "event must"),
        ({"type": "notification", "event": "e", "object": {"id": "a"}}, "event must"),
    ],
)
def test_parse_notification(body: Any, parsed: Any) -> None:
    result = parse_notification(body)
    if isinstance(parsed, tuple):
        assert result == parsed
    else:
        assert isinstance(result, str)
        assert result.startswith(parsed)


@pytest.mark.parametrize(
    ("event", "fetched", "confirms"),
    [
        ("payment.succeeded", "succeeded", True),
        ("payment.succeeded", "pending", False),
        ("payment.canceled", "canceled", True),
        ("payment.canceled", "succeeded", False),
        ("payment.waiting_for_capture", "waiting_for_capture", True),
        ("payment.waiting_for_capture", "succeeded", True),
        ("payment.waiting_for_capture", "pending", False),
        ("refund.succeeded", "succeeded", True),
    ],
)
def test_status_confirms(event: str, fetched: str, confirms: bool) -> None:
    assert status_confirms(event, fetched) is confirms
