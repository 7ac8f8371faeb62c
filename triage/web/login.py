"""Staff login and logout (Flask-Login sessions, CSRF-protected forms, throttled attempts)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user

from triage.helpdesk import users
from triage.models import User
from triage.web import db

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"


class StaffUser:
    """Flask-Login's view of a User row."""

    def __init__(self, user: User) -> None:
        self.row = user
        self.is_authenticated, self.is_active, self.is_anonymous = True, user.is_active, False

    def get_id(self) -> str:
        """The id stored in the session cookie."""
        return str(self.row.id)

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.row.role == "admin"


@login_manager.user_loader
def load_user(user_id: str) -> StaffUser | None:
    """Load the logged-in user for a request."""
    if not user_id.isdigit():
        return None
    user = db().get(User, int(user_id))
    return StaffUser(user) if user is not None and user.is_active else None


def init_app(app: Flask) -> None:
    """Install Flask-Login on the app."""
    login_manager.init_app(app)


def _safe_next(target: str | None) -> str:
    if target and urlsplit(target).netloc == "" and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("staff.queues")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the login form, or log in."""
    if current_user.is_authenticated:
        return redirect(url_for("staff.queues"))
    if request.method == "POST":
        email = request.form.get("email", "")[:254]
        password = request.form.get("password", "")[:1000]
        remote = request.remote_addr or "unknown"
        session = db()
        if users.too_many_failures(session, email, remote):
            return render_template("login.html", error="Too many failed attempts. Wait 15 minutes and try again."), 429
        user = users.authenticate(session, email, password, remote)
        session.commit()
        if user is None:
            return render_template("login.html", error="Wrong email or password.", email=email), 401
        login_user(StaffUser(user))
        flash(f"Signed in as {user.email}")
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html")


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out."""
    logout_user()
    return redirect(url_for("auth.login"))
