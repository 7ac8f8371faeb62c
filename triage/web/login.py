"""Staff login, logout and password change (Flask-Login sessions, CSRF-protected forms, throttled
attempts).

A session names the user and the user's session version; logout, a password change or deactivation
raises the version, so every session of that user (copies of the cookie included) stops working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import flask_login
from flask import Blueprint, Flask, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user

from triage.helpdesk import users
from triage.orm import User
from triage.states import Role
from triage.web import db

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"

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


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the login form, or log in."""
    if current_user.is_authenticated:
        return redirect(url_for("staff.queues"))
    if request.method == "POST":
        email = users.normalise_email(request.form.get("email", ""))
        password = request.form.get("password", "")[:1000]
        remote = request.remote_addr or "unknown"
        dbs = db()
        if users.login_blocked(dbs, email, remote):
            return render_template(
                "login.html", error="Too many failed attempts. Wait 15 minutes and try again."
            ), 429
        user = users.authenticate(dbs, email, password, remote)
        dbs.commit()
        if user is None:
            return render_template("login.html", error="Wrong email or password.", email=email), 401
        _start_session(user)
        flash(f"Signed in as {user.email}")
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html")


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
        user = db().get(User, current_user.row.id)
        assert user is not None
        error = None
        if not users.verify_password(user.password_hash, form.get("current", "")[:1000]):
            error = "The current password is wrong."
        elif form.get("new", "") != form.get("repeat", ""):
            error = "The new passwords differ."
        else:
            try:
                users.set_password(user, form.get("new", "")[:1000])
            except users.UserError as exc:
                error = str(exc)
        if error:
            db().rollback()
            return render_template("password.html", error=error), 400
        db().commit()
        _start_session(user)
        flash("Password changed. Every other session of yours has been logged out.")
        return redirect(url_for("staff.queues"))
    return render_template("password.html")
