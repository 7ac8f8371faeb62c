"""The staff workspace in a real headless Chromium: urgent first, shortcuts, bulk actions, search, faster
replies, the API page and a phone-sized layout (reusing the live server and browser of test_browser)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests import factories
from tests.test_browser import browser_page, press, serving  # noqa: F401 (fixture)
from tests.webutil import PASSWORD, make_user
from tests.workspace_util import reload

LIVE_EXAM = {  # a ticket as live-exam mail makes one
    "subject": "Exam frozen - candidate still in the room",
    "body": "The exam has frozen half way. The candidate is sat there waiting, exam started at 10:30.",
    "category": "exam_frozen",
    "urgent": True,
    "urgent_reason": 'Exam has frozen, happening now ("sat there")',
}


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app (no model: the tickets come from the factories) served over HTTP on a loopback port."""
    with serving(app) as url:
        yield url


def _login(page: Any, server: str, email: str = "agent@imi.test") -> None:
    page.goto(f"{server}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/queues")


def _csp_watch(page: Any) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def test_urgent_first_and_keyboard_shortcuts(app: Flask, live_server: str, browser_page) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:
        calm = [
            factories.ticket(
                s,
                centre_email=f"c{i}@calm{i}.example",
                subject=f"Contact change {i}",
                body="Can we change our centre contact? zebra crossing",
            )
            for i in range(2)
        ]
        live = factories.ticket(s, centre_email="pat@live.example", **LIVE_EXAM)
    page = browser_page
    problems = _csp_watch(page)
    _login(page, live_server)
    page.goto(f"{live_server}/views/open")
    rows = page.locator("tr[data-href]")
    assert rows.count() == 3
    assert "urgent" in (rows.nth(0).get_attribute("class") or "")  # urgent sorts first
    assert rows.nth(0).locator("text=urgent").count() >= 1 and "due in" in rows.nth(0).inner_text()
    press(page, "?")
    assert page.is_visible("#shortcuts") and page.is_visible("text=Keyboard shortcuts")
    press(page, "Escape")
    assert not page.is_visible("#shortcuts")
    press(page, "j")
    press(page, "j")
    assert "selected" in (rows.nth(1).get_attribute("class") or "")
    press(page, "k")
    assert "selected" in (rows.nth(0).get_attribute("class") or "")
    press(page, "o")
    page.wait_for_url(f"{live_server}/tickets/{live.id}")
    assert page.is_visible("text=happening now")
    press(page, "a")  # assign to me
    page.wait_for_selector("text=Saved.")
    assert reload(app, live.id).assignee is not None
    assert page.locator("button:text-is('Claim')").count() == 0  # not offered on my own ticket
    press(page, "r")
    assert page.evaluate("document.activeElement.id") == "reply-body"
    page.keyboard.type("jjj")  # typing in the reply box is text, not shortcuts
    assert page.url.endswith(f"/tickets/{live.id}") and page.input_value("#reply-body") == "jjj"
    page.click("h1")  # leave the text box
    press(page, "e")  # resolve: refused until the category is confirmed
    page.wait_for_selector("text=confirm the category before resolving")
    page.click("text=Confirm category")
    page.wait_for_selector("text=Saved.")
    press(page, "e")
    page.wait_for_selector("text=Ticket resolved.")
    assert reload(app, live.id).status == "resolved"
    assert (
        page.locator("button:text-is('Resolve')").count() == 0
        and page.locator("button:text-is('Reopen')").count() == 1
    )
    assert all(reload(app, t.id).status == "open" for t in calm)
    assert problems == []


def test_bulk_actions_with_checkboxes_and_keys(app: Flask, live_server: str, browser_page) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:
        tickets = [
            factories.ticket(
                s,
                centre_email=f"b{i}@bulk{i}.example",
                category="other",
                subject=f"Bulk {i}",
                body="Can we change our centre contact? zebra crossing",
            )
            for i in range(3)
        ]
    page = browser_page
    _login(page, live_server)
    page.goto(f"{live_server}/views/unassigned")
    page.check("#tick-all")
    assert page.inner_text("#ticked") == "3"
    page.select_option("select[name=move_value]", "technical")
    page.click("button[name=op][value=move]")
    page.wait_for_selector("text=3 tickets changed.")
    assert {reload(app, t.id).queue.slug for t in tickets} == {"technical"}
    # keyboard: select the first row, tick it with x, assign the ticked to me with a
    press(page, "j")
    press(page, "x")
    assert page.inner_text("#ticked") == "1"
    press(page, "a")
    page.wait_for_selector("text=1 ticket changed.")
    assigned = [t for t in tickets if reload(app, t.id).assignee is not None]
    assert len(assigned) == 1
    page.goto(f"{live_server}/views/mine")
    assert page.locator("tr[data-href]").count() == 1
    page.check("#tick-all")
    with page.expect_navigation():
        page.click("button[name=op][value=confirm]")
    page.check("#tick-all")
    with page.expect_navigation():
        press(page, "e")  # resolve the ticked (focus on a checkbox still takes shortcuts)
    assert page.is_visible("text=1 ticket changed.")
    assert reload(app, assigned[0].id).status == "resolved"


def test_search_from_the_header_and_send_and_next(
    app: Flask, live_server: str, browser_page
) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:  # both in one queue
        first = factories.ticket(
            s,
            centre_email="exams@greenfield.example",
            centre_name="Greenfield",
            subject="Booking",
            body="We need to rebook the armadillo workshop for our learners. zebra",
        )
        second = factories.ticket(
            s,
            centre_email="x@hill.example",
            centre_name="",
            subject="Another",
            body="Can we change our centre contact? zebra",
        )
    page = browser_page
    _login(page, live_server)
    press(page, "/")
    page.keyboard.type("armadillo")
    press(page, "Enter")
    page.wait_for_url("**/search?q=armadillo")
    assert page.locator("tr[data-href]").count() == 1 and page.is_visible(f"text={first.reference}")
    page.click(f"text={first.reference}")
    page.fill("#reply-body", "We have rebooked it for you.")
    page.click("button:text-is('Send and next')")
    page.wait_for_url(f"{live_server}/tickets/{second.id}")
    assert page.is_visible("text=Reply queued for sending.")
    assert reload(app, first.id).status == "pending"
    page.click("a:text('all tickets from hill.example')")
    page.wait_for_selector(f"text={second.reference}")
    assert page.is_visible("text=Centre: hill.example")


def test_api_page_renders_the_document_with_the_csp_intact(
    app: Flask, live_server: str, browser_page
) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    page = browser_page
    problems = _csp_watch(page)
    _login(page, live_server)
    page.click("header >> text=API")
    page.wait_for_selector(".swagger-ui .info", timeout=20_000)
    assert page.is_visible("text=IMI centre-enquiry triage API")
    assert page.locator(".opblock").count() >= 6  # one block per operation
    assert problems == []


def test_urgency_toggle_preferences_and_user_admin(
    app: Flask, live_server: str, browser_page
) -> None:  # type: ignore[no-untyped-def]
    make_user(app, "boss@imi.test", "admin", "Boss")
    agent_id = make_user(app)
    with factories.session_of(app) as s:
        calm = factories.ticket(
            s,
            centre_email="q@calm.example",
            centre_name="",
            subject="Contact change",
            body="Can we change our centre contact?",
        )
    page = browser_page
    _login(page, live_server, "boss@imi.test")
    page.goto(f"{live_server}/tickets/{calm.id}")
    page.fill("#urgency input[name=reason]", "centre phoned: candidate waiting now")
    page.click("#urgency button")
    page.wait_for_selector("text=Saved.")
    assert page.is_visible("#urgency .pill.urgent") and reload(app, calm.id).urgent
    assert page.is_visible("text=Boss marked it urgent") or page.is_visible(
        "text=boss@imi.test marked it urgent"
    )
    page.goto(f"{live_server}/preferences")
    page.uncheck("input[name=notify_overdue]")
    page.click("text=Save")
    page.wait_for_selector("text=Preferences saved.")
    assert not page.is_checked("input[name=notify_overdue]") and page.is_checked(
        "input[name=notify_urgent]"
    )
    page.goto(f"{live_server}/admin/users")
    page.fill("input[aria-label='Name of agent@imi.test']", "Alex Renamed")
    page.locator("tr", has_text="agent@imi.test").locator("button:text-is('Rename')").click()
    page.wait_for_selector("text=Saved.")
    assert page.input_value("input[aria-label='Name of agent@imi.test']") == "Alex Renamed"
    with app.extensions["triage.sessions"]() as s:
        from triage.orm import User

        assert s.get(User, agent_id).name == "Alex Renamed"  # type: ignore[union-attr]
