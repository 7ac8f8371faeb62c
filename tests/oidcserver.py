"""A local OpenID Connect provider built with Authlib's authorization server, served over HTTPS
with a self-signed certificate, shaped like the two providers staff sign in with:

- Microsoft Entra ID: `/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/oauth2/v2.0/
  authorize` and `/token`, `/{tenant}/discovery/v2.0/keys`; issuer `.../{tenant}/v2.0`; ID tokens
  carry `tid` and `preferred_username`.
- Google: `/google/.well-known/openid-configuration`, `/google/authorize`, `/google/token`,
  `/google/keys`; ID tokens carry `email`, `email_verified` and `hd`.

The application's real code (msal, Authlib's Flask client) talks to it with only the authority or
discovery URL changed. Its sign-in page is a form: the browser test types which of the provider's
accounts signs in. Codes are PKCE-checked (msal sends S256) and nonces echoed.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from markupsafe import escape
from werkzeug.serving import make_server

from tests.conftest import free_port

GOOGLE = "google"


@dataclass
class Client:
    """A registered application (Authlib's ClientMixin, duck-typed)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(
            s for s in scope.split() if s in {"openid", "profile", "email", "offline_access"}
        )

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    """An issued authorization code (Authlib's AuthorizationCodeMixin, duck-typed)."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    account: dict[str, Any]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Provider:
    """The running provider: its accounts, clients, keys and base URL."""

    def __init__(self, certificate: Path) -> None:
        self.key = RSAKey.generate_key(
            2048, parameters={"kid": "test-key-1", "use": "sig"}, private=True
        )
        self.signing_key = self.key  # a test may sign with a key the JWKS does not publish
        self.accounts: dict[str, dict[str, Any]] = {}  # login name -> the claims it gets
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.tokens_issued = 0
        self.certificate = certificate
        self.base = ""

    def issuer(self, path: str) -> str:
        """The issuer of the provider a request path belongs to."""
        first = path.strip("/").split("/")[0]
        return f"{self.base}/google" if first == GOOGLE else f"{self.base}/{first}/v2.0"


class MicrosoftLikeCode(OpenIDCode):
    """ID tokens with the provider's issuer, our key, and the account's claims."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        return any(c.nonce == nonce for c in self.provider.codes.values())

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.provider.signing_key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": "test-key-1"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {
            "iss": self.provider.issuer(request.path),
            "aud": client.client_id,
            "exp": int(time.time()) + 3600,
        }

    def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
        return UserInfo(user)


def _grant(provider: Provider) -> type[grants.AuthorizationCodeGrant]:
    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            provider.codes[code] = Code(
                code,
                req.client.client_id,
                req.payload.redirect_uri,
                req.payload.scope,
                req.user,
                data.get("nonce"),
                data.get("code_challenge"),
                data.get("code_challenge_method"),
            )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = provider.codes.get(code)
            return found if found is not None and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> dict[str, Any]:
            return authorization_code.account

    return CodeGrant


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "oidc-cert.pem", folder / "oidc-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _app(provider: Provider) -> Flask:
    app = Flask("oidc-test-provider")
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    server = AuthorizationServer(
        app, query_client=provider.clients.get, save_token=lambda token, req: None
    )
    server.register_grant(
        _grant(provider), [MicrosoftLikeCode(provider), CodeChallenge(required=False)]
    )

    def discovery(prefix: str) -> Any:
        base = f"{provider.base}/{prefix}"
        google = prefix == GOOGLE
        return jsonify(
            {
                "issuer": provider.issuer(f"/{prefix}"),
                "authorization_endpoint": f"{base}/authorize"
                if google
                else f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/token" if google else f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{base}/keys" if google else f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["S256", "plain"],
            }
        )

    def keys() -> Any:
        return jsonify({"keys": [provider.key.as_dict(private=False)]})

    def authorize() -> Any:
        if request.method == "GET":
            return (
                "<!doctype html><title>Test provider sign-in</title><form method=post>"
                "<label>Account <input name=account></label><button>Sign in</button></form>"
            )
        account = provider.accounts.get(request.form.get("account", ""))
        if account is None:
            return f"no such account {escape(request.form.get('account', ''))}", 400
        return server.create_authorization_response(grant_user=account)

    def token() -> Any:
        provider.tokens_issued += 1
        return server.create_token_response()

    app.add_url_rule(
        "/google/.well-known/openid-configuration", "g_disc", lambda: discovery(GOOGLE)
    )
    app.add_url_rule("/google/keys", "g_keys", keys)
    app.add_url_rule("/google/authorize", "g_auth", authorize, methods=["GET", "POST"])
    app.add_url_rule("/google/token", "g_token", token, methods=["POST"])
    app.add_url_rule(
        "/<tenant>/v2.0/.well-known/openid-configuration",
        "m_disc",
        lambda tenant: discovery(tenant),
    )
    app.add_url_rule("/<tenant>/discovery/v2.0/keys", "m_keys", lambda tenant: keys())
    app.add_url_rule(
        "/<tenant>/oauth2/v2.0/authorize",
        "m_auth",
        lambda tenant: authorize(),
        methods=["GET", "POST"],
    )
    app.add_url_rule(
        "/<tenant>/oauth2/v2.0/token", "m_token", lambda tenant: token(), methods=["POST"]
    )
    return app


@contextmanager
def oidc_provider(folder: Path) -> Iterator[Provider]:
    """Run the provider over HTTPS on a loopback port for the block."""
    cert, key = _self_signed(folder)
    provider = Provider(cert)
    port = free_port()
    provider.base = f"https://127.0.0.1:{port}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server("127.0.0.1", port, _app(provider), threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
