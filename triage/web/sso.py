"""Staff single sign-on with OpenID Connect: "Sign in with Microsoft" (Entra ID, through `msal`)
and "Sign in with Google" (Workspace, through Authlib's Flask client). The provider proves an
address; the staff account with that address is logged in (never created), and only people of
our tenant or Workspace domain get that far."""

from __future__ import annotations

import logging
from typing import Any

import msal
import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from triage.config import ConfigError, Settings
from triage.helpdesk import sign_in
from triage.web import db, settings
from triage.web.login import bp, complete_login, login_page

log = logging.getLogger(__name__)
MSAL_FLOW = "msal_auth_flow"  # the session key of a Microsoft sign-in under way
HTTP_TIMEOUT = 10
CLOCK_LEEWAY = 120  # seconds of clock difference allowed on an ID token's times


def init_app(app: Flask) -> None:
    """Check the sign-in settings and register the Google client when it is configured."""
    s: Settings = app.extensions["triage.settings"]
    if s.signin_microsoft_client_id and not s.signin_microsoft_tenant_id:
        raise ConfigError(
            "SIGNIN_MICROSOFT_TENANT_ID must name your tenant: sign-in is never open to every "
            "Microsoft organisation"
        )
    if s.signin_google_client_id and not s.signin_google_domain:
        raise ConfigError(
            "SIGNIN_GOOGLE_DOMAIN must name your Workspace domain: sign-in is never open to every "
            "Google account"
        )
    oauth = OAuth(app)
    if s.signin_google_client_id:
        oauth.register(
            "google",
            client_id=s.signin_google_client_id,
            client_secret=s.signin_google_client_secret,
            server_metadata_url=s.signin_google_discovery_url,
            client_kwargs={"scope": "openid email profile", "timeout": HTTP_TIMEOUT},
        )
    app.extensions["triage.oauth"] = oauth


def _refused(message: str) -> ResponseReturnValue:
    return login_page(message, 401)


def _unreachable(provider: str, exc: Exception) -> ResponseReturnValue:
    log.warning("%s sign-in failed: %s", provider, exc)
    return login_page(f"{provider} sign-in is not answering; try again or use your password.", 502)


def _log_in(address: str, method: str) -> ResponseReturnValue:
    """Log in the staff account with a proven address, or refuse."""
    try:
        user = sign_in.staff_account(db(), address)
    except sign_in.SignInRefused as exc:
        log.info("%s sign-in refused for %s", method, address)
        return _refused(str(exc))
    complete_login(user, method)
    return redirect(url_for("staff.queues"))


# --- Microsoft ---------------------------------------------------------------------------------


def _microsoft_authority() -> str:
    s = settings()
    return f"{s.signin_microsoft_authority_host}/{s.signin_microsoft_tenant_id}"


def _msal_app() -> msal.ConfidentialClientApplication:
    s = settings()
    return msal.ConfidentialClientApplication(
        s.signin_microsoft_client_id,
        client_credential=s.signin_microsoft_client_secret,
        authority=_microsoft_authority(),
        instance_discovery=False,  # the tenant's own authority: no look-up at another host
        timeout=HTTP_TIMEOUT,
    )


def _microsoft_configured() -> bool:
    return bool(settings().signin_microsoft_client_id) and not current_user.is_authenticated


@bp.get("/login/microsoft")
def microsoft_start() -> ResponseReturnValue:
    """Send the browser to Microsoft's sign-in page for our tenant."""
    if not _microsoft_configured():
        return redirect(url_for("auth.login"))
    try:
        flow = _msal_app().initiate_auth_code_flow(
            scopes=[], redirect_uri=url_for("auth.microsoft_callback", _external=True)
        )
    except (requests.RequestException, ValueError) as exc:
        return _unreachable("Microsoft", exc)
    session[MSAL_FLOW] = flow
    return redirect(flow["auth_uri"])


@bp.get("/login/microsoft/callback")
def microsoft_callback() -> ResponseReturnValue:
    """Microsoft sent the browser back: redeem the code, check the ID token, log in."""
    flow = session.pop(MSAL_FLOW, None)
    if not _microsoft_configured() or not isinstance(flow, dict):
        return redirect(url_for("auth.login"))
    try:
        result = _msal_app().acquire_token_by_auth_code_flow(flow, request.args.to_dict())
    except ValueError:  # msal: the state does not match the flow (a stale or forged callback)
        return _refused("That sign-in was not started here, or took too long. Try again.")
    except (requests.RequestException, RuntimeError) as exc:
        return _unreachable("Microsoft", exc)
    if "error" in result:
        log.info("Microsoft sign-in error %s: %s", result["error"], result.get("error_description"))
        return _refused(f"Microsoft refused the sign-in ({result['error']}).")
    try:
        claims = _verified_microsoft_claims(str(result.get("id_token", "")))
        address = sign_in.microsoft_address(claims, settings().signin_microsoft_tenant_id)
    except sign_in.SignInRefused as exc:
        return _refused(str(exc))
    except requests.RequestException as exc:
        return _unreachable("Microsoft", exc)
    return _log_in(address, "microsoft")


def _verified_microsoft_claims(id_token: str) -> dict[str, Any]:
    """The ID token's claims once its signature (the tenant's published keys), issuer, audience
    and times are checked; msal itself checks only the nonce and the state."""
    authority = _microsoft_authority()
    metadata = requests.get(
        f"{authority}/v2.0/.well-known/openid-configuration", timeout=HTTP_TIMEOUT
    ).json()
    keys = requests.get(metadata["jwks_uri"], timeout=HTTP_TIMEOUT).json()
    registry = jwt.JWTClaimsRegistry(
        leeway=CLOCK_LEEWAY,
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": settings().signin_microsoft_client_id},
        exp={"essential": True},
    )
    try:
        claims = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=["RS256"]).claims
        registry.validate(claims)
    except (JoseError, ValueError) as exc:
        log.warning("Microsoft ID token refused: %s", exc)
        raise sign_in.SignInRefused("Microsoft's answer could not be verified.") from None
    return dict(claims)


# --- Google ------------------------------------------------------------------------------------


def _google() -> Any:
    if not settings().signin_google_client_id or current_user.is_authenticated:
        return None
    return current_app.extensions["triage.oauth"].create_client("google")


@bp.get("/login/google")
def google_start() -> ResponseReturnValue:
    """Send the browser to Google's sign-in page, hinting our Workspace domain."""
    client = _google()
    if client is None:
        return redirect(url_for("auth.login"))
    try:
        response: ResponseReturnValue = client.authorize_redirect(
            url_for("auth.google_callback", _external=True),
            hd=settings().signin_google_domain,
            prompt="select_account",
        )
    except (requests.RequestException, AuthlibBaseError) as exc:
        return _unreachable("Google", exc)
    return response


@bp.get("/login/google/callback")
def google_callback() -> ResponseReturnValue:
    """Google sent the browser back: redeem the code; Authlib checks the ID token's signature,
    issuer, audience, times and nonce; then the Workspace domain and the address are checked."""
    client = _google()
    if client is None:
        return redirect(url_for("auth.login"))
    try:
        token = client.authorize_access_token()
    except (AuthlibBaseError, JoseError, ValueError) as exc:
        log.info("Google sign-in refused: %s", exc)
        return _refused("Google did not confirm the sign-in. Try again.")
    except requests.RequestException as exc:
        return _unreachable("Google", exc)
    claims = token.get("userinfo") or {}
    try:
        address = sign_in.google_address(claims, settings().signin_google_domain)
    except sign_in.SignInRefused as exc:
        return _refused(str(exc))
    return _log_in(address, "google")
