"""Staff login, logout and password change (Flask-Login sessions, CSRF-protected forms, throttled
attempts).

A session names the user and the user's session version; logout, a password change or deactivation
raises the version, so every session of that user (copies of the cookie included) stops working.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import flask_login
from flask import Blueprint, Flask, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user

from triage.helpdesk import second_factor, users
from triage.orm import AuditEvent, User
from triage.states import AuditAction, Role
from triage.web import db, settings

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"

TOO_MANY = "Too many failed attempts. Wait 15 minutes and try again."
P = ParamSpec("P")
R = TypeVar("R")


def login_required(view: Callable[P, R]) -> Callable[P, R | ResponseReturnValue]:
    """Flask-Login's `login_required` (which ships no types): the view, or the login redirect."""
    guarded: Callable[P, R | ResponseReturnValue] = flask_login.login_required(view)
    return guarded


class StaffUser:
    """Flask-Login's view of a User row."""

    def __init__(self, user: User) -> None:
        self.row = user
        self.is_authenticated, self.is_active, self.is_anonymous = True, user.is_active, False

    def get_id(self) -> str:
        """The id stored in the session cookie: the user's id and session version."""
        return f"{self.row.id}:{self.row.session_version or 0}"

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.row.role == Role.ADMIN


def load_user(session_id: str) -> StaffUser | None:
    """Load the logged-in user for a request; a session from before the user's last logout loads
    nobody."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isascii() and user_id.isdigit() and version.isascii() and version.isdigit()):
        return None
    user = db().get(User, int(user_id)) if len(user_id) < 12 else None
    if user is None or not user.is_active or int(version) != (user.session_version or 0):
        return None
    return StaffUser(user)


login_manager.user_loader(load_user)


def init_app(app: Flask) -> None:
    """Install Flask-Login on the app."""
    login_manager.init_app(app)


def _safe_next(target: str | None) -> str:
    if (
        target
        and urlsplit(target).netloc == ""
        and target.startswith("/")
        and not target.startswith("//")
    ):
        return target
    return url_for("staff.queues")


def _start_session(user: User) -> None:
    """Log in with a fresh session: nothing from before login (a planted cookie, the old CSRF token)
    survives."""
    session.clear()
    # Flask-WTF caches the request's token here; the next form gets a new one
    g.pop("csrf_token", None)
    login_user(StaffUser(user))


PENDING = "pending_login"  # the session key of a password login waiting for its second factor
PENDING_SECRET = "pending_totp_secret"  # noqa: S105 (a session key) a secret shown for enrolment, not yet confirmed
PENDING_SECONDS = 300


def login_page(
    error: str | None = None, status: int = 200, **context: object
) -> ResponseReturnValue:
    """The login form, with the single sign-on buttons that are configured."""
    return render_template("login.html", error=error, sign_in_with=sso_buttons(), **context), status


def sso_buttons() -> list[tuple[str, str]]:
    """(label, URL) of each configured single sign-on provider."""
    s = settings()
    buttons = []
    if s.signin_microsoft_client_id:
        buttons.append(("Sign in with Microsoft", url_for("auth.microsoft_start")))
    if s.signin_google_client_id:
        buttons.append(("Sign in with Google", url_for("auth.google_start")))
    return buttons


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the login form, or check the password (then the second factor, if the user has one
    or must have one)."""
    if current_user.is_authenticated:
        return redirect(url_for("staff.queues"))
    if request.method == "POST":
        email = users.normalise_email(request.form.get("email", ""))
        password = request.form.get("password", "")[:1000]
        remote = request.remote_addr or "unknown"
        dbs = db()
        if users.login_blocked(dbs, email, remote):
            return login_page(TOO_MANY, 429)
        user = users.authenticate(dbs, email, password, remote)
        if user is None:
            dbs.commit()
            return login_page("Wrong email or password.", 401, email=email)
        target = _safe_next(request.args.get("next"))
        if second_factor.enrolled(user) or second_factor.required(
            user, settings().totp_required_for_admins
        ):
            session.clear()
            session[PENDING] = {
                "user": user.id,
                "version": user.session_version or 0,
                "at": int(time.time()),
                "next": target,
            }
            return redirect(url_for("auth.second_factor_login"))
        complete_login(user, "password")
        return redirect(target)
    return login_page()


def complete_login(user: User, method: str) -> None:
    """Record the login, commit, and start a fresh session for the user."""
    users.record_login(db(), user, request.remote_addr or "unknown", method)
    db().commit()
    _start_session(user)
    flash(f"Signed in as {user.email}")


def _pending_user() -> User | None:
    """The user whose password was right moments ago in this browser, still waiting for a code."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = db().get(User, pending.get("user", 0))
    if user is None or not user.is_active or (user.session_version or 0) != pending.get("version"):
        return None
    return user


@bp.route("/login/second-factor", methods=["GET", "POST"])
def second_factor_login() -> ResponseReturnValue:
    """After the password: the authenticator code, or (when an admin must have one) enrolment."""
    user = _pending_user()
    if user is None:
        session.pop(PENDING, None)
        flash("Log in again: the sign-in took too long or was not started.", "error")
        return redirect(url_for("auth.login"))
    enrolling = not second_factor.enrolled(user)
    if enrolling and not session.get(PENDING_SECRET):
        session[PENDING_SECRET] = second_factor.new_secret()
    secret = session.get(PENDING_SECRET, "") if enrolling else ""
    if request.method == "POST":
        dbs = db()
        remote = request.remote_addr or "unknown"
        if users.login_blocked(dbs, user.email, remote):
            session.pop(PENDING, None)
            return login_page(TOO_MANY, 429)
        code = request.form.get("code", "")[:20]
        accepted = (
            second_factor.enrol(user, secret, code)
            if enrolling
            else second_factor.accept_code(dbs, user, code)
        )
        if accepted:
            if enrolling:
                _audit_second_factor(user, True)
            target = str(session[PENDING].get("next") or url_for("staff.queues"))
            complete_login(user, "password+totp")
            return redirect(_safe_next(target))
        users.record_failure(dbs, user.email, remote)
        dbs.commit()
        return _second_factor_page(user, secret, "That code is not right. Try the newest one."), 401
    return _second_factor_page(user, secret, None)


def _second_factor_page(user: User, secret: str, error: str | None) -> str:
    return render_template(
        "second_factor.html", secret=secret, uri=_uri(secret, user), error=error, login=True
    )


def _audit_second_factor(user: User, enabled: bool) -> None:
    db().add(
        AuditEvent(
            actor=f"user:{user.email}",
            user_id=user.id,
            action=AuditAction.USER_SECOND_FACTOR,
            details={"email": user.email, "enabled": enabled},
        )
    )


def _uri(secret: str, user: User) -> str:
    """The otpauth:// URI of a secret being enrolled ("" when none)."""
    if not secret:
        return ""
    return second_factor.provisioning_uri(secret, user.email, settings().support_name)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out everywhere: every session of this user ends, not only this browser's."""
    if current_user.is_authenticated:
        user = db().get(User, current_user.row.id)
        if user is not None:
            users.end_sessions(user)
            db().commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> ResponseReturnValue:
    """Change one's own password; every other session of the user ends, this one is renewed."""
    if request.method == "POST":
        form = request.form
        dbs = db()
        user = dbs.get(User, current_user.row.id)
        assert user is not None
        remote = request.remote_addr or "unknown"
        if users.login_blocked(dbs, user.email, remote):
            return render_template("password.html", error=TOO_MANY), 429
        error = None
        if not users.check_password(dbs, user, form.get("current", "")[:1000], remote):
            dbs.commit()  # the failure counts like a failed login
            return render_template("password.html", error="The current password is wrong."), 400
        if form.get("new", "") != form.get("repeat", ""):
            error = "The new passwords differ."
        else:
            try:
                users.set_password(user, form.get("new", "")[:1000])
            except users.UserError as exc:
                error = str(exc)
        if error:
            dbs.rollback()
            return render_template("password.html", error=error), 400
        dbs.commit()
        _start_session(user)
        flash("Password changed. Every other session of yours has been logged out.")
        return redirect(url_for("staff.queues"))
    return render_template("password.html")


@bp.route("/account/second-factor", methods=["GET", "POST"])
@login_required
def second_factor_account() -> ResponseReturnValue:
    """Turn one's own second factor on (shown a secret, confirmed with a code) or off (with the
    password)."""
    dbs = db()
    user = dbs.get(User, current_user.row.id)
    assert user is not None
    secret = session.get(PENDING_SECRET, "")
    error = None
    if request.method == "POST":
        op = request.form.get("op", "")
        remote = request.remote_addr or "unknown"
        if users.login_blocked(dbs, user.email, remote):
            return render_template("second_factor.html", error=TOO_MANY, user=user), 429
        if op == "start":
            secret = session[PENDING_SECRET] = second_factor.new_secret()
        elif op == "confirm" and secret:
            if second_factor.enrol(user, secret, request.form.get("code", "")[:20]):
                _audit_second_factor(user, True)
                session.pop(PENDING_SECRET, None)
                dbs.commit()
                flash("Second factor on: password logins now ask for a code from your app.")
                return redirect(url_for("auth.second_factor_account"))
            users.record_failure(dbs, user.email, remote)
            error = "That code is not right. Try the newest one."
        elif op == "remove":
            if second_factor.required(user, settings().totp_required_for_admins):
                error = "Administrators must keep a second factor here."
            elif users.check_password(dbs, user, request.form.get("password", "")[:1000], remote):
                second_factor.remove(user)
                _audit_second_factor(user, False)
                dbs.commit()
                flash("Second factor off.")
                return redirect(url_for("auth.second_factor_account"))
            else:
                error = "The password is wrong."
        dbs.commit()  # failures count like failed logins
    return render_template(
        "second_factor.html",
        user=user,
        secret=secret if not second_factor.enrolled(user) else "",
        uri=_uri(secret, user),
        error=error,
        login=False,
        required=second_factor.required(user, settings().totp_required_for_admins),
    ), (400 if error else 200)
