"""Staff accounts: creation, password checks, and login throttling."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from triage.models import AuditEvent, User, utcnow

ROLES = ("agent", "admin")
MIN_PASSWORD = 10
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_MAX_FAILURES = 5


class UserError(ValueError):
    """A user operation that cannot be done, with a message for the person doing it."""


def create_user(session: Session, email: str, password: str, role: str = "agent", name: str = "") -> User:
    """Create a staff account with a hashed password."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise UserError("email must be an email address")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise UserError(f"a user {email} already exists")
    user = User(email=email, name=name.strip()[:200], password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def clean_name(name: str) -> str:
    """A display name: one line, trimmed, at most 200 characters."""
    return " ".join(name.split())[:200]


def set_password(user: User, password: str) -> None:
    """Replace a user's password."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")
    user.password_hash = generate_password_hash(password)


def too_many_failures(session: Session, email: str, remote: str) -> bool:
    """True when this address or this client has failed to log in too often lately."""
    since = utcnow() - LOGIN_WINDOW
    failures = (
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "login.failed", AuditEvent.created_at >= since)
    )
    by_email = session.scalar(failures.where(AuditEvent.actor == f"login:{email.lower()[:180]}")) or 0
    by_remote = session.scalar(failures.where(AuditEvent.details["remote"].as_string() == remote)) or 0
    return by_email >= LOGIN_MAX_FAILURES or by_remote >= LOGIN_MAX_FAILURES * 4


def authenticate(session: Session, email: str, password: str, remote: str) -> User | None:
    """The active user with these credentials, or None; failures are recorded (never the password)."""
    user = session.scalars(select(User).where(User.email == email.strip().lower())).one_or_none()
    if user is not None and user.is_active and check_password_hash(user.password_hash, password):
        user.last_login_at = utcnow()
        session.add(
            AuditEvent(actor=f"user:{user.email}", user_id=user.id, action="login.ok", details={"remote": remote})
        )
        return user
    session.add(
        AuditEvent(actor=f"login:{email.strip().lower()[:180]}", action="login.failed", details={"remote": remote})
    )
    return None
