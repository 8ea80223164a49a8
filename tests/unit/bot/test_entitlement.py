"""Who may be in the paid chats: one rule (payments.entitlement) for the bot and the monitors."""

from __future__ import annotations

import re
from pathlib import Path

from payments.entitlement import entitled_user, entitling

ROOT = Path(__file__).resolve().parents[3]
_COPY = re.compile(r"grace_until\s*>\s*\?")


def test_the_rule_checks_grace_until_not_the_status_alone() -> None:
    assert entitling("live") == (
        "(live.status = 'active' OR (live.status = 'grace' AND live.grace_until > ?))"
    )
    assert entitling("s") in entitled_user("u")
    assert "u.role <> 'member'" in entitled_user("u")


def test_the_bot_and_the_monitors_take_the_rule_from_its_one_home() -> None:
    copies = {
        path.relative_to(ROOT).as_posix()
        for package in ("services", "monitors", "payments")
        for path in (ROOT / package).rglob("*.py")
        if _COPY.search(path.read_text())
    }
    assert copies == {"payments/entitlement.py"}
    bot = (ROOT / "services/bot/repository.py").read_text()
    assert "entitling(" in bot
    assert "entitled_user(" in bot
