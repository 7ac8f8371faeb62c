"""A local OAuth 2.0 authorisation server for tests, built with Authlib, over HTTPS.

It answers as Microsoft Entra ID (tenant discovery, client credentials with a secret or a
certificate assertion) and as Google (a service account's JWT bearer grant, a refresh token), with
each provider's documented error shapes. Access tokens are JWTs (HS256) signed with `jwt_key`, which
the test Dovecot and SMTP servers check: `email` names the mailbox, `scope` the scopes granted
(plus "mail" when a mail scope was asked for).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.jose import jwt
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask, Response, request
from werkzeug.serving import make_server

MAIL_SCOPES = {"https://outlook.office365.com/.default", "https://mail.google.com/"}


def private_key_pem() -> tuple[rsa.RSAPrivateKey, str]:
    """A new RSA key and its PEM text."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key, pem


def self_signed(key: rsa.RSAPrivateKey, name: str, ip: str | None = None) -> x509.Certificate:
    """A self-signed certificate for `name` (and the IP address, for a TLS server)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256())


def thumbprint(cert: x509.Certificate) -> str:
    """The SHA-1 thumbprint Entra ID shows for a certificate (hex)."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    """A registered application: its secret or certificate, and the mailbox it may open."""

    client_id: str
    mailbox: str
    secret: str = ""
    public_pem: str = ""  # a certificate's or a service account's public key
    grant_types: tuple[str, ...] = ("client_credentials",)
    scopes: set[str] = field(default_factory=lambda: set(MAIL_SCOPES))

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return ""

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(self.secret) and secrets.compare_digest(self.secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method == JWTBearerClientAssertion.CLIENT_AUTH_METHOD:
            return bool(self.public_pem)
        return method in ("client_secret_post", "client_secret_basic") and bool(self.secret)

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class RefreshToken:
    """A stored refresh token (Google's authorisation-code grant, made earlier)."""

    client: Client
    value: str
    scope: str
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.client.mailbox


class TokenServer:
    """The server: register clients, then point msal's authority or google-auth's token_uri here."""

    def __init__(self, folder: Path, port: int, expires_in: int = 3600) -> None:
        self.port, self.expires_in = port, expires_in
        self.jwt_key = secrets.token_bytes(32)
        self.tenants: set[str] = set()
        self.clients: dict[str, Client] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.issued: list[dict[str, Any]] = []  # the claims of every access token issued
        key, pem = private_key_pem()
        cert = self_signed(key, "127.0.0.1", "127.0.0.1")
        self.cert_file, self.key_file = folder / "server.pem", folder / "server.key"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_text(pem)
        self.url = f"https://127.0.0.1:{port}"
        self.app = self._app()
        self._server = make_server(
            "127.0.0.1", port, self.app, ssl_context=(str(self.cert_file), str(self.key_file))
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()

    # --- registration -------------------------------------------------------------------------
    def add_microsoft_app(
        self, tenant: str, mailbox: str, secret: str = "", public_pem: str = ""
    ) -> str:
        """Register an Entra ID app in `tenant` with FullAccess on `mailbox`; its client id."""
        self.tenants.add(tenant)
        client_id = str(uuid.uuid4())
        self.clients[client_id] = Client(client_id, mailbox, secret, public_pem)
        return client_id

    def add_service_account(self, public_pem: str, mailbox: str, delegated: bool = True) -> str:
        """Register a Google service account allowed (or not) to act for `mailbox`; its email."""
        email = f"sa-{uuid.uuid4().hex[:8]}@project.iam.gserviceaccount.com"
        grant_types = (JWTBearerGrant.GRANT_TYPE,) if delegated else ()
        self.clients[email] = Client(email, mailbox, public_pem=public_pem, grant_types=grant_types)
        return email

    def add_refresh_token(
        self, mailbox: str, scope: str = "https://mail.google.com/"
    ) -> tuple[str, str, str]:
        """A Google OAuth client with a stored refresh token for `mailbox`: (id, secret, token)."""
        client_id = f"{uuid.uuid4().hex}.apps.googleusercontent.com"
        secret = secrets.token_urlsafe(16)
        client = Client(client_id, mailbox, secret, grant_types=("refresh_token",))
        self.clients[client_id] = client
        value = "1//" + secrets.token_urlsafe(32)
        self.refresh_tokens[value] = RefreshToken(client, value, scope)
        return client_id, secret, value

    def revoke(self, refresh_token: str) -> None:
        """The user withdrew the grant (or an admin revoked it)."""
        self.refresh_tokens[refresh_token].revoked = True

    def access_token(self, mailbox: str, scope: str, expires_in: int | None = None) -> str:
        """An access token as this server signs them (for servers' tests)."""
        return self._jwt(mailbox, scope, expires_in or self.expires_in)

    # --- the Flask app ------------------------------------------------------------------------
    def _jwt(self, mailbox: str, scope: str, expires_in: int) -> str:
        now = int(time.time())
        granted = scope.split() + (["mail"] if set(scope.split()) & MAIL_SCOPES else [])
        claims = {
            "iss": self.url,
            "sub": mailbox,
            "email": mailbox,
            "scope": " ".join(granted),
            "iat": now,
            "nbf": now - 5,
            "exp": now + expires_in,
        }
        self.issued.append(claims)
        token: bytes = jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, self.jwt_key)
        return token.decode()

    def _token(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str = "",
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        mailbox = user if isinstance(user, str) and user else client.mailbox
        return {
            "token_type": "Bearer",
            "access_token": self._jwt(mailbox, scope, self.expires_in),
            "expires_in": self.expires_in,
            "scope": scope,
        }

    def _app(self) -> Flask:
        app = Flask(__name__)
        server = AuthorizationServer(app, query_client=self.clients.get, save_token=lambda *a: None)
        server.register_token_generator("default", self._token)
        outer = self

        class ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = [
                "client_secret_post",
                "client_secret_basic",
                JWTBearerClientAssertion.CLIENT_AUTH_METHOD,
            ]

        server.register_grant(ClientCredentials)

        class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]
            INCLUDE_NEW_REFRESH_TOKEN = False

            def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
                token = outer.refresh_tokens.get(refresh_token)
                return None if token is None or token.revoked else token

            def authenticate_user(self, refresh_token: RefreshToken) -> str:
                return refresh_token.client.mailbox

            def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
                return None

        class ServiceAccountGrant(JWTBearerGrant):  # type: ignore[misc]
            claims: dict[str, Any]

            def process_assertion_claims(self, assertion: str) -> Any:
                self.claims = dict(super().process_assertion_claims(assertion))
                return self.claims

            def resolve_issuer_client(self, issuer: str) -> Client | None:
                return outer.clients.get(issuer)

            def get_audiences(self) -> list[str]:
                # google-auth signs for Google's token endpoint, as Google documents
                return [request.base_url, "https://oauth2.googleapis.com/token"]

            def resolve_client_public_key(self, client: Client, headers: Any = None) -> Any:
                from joserfc.jwk import RSAKey

                return RSAKey.import_key(client.public_pem)

            def authenticate_user(self, subject: str) -> str | None:
                known = {c.mailbox for c in outer.clients.values()}
                return subject if subject in known else None

            def has_granted_permission(self, client: Client, user: str) -> bool:
                return client.mailbox == user

            def create_token_response(self) -> tuple[int, dict[str, Any], list[Any]]:
                scope = str(self.claims.get("scope", ""))
                client: Client = self.request.client
                if set(scope.split()) - client.scopes:
                    error = {"error": "invalid_scope", "error_description": "Invalid OAuth scope"}
                    return 400, error, self.TOKEN_RESPONSE_HEADER
                token = outer._token("", client, self.request.user, scope)
                return 200, token, self.TOKEN_RESPONSE_HEADER

        class CertificateAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
            def get_audiences(self) -> list[str]:
                return [request.base_url]

            def validate_jti(self, claims: Any, jti: str) -> bool:
                return True

            def resolve_client_public_key(self, client: Client) -> Any:
                from joserfc.jwk import RSAKey

                return RSAKey.import_key(client.public_pem)

        server.register_grant(RefreshGrant)
        server.register_grant(ServiceAccountGrant)
        server.register_client_auth_method(
            CertificateAssertion.CLIENT_AUTH_METHOD, CertificateAssertion()
        )

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def discovery(tenant: str) -> Any:
            if tenant not in self.tenants:  # as Entra ID answers for an unknown tenant
                return _microsoft_error(
                    400,
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                    "tenant ID and are signing into the correct cloud.",
                )
            base = f"{self.url}/{tenant}"
            return {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
            }

        @app.post("/<tenant>/oauth2/v2.0/token")
        def microsoft_token(tenant: str) -> Any:
            if tenant not in self.tenants:
                return _microsoft_error(
                    400, "invalid_request", 90002, f"Tenant '{tenant}' not found."
                )
            client_id = request.form.get("client_id", "")
            if client_id not in self.clients:
                return _microsoft_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory "
                    f"'{tenant}'.",
                )
            response: Response = server.create_token_response()
            if response.status_code >= 400:
                body = response.get_json() or {}
                if body.get("error") == "invalid_client":
                    return _microsoft_error(
                        401,
                        "invalid_client",
                        7000215,
                        "Invalid client secret provided. Ensure the secret being sent in the "
                        "request is the client secret value, not the client secret ID.",
                    )
                if body.get("error") == "invalid_scope":
                    return _microsoft_error(
                        400, "invalid_scope", 1002012, "The provided value for scope is not valid."
                    )
            return response

        @app.post("/token")
        def google_token() -> Any:
            response: Response = server.create_token_response()
            return response

        return app


def _microsoft_error(status: int, error: str, code: int, text: str) -> tuple[dict[str, Any], int]:
    """An error as Entra ID's token and discovery endpoints shape it."""
    trace = str(uuid.uuid4())
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace}",
        "error_codes": [code],
        "timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
    }, status


def service_account_key(
    server: TokenServer, mailbox: str, delegated: bool = True
) -> dict[str, Any]:
    """A Google service account key file's content, its token_uri pointing at `server`."""
    key, pem = private_key_pem()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    email = server.add_service_account(public, mailbox, delegated)
    return {
        "type": "service_account",
        "project_id": "project",
        "private_key_id": hashlib.sha1(pem.encode()).hexdigest(),
        "private_key": pem,
        "client_email": email,
        "client_id": str(int.from_bytes(secrets.token_bytes(8), "big")),
        "token_uri": f"{server.url}/token",
    }


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """The token server for the requesting test module, on a free loopback port."""
    from tests.conftest import free_port

    server = TokenServer(tmp_path_factory.mktemp("oauth"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def trust_token_server(token_server: TokenServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """msal and google-auth use requests, which trusts this CA bundle (the only change made)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(token_server.cert_file))


def jwt_payload(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for assertions in tests)."""
    body = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return payload
