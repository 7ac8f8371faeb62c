"""The TOTP second factor of password logins (RFC 6238, 6 digits, 30-second steps, via pyotp):
enrolment, checking a code once only, and when it is required."""

from __future__ import annotations

import hmac
import time

import pyotp
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from triage.orm import User
from triage.states import Role

DRIFT_STEPS = 1  # a code from the step before or after is taken too (clocks drift, people type)


def new_secret() -> str:
    """A new random base32 secret (160 bits) for an authenticator app."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads (as a QR code or pasted)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def _matching_step(secret: str, code: str, after: int | None, now: float) -> int | None:
    """The time step within the drift whose code is `code` and which is later than `after`."""
    code = "".join(code.split())
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(int(now))
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if (after is None or step > after) and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def accept_code(session: Session, user: User, code: str, now: float | None = None) -> bool:
    """True if `code` is the user's current code and was not used before (it is then used up).

    The step is taken with one conditional UPDATE, so two requests racing with the same code (in
    any processes) cannot both get in.
    """
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code, user.totp_last_step, now or time.time())
    if step is None:
        return False
    unused = or_(User.totp_last_step.is_(None), User.totp_last_step < step)
    taken = session.execute(
        update(User).where(User.id == user.id, unused).values(totp_last_step=step),
        execution_options={"synchronize_session": False},
    )
    if getattr(taken, "rowcount", 0) != 1:
        return False
    user.totp_last_step = step
    return True


def enrol(user: User, secret: str, code: str, now: float | None = None) -> bool:
    """Turn the second factor on with `secret` if `code` proves the app holds it; False if not."""
    step = _matching_step(secret, code, None, now or time.time())
    if step is None:
        return False
    user.totp_secret, user.totp_last_step = secret, step
    return True


def remove(user: User) -> None:
    """Turn the second factor off."""
    user.totp_secret, user.totp_last_step = None, None


def enrolled(user: User) -> bool:
    """True if the user has a second factor."""
    return bool(user.totp_secret)


def required(user: User, required_for_admins: bool) -> bool:
    """True if this user must have a second factor (admins, when the setting is on)."""
    return required_for_admins and user.role == Role.ADMIN
