"""Mail channels with OAuth 2.0 against real servers: Dovecot's oauth2 passdb (JWTs checked locally
with the test's key) for IMAP XOAUTH2 and OAUTHBEARER, aiosmtpd with an XOAUTH2 authenticator, and
the local Authlib token server that msal and google-auth talk to."""

from __future__ import annotations

import base64
import imaplib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from flask import Flask
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import select, update

from tests.conftest import SmtpRecorder, free_port
from tests.faultproxy import TcpProxy
from tests.mailutil import make_email
from tests.oauth_server import (  # noqa: F401 (fixtures)
    TokenServer,
    service_account_key,
    token_server,
    trust_token_server,
)
from triage import create_app
from triage.mail import delivery, token_cache
from triage.mail.oauth import AccessToken
from triage.orm import InboundEmail, MailChannel, OAuthToken, OutboxItem, Ticket, utcnow
from triage.states import OutboxStatus

DOMAIN = "imi-awards.example"


class OAuthSmtp(SmtpRecorder):
    """An SMTP server taking XOAUTH2 tokens signed by the token server; what it accepts is also
    put in the recipient's Dovecot mailbox, so a channel check can see its test message arrive."""

    def __init__(self, key: bytes, imap_port: int) -> None:
        super().__init__()
        self.key, self.imap_port = OctKey.import_key(key), imap_port
        self.logins: list[str] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        fields = dict(
            part.split("=", 1)
            for part in base64.b64decode(args[1]).decode().split("\x01")
            if "=" in part
        )
        user, bearer = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(bearer, self.key).claims
            ok = (
                claims.get("email") == user
                and "mail" in str(claims.get("scope", "")).split()
                and claims["exp"] > time.time()
            )
        except (JoseError, ValueError, KeyError):
            ok = False
        if not ok:  # as Gmail does: a JSON error challenge, then 535
            error = json.dumps({"status": "400", "schemes": "Bearer", "scope": "mail"})
            await server.challenge_auth(error)
            return AuthResult(
                success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
            )
        self.logins.append(user)
        return AuthResult(success=True, auth_data=user)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        for recipient in envelope.rcpt_tos:
            if recipient.endswith("@" + DOMAIN):
                _append(self.imap_port, recipient, envelope.content)
        return answer


def _append(port: int, user: str, raw: bytes) -> None:
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login(user, "secret")
    conn.append("INBOX", None, imaplib.Time2Internaldate(time.time()), raw)
    conn.logout()


@pytest.fixture(scope="module")
def oauth_dovecot(token_server: TokenServer) -> Iterator[int]:
    """Dovecot taking the token server's JWTs over XOAUTH2 and OAUTHBEARER (and PLAIN)."""
    from tests.imapserver import Dovecot, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="triage-dovecot-oauth-"))
    folder.chmod(0o755)
    server = Dovecot(folder, free_port(), jwt_key=token_server.jwt_key)
    server.start()
    yield server.port
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def oauth_smtp(token_server: TokenServer, oauth_dovecot: int) -> Iterator[tuple[OAuthSmtp, int]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class LongCommands(SMTP):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.command_size_limits["AUTH"] = 8192  # a JWT in the AUTH line, as Exchange takes

    class OAuthController(Controller):  # type: ignore[misc]
        def factory(self) -> SMTP:
            return LongCommands(self.handler, **self.SMTP_kwargs)

    handler = OAuthSmtp(token_server.jwt_key, oauth_dovecot)
    port = free_port()
    controller = OAuthController(
        handler,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )
    controller.start()
    yield handler, port
    controller.stop()


class Setup:
    """Writes a channels file with the given channels and makes the app that reads it."""

    def __init__(
        self, folder: Path, config: dict[str, Any], server: TokenServer, imap: int, smtp: int
    ) -> None:
        self.folder, self.config, self.server = folder, config, server
        self.imap_port, self.smtp_port = imap, smtp
        self.tables: list[str] = []

    def address(self, name: str) -> str:
        return f"{name}-{uuid.uuid4().hex[:8]}@{DOMAIN}"

    def microsoft(
        self, name: str, address: str, allowed: str | None = None, extra: str = ""
    ) -> None:
        client_id = self.server.add_microsoft_app("imi.example", allowed or address, "v4lue")
        (self.folder / f"{name}.secret").write_text("v4lue\n")
        self._add(
            name,
            address,
            f'method = "microsoft"\ntenant = "imi.example"\nclient_id = "{client_id}"\n'
            f'client_secret_file = "{self.folder / f"{name}.secret"}"\n'
            f'authority = "{self.server.url}"\n{extra}',
        )

    def google_service_account(self, name: str, address: str) -> None:
        key = self.folder / f"{name}.json"
        key.write_text(json.dumps(service_account_key(self.server, address)))
        self._add(
            name,
            address,
            f'method = "google-service-account"\nkey_file = "{key}"\nsasl = "oauthbearer"\n',
        )

    def google_refresh_token(self, name: str, address: str) -> str:
        client_id, secret, refresh = self.server.add_refresh_token(address)
        (self.folder / f"{name}.refresh").write_text(refresh)
        self._add(
            name,
            address,
            f'method = "google-refresh-token"\nclient_id = "{client_id}"\n'
            f'client_secret_env = "TEST_GOOGLE_SECRET_{name.upper()}"\n'
            f'refresh_token_file = "{self.folder / f"{name}.refresh"}"\n'
            f'token_uri = "{self.server.url}/token"\n',
        )
        import os

        os.environ[f"TEST_GOOGLE_SECRET_{name.upper()}"] = secret
        return refresh

    def _add(self, name: str, address: str, auth: str, imap_port: int | None = None) -> None:
        self.tables.append(
            f'[[channel]]\nname = "{name}"\naddress = "{address}"\n'
            f'[channel.imap]\nhost = "127.0.0.1"\nport = {imap_port or self.imap_port}\ntls = false\n'
            f'[channel.smtp]\nhost = "127.0.0.1"\nport = {self.smtp_port}\n'
            f"[channel.auth]\n{auth}\n"
        )

    def app(self) -> Flask:
        path = self.folder / "channels.toml"
        path.write_text("\n".join(self.tables))
        return create_app({**self.config, "CHANNELS_FILE": str(path)})


@pytest.fixture
def setup(
    app_config: dict[str, Any],
    tmp_path: Path,
    token_server: TokenServer,
    oauth_dovecot: int,
    oauth_smtp: tuple[OAuthSmtp, int],
) -> Setup:
    config = {**app_config, "SUPPORT_ADDRESS": f"support@{DOMAIN}", "MODEL_CHECK_INTERVAL": 0.0}
    return Setup(tmp_path, config, token_server, oauth_dovecot, oauth_smtp[1])


def _poll(app: Flask) -> Any:
    return app.test_cli_runner().invoke(args=["triage", "poll-imap"])


def _centre_mail(to: str, subject: str = "Cannot log in to the portal") -> bytes:
    return make_email(subject=subject, body="Hello, our invigilator cannot log in today.").replace(
        b"To: support@imi.test", f"To: {to}".encode()
    )


def test_microsoft_mailbox_read_and_answered_over_xoauth2(
    setup: Setup, oauth_smtp: tuple[OAuthSmtp, int], token_server: TokenServer
) -> None:
    exams = setup.address("exams")
    setup.microsoft("exams", exams)
    app = setup.app()
    _append(setup.imap_port, exams, _centre_mail(exams))
    issued = len(token_server.issued)

    result = _poll(app)
    assert result.exit_code == 0, result.output
    assert "1 message(s) fetched" in result.output
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert (ticket.channel, ticket.reply_from) == ("exams", exams)
        assert session.scalars(select(InboundEmail.channel)).one() == "exams"

    recorder = oauth_smtp[0]
    before = len(recorder.messages)
    assert delivery.deliver_due(sessions, settings, "w1") == 1
    sent = recorder.parsed()[before:]
    assert [m["From"].addresses[0].addr_spec for m in sent] == [exams]
    assert recorder.messages[-1].mail_from == exams and recorder.logins[-1] == exams
    # one token served IMAP and SMTP alike (the shared cache)
    assert len(token_server.issued) == issued + 1
    with sessions() as session:
        health = session.scalars(select(MailChannel).where(MailChannel.name == "exams")).one()
        assert health.last_success_at is not None and health.failing_since is None


def test_google_service_account_over_oauthbearer(setup: Setup) -> None:
    mailbox = setup.address("google")
    setup.google_service_account("google", mailbox)
    app = setup.app()
    _append(setup.imap_port, mailbox, _centre_mail(mailbox))
    result = _poll(app)
    assert result.exit_code == 0 and "1 message(s) fetched" in result.output, result.output


def test_expired_token_refreshed_and_a_refused_one_renewed_once(
    setup: Setup, token_server: TokenServer
) -> None:
    mailbox = setup.address("refresh")
    refresh = setup.google_refresh_token("refresh", mailbox)
    app = setup.app()
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    issued = len(token_server.issued)
    assert _poll(app).exit_code == 0 and _poll(app).exit_code == 0
    assert len(token_server.issued) == issued + 1  # cached between polls

    with sessions() as session, session.begin():  # four minutes left: inside the refresh margin
        session.execute(update(OAuthToken).values(expires_at=utcnow() + timedelta(minutes=4)))
    assert _poll(app).exit_code == 0
    assert len(token_server.issued) == issued + 2

    # revoked early (the server no longer takes it though it has not expired): renewed once
    with sessions() as session:
        key = session.scalars(select(OAuthToken.key)).one()
    token_cache.forget(sessions, key)
    stale = AccessToken("not-a-valid-token", utcnow() + timedelta(hours=1))
    token_cache.cached_token(sessions, settings.secret_key, key, lambda: stale)
    result = _poll(app)
    assert result.exit_code == 0, result.output
    assert len(token_server.issued) == issued + 3

    # the grant itself revoked: one clear line, and the channel shows as failing
    token_server.revoke(refresh)
    token_cache.forget(sessions, key)
    result = _poll(app)
    assert result.exit_code == 1
    line = "Google refused the token (invalid_grant): the refresh token has expired or been revoked"
    assert line in result.output and result.output.count("\n") <= 2
    assert refresh not in result.output
    with sessions() as session:
        health = session.scalars(select(MailChannel).where(MailChannel.name == "refresh")).one()
        assert health.failing_since is not None and "invalid_grant" in (health.last_error or "")


@pytest.mark.parametrize(
    ("extra", "allowed", "expected"),
    [
        ('scope = "https://graph.microsoft.com/.default"\n', None, "status=401"),
        ("", "someone-else@" + DOMAIN, "Add-MailboxPermission"),
    ],
    ids=["wrong-scope", "no-mailbox-permission"],
)
def test_token_the_server_refuses_is_one_line_with_what_to_fix(
    setup: Setup, extra: str, allowed: str | None, expected: str
) -> None:
    mailbox = setup.address("refused")
    setup.microsoft("refused", mailbox, allowed=allowed, extra=extra)
    result = _poll(setup.app())
    assert result.exit_code == 1
    assert "IMAP server refused the microsoft token for" in result.output
    assert expected in result.output and "IMAP.AccessAsApp" in result.output


def test_server_dropping_the_connection_mid_poll(setup: Setup) -> None:
    mailbox = setup.address("cut")
    with TcpProxy(("127.0.0.1", setup.imap_port)) as proxy:
        client_id = setup.server.add_microsoft_app("imi.example", mailbox, "v4lue")
        (setup.folder / "cut.secret").write_text("v4lue")
        setup._add(
            "cut",
            mailbox,
            f'method = "microsoft"\ntenant = "imi.example"\nclient_id = "{client_id}"\n'
            f'client_secret_file = "{setup.folder / "cut.secret"}"\nauthority = "{setup.server.url}"\n',
            imap_port=proxy.port,
        )
        app = setup.app()
        emails = [_centre_mail(mailbox, f"Question {n}") for n in range(3)]
        for raw in emails:
            _append(setup.imap_port, mailbox, raw)
        proxy.cut_on(b"UID FETCH", nth=2, reply_bytes=120)
        result = _poll(app)
        assert result.exit_code == 1 and "IMAP connection dropped" in result.output
        sessions = app.extensions["triage.sessions"]
        with sessions() as session:
            assert len(session.scalars(select(InboundEmail)).all()) == 1
        result = _poll(app)
        assert result.exit_code == 0 and "2 message(s) fetched" in result.output, result.output
        with sessions() as session:
            assert len(session.scalars(select(Ticket)).all()) == 3


def test_smtp_refusing_the_token_keeps_the_reply_queued_with_the_reason(
    setup: Setup, oauth_smtp: tuple[OAuthSmtp, int]
) -> None:
    mailbox = setup.address("nosend")
    # the app may read this mailbox, but its SMTP token names another (as without SendAs rights)
    setup.microsoft("nosend", mailbox)
    app = setup.app()
    _append(setup.imap_port, mailbox, _centre_mail(mailbox))
    assert _poll(app).exit_code == 0
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    with sessions() as session, session.begin():  # a token for another mailbox
        session.execute(update(OAuthToken).values(expires_at=utcnow() - timedelta(minutes=1)))
    setup.server.clients[next(reversed(setup.server.clients))].mailbox = "other@" + DOMAIN
    before = len(oauth_smtp[0].messages)
    delivery.deliver_due(sessions, settings, "w1")
    assert len(oauth_smtp[0].messages) == before
    with sessions() as session:
        row = session.scalars(select(OutboxItem)).one()
        assert row.status == OutboxStatus.PENDING
        assert "SMTP server refused the microsoft token" in (row.last_error or "")
        assert "SMTP.SendAsApp" in (row.last_error or "")


def test_channels_check_sends_to_itself_and_sees_it_arrive(setup: Setup) -> None:
    good, bad = setup.address("good"), setup.address("bad")
    setup.microsoft("good", good)
    setup.microsoft("bad", bad, allowed="nobody@" + DOMAIN)
    app = setup.app()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["triage", "channels", "check", "good", "--wait", "20"])
    assert result.exit_code == 0, result.output
    assert "good: the test message arrived" in result.output
    assert _poll(app).exit_code == 1  # the bad channel fails; the good one's test mail is gone
    sessions = app.extensions["triage.sessions"]
    with sessions() as session:
        assert session.scalars(select(InboundEmail)).all() == []
    result = runner.invoke(args=["triage", "channels", "check", "bad", "--wait", "1"])
    assert result.exit_code == 1 and "channel check failed: bad" in result.output
    result = runner.invoke(args=["triage", "channels", "check", "nosuch"])
    assert result.exit_code == 1 and "no channel named nosuch" in result.output


def test_admin_channels_page_health_alerts_and_test_button(setup: Setup) -> None:
    import os

    from tests.test_browser import CHROMIUM, FLAGS, serving
    from tests.webutil import PASSWORD, make_user
    from triage.helpdesk import channel_alerts, tokens

    good, broken = setup.address("good"), setup.address("broken")
    setup.microsoft("good", good)
    setup.microsoft("broken", broken, allowed="nobody@" + DOMAIN)
    app = setup.app()
    make_user(app, "admin@imi.test", "admin", "Ada Admin")
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    assert _poll(app).exit_code == 1  # broken fails, good succeeds

    # failing for longer than CHANNEL_ALERT_MINUTES: healthz details, metrics, one alert a day
    with sessions() as session, session.begin():
        session.execute(
            update(MailChannel)
            .where(MailChannel.name == "broken")
            .values(failing_since=utcnow() - timedelta(hours=2))
        )
        _row, token = tokens.create_token(session, "monitor")
    client = app.test_client()
    health = client.get("/healthz", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert health["channels"]["broken"]["ok"] is False
    assert "Add-MailboxPermission" in health["channels"]["broken"]["error"]
    assert health["channels"]["good"]["ok"] is True
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).get_data(True)
    assert 'triage_channel_failing{channel="broken"} 1.0' in metrics
    assert 'triage_channel_failing{channel="good"} 0.0' in metrics
    assert channel_alerts.run(sessions, settings) == 1
    assert channel_alerts.run(sessions, settings) == 0  # told once; again only after a day
    alerts = list(Path(settings.outbox_dir).glob("channel-alert-broken*.eml"))
    assert alerts and b"Mail channel broken is failing" in alerts[0].read_bytes()

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with serving(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(f"{url}/admin/channels")
        page.fill("input[name=email]", "admin@imi.test")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/admin/channels")
        row = page.locator("tr[data-channel=broken]")
        assert "Add-MailboxPermission" in row.inner_text()
        assert "failing since" in row.inner_text()
        good_row = page.locator("tr[data-channel=good]")
        assert "microsoft" in good_row.inner_text() and "none" in good_row.inner_text()
        good_row.locator("button", has_text="Test").click()
        page.wait_for_selector("#channel-check")
        report = page.inner_text("#channel-check")
        assert "Check of good: passed" in report and "the test message arrived" in report
        assert "(expired)" not in page.locator("tr[data-channel=good]").inner_text()
        page.locator("tr[data-channel=broken] button", has_text="Test").click()
        page.wait_for_selector("#channel-check")
        assert "Check of broken: FAILED" in page.inner_text("#channel-check")
        browser.close()
