"""OAuth 2.0 access tokens for a mailbox: Microsoft 365 app-only (msal) and Google Workspace
(google-auth: a service account with domain-wide delegation, or a stored refresh token).

A failure raises `TokenError` with one line naming what to fix and the provider's own error code.
Tokens are never logged; `AccessToken` keeps its value out of its repr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
GOOGLE_SCOPE = "https://mail.google.com/"
TIMEOUT_SECONDS = 30
_AADSTS = re.compile(r"AADSTS(\d+)")


class AuthMethod(StrEnum):
    """How a channel logs in to its IMAP and SMTP servers."""

    PASSWORD = "password"  # noqa: S105 (a method name)
    MICROSOFT = "microsoft"
    GOOGLE_SERVICE_ACCOUNT = "google-service-account"
    GOOGLE_REFRESH_TOKEN = "google-refresh-token"  # noqa: S105 (a method name)


class TokenError(Exception):
    """The provider refused to issue a token; the message is one line naming what to fix."""


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires (the value stays out of repr and logs)."""

    value: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class OAuthGrant:
    """What a token request needs; secrets are already read from their file or variable."""

    method: AuthMethod
    mailbox: str  # the address logged in as (the delegated user for Google)
    client_id: str = ""
    tenant: str = ""
    authority: str = MICROSOFT_AUTHORITY
    client_secret: str = field(default="", repr=False)
    certificate_key: str = field(default="", repr=False)  # PEM private key of the certificate
    certificate_thumbprint: str = ""
    service_account_info: dict[str, Any] = field(default_factory=dict, repr=False)
    refresh_token: str = field(default="", repr=False)
    token_uri: str = GOOGLE_TOKEN_URI
    scope: str = ""

    @property
    def scopes(self) -> list[str]:
        """The scopes asked for (the provider's mail scope unless set)."""
        default = MICROSOFT_SCOPE if self.method == AuthMethod.MICROSOFT else GOOGLE_SCOPE
        return (self.scope or default).split()

    def cache_key(self) -> str:
        """What identifies this grant's tokens in the shared cache (no secret in it)."""
        return (
            f"{self.method}:{self.tenant}:{self.client_id}:{self.mailbox}:{' '.join(self.scopes)}"
        )


def fetch_token(grant: OAuthGrant) -> AccessToken:
    """Ask the provider for a new access token; TokenError with one clear line when refused."""
    if grant.method == AuthMethod.MICROSOFT:
        return _microsoft(grant)
    if grant.method in (AuthMethod.GOOGLE_SERVICE_ACCOUNT, AuthMethod.GOOGLE_REFRESH_TOKEN):
        return _google(grant)
    raise TokenError(f"{grant.method} is not an OAuth 2.0 method")


def _microsoft(grant: OAuthGrant) -> AccessToken:
    """Client credentials through msal, with a client secret or a certificate."""
    import msal
    import msal.exceptions

    credential: str | dict[str, str] = grant.client_secret
    if grant.certificate_key:
        credential = {
            "private_key": grant.certificate_key,
            "thumbprint": grant.certificate_thumbprint,
        }
    try:
        app = msal.ConfidentialClientApplication(
            grant.client_id,
            authority=f"{grant.authority.rstrip('/')}/{grant.tenant}",
            client_credential=credential,
            instance_discovery=False,
            timeout=TIMEOUT_SECONDS,
        )
        result: dict[str, Any] = app.acquire_token_for_client(scopes=grant.scopes)
    except ValueError as exc:  # tenant discovery failed: a wrong tenant, or the server is wrong
        # msal's message drops the server's answer; the error it replaced still holds it
        raise TokenError(_microsoft_problem(f"{exc} {exc.__context__ or ''}", grant)) from None
    except msal.exceptions.MsalError as exc:  # e.g. the server answered 5xx
        raise TokenError(f"Microsoft token endpoint {grant.authority} failed: {exc}") from None
    except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
        raise TokenError(
            f"Microsoft token endpoint {grant.authority} unreachable: {type(exc).__name__}"
        ) from None
    if "access_token" not in result:
        raise TokenError(_microsoft_problem(_describe(result), grant))
    expires_in = int(result.get("expires_in", 3600))
    return AccessToken(result["access_token"], _now() + timedelta(seconds=expires_in))


_MICROSOFT_HINTS = {
    "90002": "tenant {tenant} not found: check the channel's tenant (directory ID or domain)",
    "700016": "application {client_id} not found in tenant {tenant}: check client_id and tenant "
    "(the app is registered in another tenant, or consent was not granted)",
    "7000215": "invalid client secret: put the secret's Value (not its ID) in the secret file",
    "7000222": "the client secret has expired: create a new one under Certificates & secrets",
    "700027": "the certificate is not registered on the app (or its thumbprint is wrong)",
    "70011": "invalid scope: use https://outlook.office365.com/.default",
    "1002012": "invalid scope: use https://outlook.office365.com/.default",
    "65001": "admin consent missing: grant admin consent for IMAP.AccessAsApp / SMTP.SendAsApp",
    "50034": "mailbox or tenant not found: check the tenant and mailbox address",
}


def _microsoft_problem(text: str, grant: OAuthGrant) -> str:
    """One line for a refused Microsoft token request, with its AADSTS code."""
    match = _AADSTS.search(text)
    code = match.group(1) if match else ""
    if code in _MICROSOFT_HINTS:
        hint = _MICROSOFT_HINTS[code].format(tenant=grant.tenant, client_id=grant.client_id)
        return f"Microsoft 365 refused the token (AADSTS{code}): {hint}"
    first = " ".join(text.split())[:300]
    return f"Microsoft 365 refused the token{f' (AADSTS{code})' if code else ''}: {first}"


def _describe(result: dict[str, Any]) -> str:
    """An msal error result as text: the error, its description and codes."""
    codes = " ".join(f"AADSTS{c}" for c in result.get("error_codes", []) or [])
    return f"{result.get('error', 'error')}: {result.get('error_description', '')} {codes}"


def _google(grant: OAuthGrant) -> AccessToken:
    """A token through google-auth: a delegated service account, or a refresh token."""
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.credentials
    import google.oauth2.service_account

    credentials: Any
    try:
        if grant.method == AuthMethod.GOOGLE_SERVICE_ACCOUNT:
            credentials = google.oauth2.service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                grant.service_account_info, scopes=grant.scopes, subject=grant.mailbox
            )
        else:
            credentials = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
                None,
                refresh_token=grant.refresh_token,
                token_uri=grant.token_uri,
                client_id=grant.client_id,
                client_secret=grant.client_secret,
                scopes=grant.scopes,
            )
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.RefreshError as exc:
        raise TokenError(_google_problem(exc, grant)) from None
    except (google.auth.exceptions.GoogleAuthError, ValueError, KeyError) as exc:
        raise TokenError(f"Google token request failed: {type(exc).__name__}: {exc}") from None
    expiry = credentials.expiry  # naive UTC
    expires_at = expiry.replace(tzinfo=UTC) if expiry else _now() + timedelta(hours=1)
    return AccessToken(str(credentials.token), expires_at)


def _google_problem(exc: Exception, grant: OAuthGrant) -> str:
    """One line for a refused Google token request, with Google's error code."""
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    code = str(details.get("error") or str(exc.args[0] if exc.args else "").split(":")[0])
    description = str(details.get("error_description", ""))
    if grant.method == AuthMethod.GOOGLE_SERVICE_ACCOUNT:
        hints = {
            "unauthorized_client": "domain-wide delegation is missing: in the Admin console "
            f"allow client {grant.service_account_info.get('client_id', '?')} the scope "
            f"{' '.join(grant.scopes)}",
            "invalid_grant": f"Google refused the delegation to {grant.mailbox} "
            "(is it a user of the Workspace domain, and is the key still valid?)",
            "invalid_scope": f"invalid scope {' '.join(grant.scopes)}: use {GOOGLE_SCOPE}",
        }
    else:
        hints = {
            "invalid_grant": "the refresh token has expired or been revoked: authorise the "
            "mailbox again and store the new refresh token",
            "invalid_client": "client_id or client_secret is wrong",
            "unauthorized_client": "the refresh token belongs to another OAuth client",
            "invalid_scope": f"invalid scope {' '.join(grant.scopes)}: use {GOOGLE_SCOPE}",
        }
    hint = hints.get(code, description or str(exc.args[0] if exc.args else exc))
    return f"Google refused the token ({code}): {hint}"


def read_secret(path: str | Path) -> str:
    """A secret kept in a file, without surrounding whitespace."""
    return Path(path).read_text(encoding="utf-8").strip()


def _now() -> datetime:
    return datetime.now(UTC)
