"""The staff journey in a real headless Chromium (Debian's), driven by Playwright against a live server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import free_port
from tests.mailutil import deliver, make_email, post_email, ticket
from tests.webutil import PASSWORD, make_user

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve the app over HTTP on a loopback port for the block; yields its base URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def live_server(mail_app: Flask) -> Iterator[str]:
    """The app with an active model, served over HTTP on a loopback port."""
    with serving(mail_app) as url:
        yield url


@pytest.fixture
def browser_page() -> Iterator[object]:
    """A Playwright page in Debian's Chromium."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; .ci/run does this)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        yield page
        browser.close()


def press(page: Any, key: str) -> None:
    """Press a key once the page's shortcuts are bound (a key pressed while the page is still
    loading would be lost)."""
    page.wait_for_selector("html[data-workspace=ready]", state="attached")
    page.keyboard.press(key)


def test_agent_finds_understands_answers_and_resolves_a_routed_ticket(
    mail_app: Flask,
    api_token: str,
    smtp_server,
    live_server: str,
    browser_page,  # type: ignore[no-untyped-def]
) -> None:
    make_user(mail_app, "agent@imi.test", "agent", "Alex Agent")
    hostile = make_email(
        subject="<script>window.pwned=1</script> a question",
        body='<img src=x onerror="window.pwned=1"> can we change our centre contact? zebra',
        message_id="<browser@centre.example>",
    )
    ref = post_email(mail_app.test_client(), api_token, hostile).get_json()["reference"]
    deliver(mail_app)  # the acknowledgement
    page = browser_page
    page.goto(f"{live_server}/queues")
    assert "/login" in page.url
    page.fill("input[name=email]", "agent@imi.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/queues")
    queue_slug = ticket(mail_app, ref).queue.slug
    page.click(f"a[href='/queues/{queue_slug}']")
    page.click(f"text={ref}")
    assert page.is_visible("text=Why it is here")
    assert page.evaluate("window.pwned") is None  # the email's script and onerror never ran
    assert "<script>window.pwned=1</script>" in page.inner_text("h1")  # shown as text
    page.select_option("select[name=category]", "other")
    page.click("text=Confirm category")
    page.wait_for_selector("text=Saved.")
    page.select_option("#canned", index=4)  # an FAQ answer to start from
    assert page.input_value("#reply-body")
    page.fill(
        "#reply-body",
        "Hello, please send the new contact's details to our centre team and we will update it.",
    )
    page.click("text=Send reply")
    page.wait_for_selector("text=Reply queued for sending.")
    page.click("#resolve-form button")
    page.wait_for_selector("text=Ticket resolved.")
    t = ticket(mail_app, ref)
    assert t.status == "resolved" and t.confirmed_category == "other"
    deliver(mail_app)
    sent = smtp_server[0].parsed()[-1]
    assert "new contact's details" in sent.get_body(("plain",)).get_content()
    assert sent["In-Reply-To"] == "<browser@centre.example>" and sent["To"] == "jo@college.example"
