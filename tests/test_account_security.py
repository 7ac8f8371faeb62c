"""Account security: the TOTP second factor, sign-in claims, wrong current passwords locked out like
failed logins, role changes revoking tokens, oversized JSON however sent, and page links that carry
only the parameters a list reads."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tests import factories
from tests.webutil import PASSWORD, csrf_from, login, make_user, post_form
from triage.helpdesk import second_factor, sign_in
from triage.orm import ApiToken, User
from triage.states import Role


def _user(app: Flask, email: str) -> User:
    with factories.session_of(app) as s:
        user = s.scalars(select(User).where(User.email == email)).one()
        s.expunge(user)
        return user


# --- the second factor ------------------------------------------------------------------------


def test_a_code_is_taken_once_and_only_near_its_time(session: Session) -> None:
    user = factories.user(session, email="a@imi.test")
    secret = second_factor.new_secret()
    totp = pyotp.TOTP(secret)
    now = time.time()
    assert not second_factor.enrol(user, secret, "12345", now)  # not six digits
    assert second_factor.enrol(user, secret, totp.at(now), now)
    session.flush()
    assert not second_factor.accept_code(session, user, totp.at(now), now)  # the enrolment's code
    later = now + 60
    assert second_factor.accept_code(session, user, totp.at(later - 30), later)  # a step behind
    assert not second_factor.accept_code(session, user, totp.at(later - 30), later)  # only once
    assert not second_factor.accept_code(session, user, totp.at(later - 300), later)  # too old
    spaced = totp.at(later + 30)[:3] + " " + totp.at(later + 30)[3:]
    assert second_factor.accept_code(session, user, spaced, later)
    # another process took a later step meanwhile: this one's copy of the row is stale, still refused
    stale_copy_step = user.totp_last_step
    session.execute(update(User).where(User.id == user.id).values(totp_last_step=10**12))
    set_committed_value(user, "totp_last_step", stale_copy_step)
    assert not second_factor.accept_code(session, user, totp.at(later + 60), later + 60)
    assert second_factor.required(User(role=Role.ADMIN), True)
    assert not second_factor.required(User(role=Role.ADMIN), False)
    assert not second_factor.required(User(role=Role.AGENT), True)


def _enrol(app: Flask, email: str) -> str:
    """Turn the second factor on, enrolled a minute ago (so the current code is still unused)."""
    with factories.session_of(app) as s:
        user = s.scalars(select(User).where(User.email == email)).one()
        secret = second_factor.new_secret()
        then = time.time() - 60
        assert second_factor.enrol(user, secret, pyotp.TOTP(secret).at(then), then)
        return secret


def _code_form(client: FlaskClient, code: str) -> Any:
    token = csrf_from(client.get("/login/second-factor").get_data(as_text=True))
    return client.post("/login/second-factor", data={"code": code, "csrf_token": token})


def test_password_then_code_and_wrong_codes_lock_out(app: Flask) -> None:
    make_user(app, "agent@imi.test")
    secret = _enrol(app, "agent@imi.test")
    client = app.test_client()
    first = login(client)
    assert first.status_code == 302 and first.headers["Location"].endswith("/login/second-factor")
    assert client.get("/queues").status_code == 302  # not logged in yet
    for _ in range(5):
        assert (
            _code_form(
                client, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
            ).status_code
            == 401
        )
    blocked = _code_form(client, pyotp.TOTP(secret).now())
    assert blocked.status_code == 429  # five wrong codes lock it like five wrong passwords
    assert app.test_client().get("/queues").status_code == 302


def test_the_right_code_logs_in(app: Flask) -> None:
    make_user(app, "agent@imi.test")
    secret = _enrol(app, "agent@imi.test")
    client = app.test_client()
    login(client)
    code = pyotp.TOTP(secret).now()
    ok = _code_form(client, code)
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/queues")
    assert client.get("/queues").status_code == 200
    # the same code again, in another browser, is refused: a code is taken once (the same code,
    # not the clock's current one, which is a new code once a 30-second step has passed)
    other = app.test_client()
    login(other)
    assert _code_form(other, code).status_code == 401


def test_second_factor_page_without_a_password_first_goes_back_to_login(
    client: FlaskClient,
) -> None:
    answer = client.get("/login/second-factor")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")
    assert client.post("/login/second-factor", data={"code": "123456"}).status_code == 400  # CSRF


# --- sign-in claims -------------------------------------------------------------------------


def test_microsoft_and_google_claims() -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    ok = {"tid": tenant, "preferred_username": "Jo@IMI.test"}
    assert sign_in.microsoft_address(ok, tenant) == "jo@imi.test"
    with pytest.raises(sign_in.SignInRefused, match="another organisation"):
        sign_in.microsoft_address({**ok, "tid": "other"}, tenant)
    with pytest.raises(sign_in.SignInRefused, match="another organisation"):
        sign_in.microsoft_address(ok, "")  # never open to every tenant
    with pytest.raises(sign_in.SignInRefused, match="Guest"):
        sign_in.microsoft_address({**ok, "acct": 1}, tenant)
    unverified_email = {"tid": tenant, "preferred_username": "+441234", "email": "boss@imi.test"}
    with pytest.raises(sign_in.SignInRefused, match="verified"):
        sign_in.microsoft_address(unverified_email, tenant)
    assert (
        sign_in.microsoft_address({**unverified_email, "xms_edov": True}, tenant) == "boss@imi.test"
    )
    google = {"email": "jo@imi.test", "email_verified": True, "hd": "imi.test"}
    assert sign_in.google_address(google, "imi.test") == "jo@imi.test"
    for bad in (
        {**google, "hd": "other.test"},
        {**google, "email_verified": "true"},
        {"email": "jo@imi.test", "email_verified": True},
    ):
        with pytest.raises(sign_in.SignInRefused):
            sign_in.google_address(bad, "imi.test")


def test_an_inactive_account_cannot_sign_in(app: Flask) -> None:
    with factories.session_of(app) as s:
        factories.user(s, email="gone@imi.test", active=False)
    with factories.session_of(app) as s, pytest.raises(sign_in.SignInRefused, match="No active"):
        sign_in.staff_account(s, "gone@imi.test")


# --- issue 25: wrong current passwords, role changes, oversized JSON, page links ---------------


def test_wrong_current_passwords_count_like_failed_logins(app: Flask) -> None:
    make_user(app, "agent@imi.test")
    client = app.test_client()
    login(client)
    change = {
        "current": "not my password!!",
        "new": "a new password 1",
        "repeat": "a new password 1",
    }
    for _ in range(5):
        assert (
            post_form(client, "/account/password", "/account/password", change).status_code == 400
        )
    right = {**change, "current": PASSWORD}
    assert post_form(client, "/account/password", "/account/password", right).status_code == 429
    assert login(app.test_client()).status_code == 429  # the account is locked for this address too


def test_demoting_an_admin_revokes_the_tokens_they_made(app: Flask) -> None:
    make_user(app, "boss@imi.test", "admin")
    with factories.session_of(app) as s:
        deputy = factories.user(s, email="deputy@imi.test", role="admin")
        token = factories.api_token(s, name="deputy's", scopes=("read",), created_by=deputy)
        deputy_id = deputy.id
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/queues", headers=headers).status_code == 200
    client = app.test_client()
    login(client, "boss@imi.test")
    answer = post_form(
        client,
        "/admin/users",
        "/admin/users",
        {"op": "role", "user_id": str(deputy_id), "role": "agent"},
    )
    assert answer.status_code == 302
    assert app.test_client().get("/api/v1/queues", headers=headers).status_code == 401
    with factories.session_of(app) as s:
        assert s.scalars(select(ApiToken.revoked_at)).one() is not None
        assert s.get(User, deputy_id).role == Role.AGENT  # type: ignore[union-attr]


def test_oversized_json_is_413_however_it_is_sent(app_config: dict[str, Any]) -> None:
    from triage import create_app

    application = create_app({**app_config, "INBOUND_MAX_BYTES": 4096})
    try:
        with factories.session_of(application) as s:
            token = factories.api_token(s)
        body = json.dumps(
            {"from": "jo@college.example", "subject": "x", "body": "y" * 8000}
        ).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        client = application.test_client()
        chunked = client.post("/api/v1/tickets", input_stream=io.BytesIO(body), headers=headers)
        assert chunked.status_code == 413 and chunked.is_json
        with_length = client.post("/api/v1/tickets", data=body, headers=headers)
        assert with_length.status_code == 413 and with_length.is_json
        small = json.dumps({"from": "jo@college.example", "subject": "x", "body": "help"}).encode()
        ok = client.post("/api/v1/tickets", input_stream=io.BytesIO(small), headers=headers)
        assert ok.status_code != 413 and ok.status_code != 400, ok.get_json()
    finally:
        application.extensions["triage.engine"].dispose()


@pytest.mark.parametrize(
    "url",
    [
        "/queues/triage?page=2&endpoint=x",
        "/queues/triage?page=2&_method=POST",
        "/queues/triage?page=2&_external=1&_anchor=x&status=all",
        "/search?q=exam&page=2&endpoint=x",
        "/views/open?page=2&slug=other",
    ],
)
def test_page_links_carry_only_known_parameters(app: Flask, url: str) -> None:
    make_user(app)
    client = app.test_client()
    login(client)
    answer = client.get(url)
    assert answer.status_code == 200, url
    html = answer.get_data(as_text=True)
    if "← previous" in html:
        link = html.split("← previous")[0].rsplit('href="', 1)[1]
        assert "endpoint" not in link and "_method" not in link and "_external" not in link
        assert "page=1" in link
        if "status=all" in url:
            assert "status=all" in link


def test_an_admin_removes_a_lost_second_factor(app: Flask) -> None:
    make_user(app, "boss@imi.test", "admin")
    agent_id = make_user(app, "agent@imi.test")
    secret = _enrol(app, "agent@imi.test")
    agent = app.test_client()
    login(agent)
    _code_form(agent, pyotp.TOTP(secret).now())
    assert agent.get("/queues").status_code == 200
    boss = app.test_client()
    login(boss, "boss@imi.test")
    page = boss.get("/admin/users").get_data(as_text=True)
    assert 'value="second_factor_off"' in page
    form = {"op": "second_factor_off", "user_id": str(agent_id)}
    assert post_form(boss, "/admin/users", "/admin/users", form).status_code == 302
    assert _user(app, "agent@imi.test").totp_secret is None
    assert agent.get("/queues").status_code == 302  # their sessions ended with it
    fresh = app.test_client()
    assert login(fresh).headers["Location"].endswith("/queues")  # the password alone again
