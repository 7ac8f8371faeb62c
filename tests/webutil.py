"""Helpers for staff web app tests: users, login with CSRF, posting forms."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import PASSWORD

# every admin page a browser opens with GET
ADMIN_PAGES = (
    "/admin/users",
    "/admin/queues",
    "/admin/routing",
    "/admin/macros",
    "/admin/tokens",
    "/admin/outbox",
    "/admin/inbound",
    "/admin/models",
)


def make_user(
    app: Flask, email: str = "agent@imi.test", role: str = "agent", name: str = "Alex Agent"
) -> int:
    """Create a user (password PASSWORD) and return its id."""
    with factories.session_of(app) as s:
        return factories.user(s, email=email, role=role, name=name).id


def csrf_from(html: str) -> str:
    """The CSRF token in a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: FlaskClient, email: str = "agent@imi.test", password: str = PASSWORD) -> Any:
    """Log in through the form, CSRF token included."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(client: FlaskClient, page: str, action: str, data: dict[str, str]) -> Any:
    """Post a form found on `page` (its CSRF token included) to `action`."""
    token = csrf_from(client.get(page).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token})
