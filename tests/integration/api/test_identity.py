"""Who may call the public API (issue #15): Telegram's proofs or a partner key, the member acted
for is the member proven, the return URL comes from an allow-list, the answers do not enumerate
members or tariffs, and rate limits answer 429 with Retry-After."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from runtime.config import Settings
from runtime.telegram_proof import sign_init_data, sign_login
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.integration.api.conftest import (
    BOT_TOKEN,
    PARTNER,
    Api,
    add_tariff,
    add_user,
    member,
)

PAY = {"Idempotence-Key": "identity-1"}


async def test_anonymous_callers_get_401_before_any_lookup(api: Api, db: Any) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    body = {"telegram_id": telegram_id, "tariff_code": "month"}
    paid = await api.anonymous.post("/v1/payments", json=body, headers=PAY)
    read = await api.anonymous.get(f"/v1/subscriptions/{telegram_id}")
    nobody = await api.anonymous.get("/v1/subscriptions/42")
    for response in (paid, read, nobody):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert "tma" in response.headers["www-authenticate"]
    # An existing and an unknown member answer alike.
    assert read.json() == nobody.json()
    assert await db.fetchval("SELECT count(*) FROM payments") == 0


async def test_a_member_pays_and_reads_for_themselves_only(api: Api, db: Any) -> None:
    await add_tariff(db)
    _, payer = await add_user(db)
    _, victim = await add_user(db)
    own = await api.anonymous.post(
        "/v1/payments", json={"telegram_id": payer, "tariff_code": "month"}, headers={
            **PAY, **member(payer)
        }
    )  # fmt: skip
    assert own.status_code == 201, own.text
    assert own.json()["telegram_id"] == payer
    status = await api.anonymous.get(f"/v1/subscriptions/{payer}", headers=member(payer))
    assert status.status_code == 200

    for_victim = await api.anonymous.post(
        "/v1/payments",
        json={"telegram_id": victim, "tariff_code": "month"},
        headers={"Idempotence-Key": "identity-2", **member(payer)},
    )
    assert for_victim.status_code == 403, for_victim.text
    assert for_victim.json()["error"]["code"] == "forbidden"
    assert await db.fetchval("SELECT count(*) FROM payments") == 1

    # Another member's status, existing or not, is the same refusal: nothing to enumerate.
    known = await api.anonymous.get(f"/v1/subscriptions/{victim}", headers=member(payer))
    unknown = await api.anonymous.get("/v1/subscriptions/42", headers=member(payer))
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()
    assert str(victim) not in known.text


async def test_the_login_widget_proof_works_too(api: Api, db: Any) -> None:
    _, telegram_id = await add_user(db)
    login = sign_login(BOT_TOKEN, telegram_id, first_name="Анна", username="anna")
    answer = await api.anonymous.get(
        f"/v1/subscriptions/{telegram_id}", headers={"Authorization": f"tglogin {login}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "none"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda tid: member(tid, auth_date=int(time.time()) - 86401), id="expired"),
        pytest.param(lambda tid: member(tid, auth_date=int(time.time()) + 3600), id="future"),
        pytest.param(
            lambda tid: {"Authorization": member(tid)["Authorization"][:-4] + "0000"},
            id="forged-hash",
        ),
        pytest.param(
            lambda tid: {"Authorization": "tma " + sign_init_data("1:other-bot", {"id": tid})},
            id="another-bots-token",
        ),
        pytest.param(
            # A signature for one member with the user swapped for another.
            lambda tid: {
                "Authorization": member(tid)["Authorization"].replace(
                    "%22id%22%3A" + str(tid), "%22id%22%3A" + str(tid + 1)
                )
            },
            id="tampered-user",
        ),
        pytest.param(
            lambda tid: {"Authorization": f"tglogin {sign_login(BOT_TOKEN, tid, auth_date=1)}"},
            id="expired-login",
        ),
        pytest.param(
            lambda tid: {"Authorization": "tglogin " + urlencode({"id": tid, "hash": "ab"})},
            id="forged-login",
        ),
        pytest.param(
            lambda tid: {"Authorization": "tglogin token=x&hash=ab&id=1&auth_date=1"},
            id="login-field-named-token",
        ),
        pytest.param(lambda tid: {"Authorization": f"Bearer {BOT_TOKEN}"}, id="other-scheme"),
        pytest.param(lambda tid: {"X-Partner-Key": "guess"}, id="unknown-partner-key"),
        pytest.param(
            lambda tid: {**PARTNER, "Authorization": "tma forged"}, id="partner-key-and-a-bad-proof"
        ),
    ],
)
async def test_bad_proofs_are_401(api: Api, db: Any, authorization: Any) -> None:
    _, telegram_id = await add_user(db)
    answer = await api.anonymous.get(
        f"/v1/subscriptions/{telegram_id}", headers=authorization(telegram_id)
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthorized"


async def test_a_partner_acts_for_any_member(api: Api, db: Any) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    answer = await api.anonymous.get(f"/v1/subscriptions/{telegram_id}", headers=PARTNER)
    assert answer.status_code == 200
    unknown = await api.anonymous.get("/v1/subscriptions/42", headers=PARTNER)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "user_not_found")


async def test_return_url_must_be_on_an_allowed_host(api: Api, db: Any) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    for url in ("https://evil.example/phish", "https://t.me.evil.example", "https://t.me@evil.ex"):
        refused = await api.client.post(
            "/v1/payments",
            json={"telegram_id": telegram_id, "tariff_code": "month", "return_url": url},
            headers=PAY,
        )
        assert refused.status_code == 422, (url, refused.text)
        error = refused.json()["error"]
        assert error["details"][0]["loc"] == ["body", "return_url"]
        assert "allowed host (t.me, a.example, b.example)" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM payments") == 0
    allowed = await api.client.post(
        "/v1/payments",
        json={"telegram_id": telegram_id, "tariff_code": "month", "return_url": "https://t.me/x"},
        headers=PAY,
    )
    assert allowed.status_code == 201, allowed.text


async def test_an_oversize_body_is_413(api: Api) -> None:
    body = b'{"token": "' + b"a" * 70_000 + b'"}'
    answer = await api.anonymous.post(
        "/v1/advert/tokens/verify", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    streamed = await api.anonymous.post("/v1/advert/tokens/verify", content=chunks())
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"


async def test_options_names_every_method_of_the_path(api: Api) -> None:
    answer = await api.anonymous.request("OPTIONS", "/v1/admin/advert/tokens")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"


async def test_rate_limits_answer_429_with_retry_after(
    db: Any, api_environ: dict[str, str]
) -> None:
    environ = {
        **api_environ,
        "API_RATE_LIMIT_MEMBER": "3/minute",
        "API_RATE_LIMIT_SOURCE": "5/minute",
    }
    app = create_app(Settings.from_env(environ), ApiSettings.from_env(environ))
    _, telegram_id = await add_user(db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            url = f"/v1/subscriptions/{telegram_id}"
            # The member's budget: three reads, whoever asks; the fourth waits.
            answers = [(await client.get(url, headers=PARTNER)).status_code for _ in range(4)]
            assert answers == [200, 200, 200, 429]
            limited = await client.get(url, headers=member(telegram_id))
            assert limited.status_code == 429
            assert limited.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(limited.headers["retry-after"]) <= 60

            # The address's budget counts failed proofs too (one member read above, four here).
            guesses = [
                (await client.get("/v1/subscriptions/42", headers={"X-Partner-Key": "no"}))
                for _ in range(5)
            ]
            assert [g.status_code for g in guesses] == [401, 401, 401, 401, 429]
            assert int(guesses[-1].headers["retry-after"]) >= 1
            verify = await client.post("/v1/advert/tokens/verify", json={"token": "adv_x"})
            assert verify.status_code == 429
            # A partner key is not held to the address's budget (a server calls for many).
            other = await client.get("/v1/subscriptions/42", headers=PARTNER)
            assert other.status_code == 404
