"""OAuth 2.0 tokens through msal and google-auth, against a local Authlib server (HTTPS): secrets,
certificates, service accounts, refresh tokens, the shared cache, expiry, revocation and the one-line
errors."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine

from tests.oauth_server import (  # noqa: F401 (fixtures)
    TokenServer,
    jwt_payload,
    private_key_pem,
    self_signed,
    service_account_key,
    thumbprint,
    token_server,
    trust_token_server,
)
from triage.database import make_session_factory
from triage.mail import token_cache
from triage.mail.oauth import AccessToken, AuthMethod, OAuthGrant, TokenError, fetch_token
from triage.orm import utcnow

MAILBOX = "support@imi-awards.example"


def microsoft(server: TokenServer, tenant: str = "imi.example", **changes: str) -> OAuthGrant:
    client_id = server.add_microsoft_app("imi.example", MAILBOX, secret="s3cret-value")
    values = {
        "method": AuthMethod.MICROSOFT,
        "mailbox": MAILBOX,
        "client_id": client_id,
        "tenant": tenant,
        "authority": server.url,
        "client_secret": "s3cret-value",
        **changes,
    }
    return OAuthGrant(**values)  # type: ignore[arg-type]


def test_microsoft_client_secret_through_msal(token_server: TokenServer) -> None:
    token = fetch_token(microsoft(token_server))
    claims = jwt_payload(token.value)
    assert claims["email"] == MAILBOX
    assert "https://outlook.office365.com/.default" in claims["scope"].split()
    assert token.expires_at > utcnow() + timedelta(minutes=50)
    assert token.value not in repr(token)


def test_microsoft_certificate_through_msal(token_server: TokenServer) -> None:
    key, pem = private_key_pem()
    cert = self_signed(key, "triage")
    public = (
        cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client_id = token_server.add_microsoft_app("imi.example", MAILBOX, public_pem=public)
    grant = OAuthGrant(
        AuthMethod.MICROSOFT,
        MAILBOX,
        client_id=client_id,
        tenant="imi.example",
        authority=token_server.url,
        certificate_key=pem,
        certificate_thumbprint=thumbprint(cert),
    )
    assert jwt_payload(fetch_token(grant).value)["email"] == MAILBOX


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tenant": "wrong.example"}, "(AADSTS90002): tenant wrong.example not found"),
        ({"client_secret": "the-secret-id"}, "(AADSTS7000215): invalid client secret"),
        ({"client_id": "0000-unknown"}, "(AADSTS700016): application 0000-unknown not found"),
    ],
)
def test_microsoft_refusals_are_one_clear_line(
    token_server: TokenServer, changes: dict[str, str], expected: str
) -> None:
    with pytest.raises(TokenError) as raised:
        fetch_token(microsoft(token_server, **changes))
    message = str(raised.value)
    assert expected in message and "\n" not in message
    assert "s3cret" not in message


def test_google_service_account_with_delegation(token_server: TokenServer) -> None:
    info = service_account_key(token_server, MAILBOX)
    grant = OAuthGrant(AuthMethod.GOOGLE_SERVICE_ACCOUNT, MAILBOX, service_account_info=info)
    claims = jwt_payload(fetch_token(grant).value)
    assert claims["email"] == MAILBOX and "https://mail.google.com/" in claims["scope"]


def test_google_service_account_without_delegation(token_server: TokenServer) -> None:
    info = service_account_key(token_server, MAILBOX, delegated=False)
    grant = OAuthGrant(AuthMethod.GOOGLE_SERVICE_ACCOUNT, MAILBOX, service_account_info=info)
    with pytest.raises(TokenError, match=r"\(unauthorized_client\): domain-wide delegation"):
        fetch_token(grant)


def test_google_refresh_token_then_revoked(token_server: TokenServer) -> None:
    client_id, secret, refresh = token_server.add_refresh_token(MAILBOX)
    grant = OAuthGrant(
        AuthMethod.GOOGLE_REFRESH_TOKEN,
        MAILBOX,
        client_id=client_id,
        client_secret=secret,
        refresh_token=refresh,
        token_uri=f"{token_server.url}/token",
    )
    assert jwt_payload(fetch_token(grant).value)["email"] == MAILBOX
    token_server.revoke(refresh)
    with pytest.raises(TokenError, match=r"\(invalid_grant\): the refresh token has expired"):
        fetch_token(grant)


def test_cache_shares_one_token_and_refreshes_before_expiry(
    engine: Engine, token_server: TokenServer
) -> None:
    sessions = make_session_factory(engine)
    grant = microsoft(token_server)
    calls: list[AccessToken] = []

    def fetch() -> AccessToken:
        token = fetch_token(grant)
        calls.append(token)
        return token

    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                token_cache.cached_token(sessions, "key", grant.cache_key(), fetch).value
            )
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and set(results) == {calls[0].value}
    # within the refresh margin of its expiry: a new token is fetched, once
    short = AccessToken("short-lived", utcnow() + timedelta(minutes=2))
    token_cache.forget(sessions, grant.cache_key())
    assert token_cache.cached_token(sessions, "key", grant.cache_key(), lambda: short) == short
    renewed = token_cache.cached_token(sessions, "key", grant.cache_key(), fetch)
    assert renewed.value != "short-lived" and len(calls) == 2
    # stored encrypted: the raw row does not hold the token
    with sessions() as session:
        from triage.orm import OAuthToken

        stored = session.get(OAuthToken, grant.cache_key())
        assert stored is not None and renewed.value not in stored.token
    # another SECRET_KEY cannot read it: a new token is fetched rather than garbage used
    token_cache.cached_token(sessions, "other-key", grant.cache_key(), fetch)
    assert len(calls) == 3


def test_secrets_read_from_file_or_environment(
    tmp_path: Path, token_server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triage.config import ConfigError, Settings
    from triage.mail import channels

    client_id = token_server.add_microsoft_app("imi.example", "exams@imi-awards.example", "v4lue")
    (tmp_path / "secret").write_text("v4lue\n")
    (tmp_path / "sa.json").write_text(json.dumps(service_account_key(token_server, MAILBOX)))
    path = tmp_path / "channels.toml"
    path.write_text(
        f"""
[[channel]]
name = "exams"
address = "exams@imi-awards.example"
imap = {{ host = "127.0.0.1", port = 1, tls = false }}
auth = {{ method = "microsoft", tenant = "imi.example", client_id = "{client_id}", client_secret_file = "{tmp_path / "secret"}", authority = "{token_server.url}" }}

[[channel]]
name = "google"
address = "google@imi-awards.example"
imap = {{ host = "127.0.0.1", port = 1, tls = false }}
auth = {{ method = "google-service-account", key_file = "{tmp_path / "sa.json"}", sasl = "oauthbearer" }}
"""
    )
    settings = Settings()
    settings.channels_file = path
    loaded = channels.load(settings)
    exams = loaded.get("exams").imap_credentials
    assert exams is not None and exams.grant is not None
    assert exams.grant.client_secret == "v4lue" and "v4lue" not in repr(exams)
    assert fetch_token(exams.grant).value
    google = loaded.get("google").imap_credentials
    assert google is not None and google.mechanism == "OAUTHBEARER"
    # a secret written into the file itself is refused, as is an unset variable
    path.write_text(
        '[[channel]]\nname = "x"\nimap = { host = "h" }\n'
        'auth = { method = "microsoft", tenant = "t", client_id = "c", client_secret = "plain" }\n'
    )
    with pytest.raises(ConfigError, match="give client_secret_file or client_secret_env"):
        channels.load(settings)
    path.write_text(
        '[[channel]]\nname = "x"\nimap = { host = "h" }\n'
        'auth = { method = "microsoft", tenant = "t", client_id = "c", '
        'client_secret_env = "TRIAGE_TEST_UNSET" }\n'
    )
    monkeypatch.delenv("TRIAGE_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="TRIAGE_TEST_UNSET"):
        channels.load(settings)
