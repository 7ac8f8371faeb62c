"""Staff sign-in with Microsoft Entra ID or Google Workspace (OpenID Connect): which staff account
a provider's verified ID token names. Accounts are never created here: an address with no active
account is refused, and so is anyone from another tenant or Workspace domain."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.helpdesk.users import normalise_email
from triage.orm import User


class SignInRefused(Exception):
    """A sign-in that must not log anyone in; the message is shown to the person."""


def _text(claims: Mapping[str, object], name: str) -> str:
    value = claims.get(name)
    return value.strip() if isinstance(value, str) else ""


def microsoft_address(claims: Mapping[str, object], tenant_id: str) -> str:
    """The address a Microsoft ID token proves, from our tenant only.

    `tid` must be our tenant. The address is `preferred_username` (the user principal name, whose
    domain the tenant has verified), or `email` when Microsoft marks its domain owner-verified
    (`xms_edov`); an `email` claim alone is not proof (a user can set it). Guests (`acct` 1, when
    the app registration asks for that optional claim) are refused.
    """
    if not tenant_id or _text(claims, "tid").lower() != tenant_id.lower():
        raise SignInRefused("This Microsoft account belongs to another organisation (tenant).")
    if claims.get("acct") == 1:  # the optional claim: 0 a member of the tenant, 1 a guest
        raise SignInRefused("Guest accounts of the organisation cannot sign in here.")
    address = _text(claims, "preferred_username")
    if "@" not in address and claims.get("xms_edov") is True:
        address = _text(claims, "email")
    if "@" not in address:
        raise SignInRefused("Microsoft did not give a verified email address for this account.")
    return normalise_email(address)


def google_address(claims: Mapping[str, object], hosted_domain: str) -> str:
    """The address a Google ID token proves: verified (`email_verified`) and in our Workspace
    domain (`hd`, which only Workspace accounts of that domain carry)."""
    if not hosted_domain or _text(claims, "hd").lower() != hosted_domain.lower():
        raise SignInRefused("This Google account is not in the organisation's Workspace domain.")
    address = _text(claims, "email")
    if claims.get("email_verified") is not True or "@" not in address:
        raise SignInRefused("Google did not give a verified email address for this account.")
    return normalise_email(address)


def staff_account(session: Session, address: str) -> User:
    """The active staff account with this address; SignInRefused when there is none."""
    user = session.scalars(select(User).where(User.email == normalise_email(address))).first()
    if user is None or not user.is_active:
        raise SignInRefused(
            f"No active staff account uses {address}. Ask an administrator to add you."
        )
    return user
