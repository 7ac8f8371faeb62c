"""Staff accounts: creation, passwords, sessions, and login throttling per account and per client
address."""

from __future__ import annotations

import secrets
import unicodedata
from datetime import timedelta
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from triage.helpdesk import tokens
from triage.mail.recipients import unanswerable
from triage.orm import ApiToken, AuditEvent, User, utcnow
from triage.states import AuditAction, Role

ROLES = tuple(Role)
MIN_PASSWORD = 10
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_MAX_FAILURES = 5  # for one account from one client address
CLIENT_MAX_FAILURES = 20  # from one client address, whatever accounts it tries
ACCOUNT_MAX_FAILURES = (
    50  # for one account from everywhere: then only addresses it logged in from lately get in
)
KNOWN_ADDRESS_AGE = timedelta(days=30)


class UserError(ValueError):
    """A user operation that cannot be done, with a message for the person doing it."""


def normalise_email(email: str) -> str:
    """The one form of an address used to store, look up, count and check it: NFKC, stripped,
    lower-case."""
    return unicodedata.normalize("NFKC", email or "").strip().lower()[:254]


def create_user(
    session: Session, email: str, password: str, role: str = Role.AGENT, name: str = ""
) -> User:
    """Create a staff account with a hashed password."""
    email = normalise_email(email)
    if len(email) > 254 or unanswerable(email):
        raise UserError(f"email must be a valid email address (no spaces), got {email!r}")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise UserError(f"a user {email} already exists")
    user = User(
        email=email,
        name=name.strip()[:200],
        password_hash=generate_password_hash(password),
        role=Role(role),
    )
    session.add(user)
    session.flush()
    return user


def clean_name(name: str) -> str:
    """A display name: one line, trimmed, at most 200 characters."""
    return " ".join(name.split())[:200]


def set_password(user: User, password: str) -> None:
    """Replace a user's password; every session of the user ends."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")
    user.password_hash = generate_password_hash(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every session of a user (each request checks the session's version against the
    user's)."""
    user.session_version = (user.session_version or 0) + 1


def set_active(session: Session, user: User, active: bool) -> list[ApiToken]:
    """Activate or deactivate a user; deactivation ends their sessions and revokes the API tokens
    they made."""
    user.is_active = active
    if active:
        return []
    end_sessions(user)
    return tokens.revoke_created_by(session, user.id)


# the API token scopes each role may create (tokens are made under Admin > API tokens, admins only)
ROLE_TOKEN_SCOPES: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(tokens.SCOPES),
    Role.AGENT: frozenset(),
}


def change_role(session: Session, user: User, role: Role) -> list[ApiToken]:
    """Give a user a new role; the live tokens they made with a scope the new role could not create
    are revoked and returned."""
    user.role = role
    allowed = ROLE_TOKEN_SCOPES[role]
    rows = session.scalars(
        select(ApiToken).where(ApiToken.created_by_id == user.id, ApiToken.revoked_at.is_(None))
    )
    revoked = [row for row in rows if not set(row.scope_list) <= allowed]
    for row in revoked:
        row.revoked_at = utcnow()
    return revoked


def verify_password(password_hash: str, password: str) -> bool:
    """True if the password matches the hash (the one place passwords are checked)."""
    return check_password_hash(password_hash, password)


@cache
def _dummy_hash() -> str:
    """A hash of a random password, checked for unknown addresses so they take as long as known
    ones."""
    return generate_password_hash(secrets.token_hex(16))


def login_blocked(session: Session, email: str, remote: str) -> bool:
    """True when this client may not try this account now.

    Failures are counted per account and client address (5 lock that pair), per client address (20
    lock the address out of every account), and per account (50 from anywhere lock it, except from
    addresses it logged in from in the last 30 days): a stranger's guesses never lock the real user
    out of their own address, and one address cannot try passwords against many accounts.
    """
    email = normalise_email(email)
    since = utcnow() - LOGIN_WINDOW
    failures = (
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == AuditAction.LOGIN_FAILED, AuditEvent.created_at >= since)
    )
    from_remote = AuditEvent.details["remote"].as_string() == remote
    by_client = session.scalar(failures.where(from_remote)) or 0
    if by_client >= CLIENT_MAX_FAILURES:
        return True
    actor = AuditEvent.actor == _failure_actor(email)
    if (session.scalar(failures.where(actor, from_remote)) or 0) >= LOGIN_MAX_FAILURES:
        return True
    if (session.scalar(failures.where(actor)) or 0) < ACCOUNT_MAX_FAILURES:
        return False
    known = select(AuditEvent.id).where(
        AuditEvent.action == AuditAction.LOGIN_OK,
        AuditEvent.actor == f"user:{email}",
        AuditEvent.created_at >= utcnow() - KNOWN_ADDRESS_AGE,
        from_remote,
    )
    return session.scalar(known.limit(1)) is None


def _failure_actor(email: str) -> str:
    return f"login:{email[:180]}"


def record_failure(session: Session, email: str, remote: str) -> None:
    """Count one failed proof of identity for an account from a client address (a wrong password
    at login or on the password-change form, a wrong second-factor code)."""
    session.add(
        AuditEvent(
            actor=_failure_actor(normalise_email(email)),
            action=AuditAction.LOGIN_FAILED,
            details={"remote": remote},
        )
    )


def record_login(session: Session, user: User, remote: str, method: str = "password") -> None:
    """Record a successful login (its client address makes it a known address for the account)."""
    user.last_login_at = utcnow()
    session.add(
        AuditEvent(
            actor=f"user:{user.email}",
            user_id=user.id,
            action=AuditAction.LOGIN_OK,
            details={"remote": remote, "method": method},
        )
    )


def check_password(session: Session, user: User, password: str, remote: str) -> bool:
    """True if `password` is the user's own; a wrong one is counted like a failed login."""
    if verify_password(user.password_hash, password):
        return True
    record_failure(session, user.email, remote)
    return False


def authenticate(session: Session, email: str, password: str, remote: str) -> User | None:
    """The active user with these credentials, or None; failures are recorded (never the password).

    Unknown and inactive accounts are checked against a dummy hash, so every attempt costs one hash.
    """
    email = normalise_email(email)
    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    matches = verify_password(user.password_hash if user is not None else _dummy_hash(), password)
    if user is not None and user.is_active and matches:
        return user
    record_failure(session, email, remote)
    return None


def display_names(session: Session) -> dict[str, str]:
    """Each named member of staff's email address mapped to their name (for history sentences)."""
    rows = session.execute(select(User.email, User.name).where(User.name != "")).all()
    return {email: name.strip() for email, name in rows if name.strip()}
