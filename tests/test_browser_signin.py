"""Staff sign-in in a real headless Chromium: "Sign in with Microsoft" (msal) and "Sign in with
Google" (Authlib) against a local OpenID Connect provider (tests/oidcserver.py) reached with only
the authority or discovery URL changed, and the TOTP second factor of password logins."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from flask import Flask
from joserfc.jwk import RSAKey
from sqlalchemy import select

from tests import factories
from tests.oidcserver import Client, Provider, oidc_provider
from tests.test_browser import CHROMIUM, FLAGS, serving
from tests.webutil import PASSWORD, make_user
from triage import create_app
from triage.orm import AuditEvent, User
from triage.states import AuditAction

TENANT = "8f2d6c1e-0b7a-4c5e-9d13-5a1f0e7b2c44"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """The local OpenID Connect provider, with accounts of our tenant, of another, and Google's."""
    with oidc_provider(tmp_path_factory.mktemp("oidc")) as running:
        running.accounts.update(
            {
                "alex": {"sub": "m-alex", "tid": TENANT, "preferred_username": "Agent@IMI.test"},
                "stranger": {
                    "sub": "m-str",
                    "tid": TENANT,
                    "preferred_username": "nobody@imi.test",
                },
                "guest": {
                    "sub": "m-guest",
                    "tid": "other-tenant",
                    "preferred_username": "agent@imi.test",
                },
                "gina": {
                    "sub": "g-1",
                    "email": "agent@imi.test",
                    "email_verified": True,
                    "hd": "imi.test",
                },
                "outsider": {"sub": "g-2", "email": "agent@imi.test", "email_verified": True},
                "unverified": {
                    "sub": "g-3",
                    "email": "agent@imi.test",
                    "email_verified": False,
                    "hd": "imi.test",
                },
            }
        )
        yield running


@pytest.fixture
def signin_app(
    app_config: dict[str, Any], provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Flask, str]]:
    """The app configured for both providers, served on a loopback port; the provider's
    certificate is trusted the ordinary way (REQUESTS_CA_BUNDLE, read by requests)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(provider.certificate))
    app = create_app(
        {
            **app_config,
            "SIGNIN_MICROSOFT_CLIENT_ID": "ms-client",
            "SIGNIN_MICROSOFT_CLIENT_SECRET": "ms-secret",
            "SIGNIN_MICROSOFT_TENANT_ID": TENANT,
            "SIGNIN_MICROSOFT_AUTHORITY_HOST": provider.base,
            "SIGNIN_GOOGLE_CLIENT_ID": "g-client",
            "SIGNIN_GOOGLE_CLIENT_SECRET": "g-secret",
            "SIGNIN_GOOGLE_DOMAIN": "imi.test",
            "SIGNIN_GOOGLE_DISCOVERY_URL": f"{provider.base}/google/.well-known/openid-configuration",
            "TOTP_REQUIRED_FOR_ADMINS": True,
        }
    )
    make_user(app, "agent@imi.test", "agent")
    try:
        with serving(app) as url:
            provider.clients["ms-client"] = Client(
                "ms-client", "ms-secret", [f"{url}/login/microsoft/callback"]
            )
            provider.clients["g-client"] = Client(
                "g-client", "g-secret", [f"{url}/login/google/callback"]
            )
            yield app, url
    finally:
        app.extensions["triage.engine"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, one for the module; each test opens its own contexts (cookies)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; .ci/run does this)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        running = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield running
        running.close()


def _sign_in(browser: Any, url: str, button: str, account: str) -> Any:
    """Click a sign-in button on our login page and sign in as `account` at the provider."""
    page = browser.new_context(ignore_https_errors=True).new_page()
    page.goto(f"{url}/login")
    page.get_by_role("link", name=button).click()
    page.wait_for_url("https://127.0.0.1:*/**")
    page.fill("input[name=account]", account)
    page.click("button")
    page.wait_for_url(f"{url}/**")
    return page


def _login_methods(app: Flask) -> list[str]:
    with factories.session_of(app) as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.LOGIN_OK))
        return [str(e.details.get("method")) for e in events]


def test_microsoft_sign_in_allows_our_tenant_staff_only(
    signin_app: tuple[Flask, str], provider: Provider, browser: Any
) -> None:
    app, url = signin_app
    page = _sign_in(browser, url, "Sign in with Microsoft", "alex")
    assert page.url.startswith(f"{url}/queues"), page.url
    assert "Alex Agent" in page.inner_text("header")  # agent@imi.test, shown by name
    page.context.close()

    page = _sign_in(browser, url, "Sign in with Microsoft", "stranger")
    assert "/login" in page.url
    assert "No active staff account uses nobody@imi.test" in page.inner_text("[role=alert]")
    page.context.close()

    page = _sign_in(browser, url, "Sign in with Microsoft", "guest")
    assert "another organisation" in page.inner_text("[role=alert]")
    assert page.goto(f"{url}/queues").url.startswith(f"{url}/login")  # not logged in
    page.context.close()

    # an ID token signed with a key the tenant does not publish is refused, for either provider
    provider.signing_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"}, private=True)
    try:
        for button, account, refusal in (
            ("Sign in with Microsoft", "alex", "could not be verified"),
            ("Sign in with Google", "gina", "did not confirm"),
        ):
            page = _sign_in(browser, url, button, account)
            assert page.url.startswith(f"{url}/login"), (button, page.url)
            assert refusal in page.inner_text("[role=alert]")
            page.context.close()
    finally:
        provider.signing_key = provider.key

    with factories.session_of(app) as s:
        assert (
            s.scalar(select(User.id).where(User.email == "nobody@imi.test")) is None
        )  # not created
    assert _login_methods(app) == ["microsoft"]


def test_google_sign_in_needs_a_verified_address_in_our_domain(
    signin_app: tuple[Flask, str], provider: Provider, browser: Any
) -> None:
    app, url = signin_app
    page = _sign_in(browser, url, "Sign in with Google", "gina")
    assert page.url.startswith(f"{url}/queues"), page.url
    page.context.close()
    for account, reason in [
        ("outsider", "not in the organisation's Workspace domain"),
        ("unverified", "verified email"),
    ]:
        page = _sign_in(browser, url, "Sign in with Google", account)
        assert reason in page.inner_text("[role=alert]"), account
        page.context.close()
    assert _login_methods(app) == ["google"]


def _code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def test_totp_enrolment_then_login_with_the_code(
    signin_app: tuple[Flask, str], browser: Any
) -> None:
    app, url = signin_app
    page = browser.new_context().new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=email]", "agent@imi.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.click("text=Second factor")
    page.click("text=Set up a second factor")
    secret = page.inner_text("#totp-secret")
    assert page.get_attribute("#totp-uri", "href").startswith("otpauth://totp/")
    page.fill("input[name=code]", "000000" if _code(secret) != "000000" else "111111")
    page.click("main button[type=submit]")
    assert "not right" in page.inner_text("[role=alert]")
    page.fill("input[name=code]", _code(secret))
    page.click("main button[type=submit]")
    assert "On:" in page.inner_text("#totp-status")
    page.context.close()

    page = browser.new_context().new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=email]", "agent@imi.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    assert "/login/second-factor" in page.url
    assert page.goto(f"{url}/queues").url.startswith(
        f"{url}/login?"
    )  # the password alone is not a login
    page.goto(f"{url}/login/second-factor")
    with factories.session_of(app) as s:
        user = s.scalars(select(User).where(User.email == "agent@imi.test")).one()
        secret, used = str(user.totp_secret), user.totp_last_step
    step = pyotp.TOTP(secret).timecode(int(time.time()))
    if used is not None and used >= step:  # the enrolment used this step's code: take the next one
        code = pyotp.TOTP(secret).generate_otp(step + 1)
    else:
        code = _code(secret)
    page.fill("input[name=code]", code)
    page.click("main button[type=submit]")
    assert page.url.startswith(f"{url}/queues"), page.url
    page.context.close()
    assert _login_methods(app)[-1] == "password+totp"


def test_an_admin_must_enrol_while_logging_in_when_required(
    signin_app: tuple[Flask, str], browser: Any
) -> None:
    app, url = signin_app
    make_user(app, "boss@imi.test", "admin")
    page = browser.new_context().new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=email]", "boss@imi.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    assert "/login/second-factor" in page.url
    secret = page.inner_text("#totp-secret")
    page.fill("input[name=code]", _code(secret))
    page.click("main button[type=submit]")
    assert page.url.startswith(f"{url}/queues"), page.url
    page.goto(f"{url}/account/second-factor")
    assert "On:" in page.inner_text("#totp-status")
    assert page.locator("text=Turn the second factor off").count() == 0  # required: no way off
    page.context.close()


def test_sign_in_buttons_only_when_configured(app: Flask) -> None:
    html = app.test_client().get("/login").get_data(as_text=True)
    assert "Sign in with" not in html
    assert app.test_client().get("/login/microsoft").status_code == 302
