"""The public 'Did this answer your question?' page in a real headless Chromium: a GET shows a button and
changes nothing, the button records the answer once, and a second answer or a forged or expired link gets a
clear page with a 4xx status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from tests.test_browser import browser_page, serving  # noqa: F401 (the browser fixture)
from tests.test_feedback import _events, _get, answered_ticket
from triage.mail.feedback_links import make_token
from triage.orm import utcnow
from triage.states import AuditAction, TicketStatus


@pytest.fixture
def answered(app: Flask, browser_page) -> Iterator[tuple[Any, str, int, str]]:  # type: ignore[no-untyped-def]
    """The app served on a loopback port (no model needed: the ticket comes from factories), a browser
    page, and an auto-replied ticket: (page, base URL, ticket id, link token)."""
    ticket_id, token = answered_ticket(app)
    with serving(app) as url:
        yield browser_page, url, ticket_id, token


def test_yes_in_a_browser_records_once_and_refuses_the_second(
    app: Flask, answered: tuple[Any, str, int, str]
) -> None:
    page, site, ticket_id, token = answered
    url = f"{site}/answer/{token}/yes"

    for _ in range(2):  # a link scanner and then the centre: GET changes nothing
        response = page.goto(url)
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "Did this answer your question?"
        assert page.get_by_role("button", name="Yes, that solved it").is_visible()
    assert _get(app, ticket_id).status == TicketStatus.AUTO_REPLIED
    assert _events(app, ticket_id, AuditAction.TICKET_ANSWER_CONFIRMED) == []
    assert page.context.cookies() == []  # no session or CSRF cookie for a centre
    browser = page.context.browser
    assert browser is not None
    other_tab = browser.new_page()  # the same email opened twice: both show the button
    other_tab.goto(url)

    with page.expect_navigation():
        page.get_by_role("button", name="Yes, that solved it").click()
    assert page.locator("h1").inner_text() == "Thank you"
    assert _get(app, ticket_id).status == TicketStatus.RESOLVED
    assert len(_events(app, ticket_id, AuditAction.TICKET_ANSWER_CONFIRMED)) == 1

    # the second tab's button: the second POST is refused with a clear page
    with other_tab.expect_response(lambda r: r.request.method == "POST") as second:
        other_tab.get_by_role("button", name="Yes, that solved it").click()
    assert second.value.status == 409
    other_tab.wait_for_load_state()
    assert other_tab.locator("h1").inner_text() == "You have already told us"
    assert len(_events(app, ticket_id, AuditAction.TICKET_ANSWER_CONFIRMED)) == 1
    # and the link opened again later says so, without a button
    response = page.goto(url)
    assert response is not None and response.status == 409
    assert page.get_by_role("button").count() == 0


def test_no_in_a_browser_takes_a_comment_and_bad_links_get_a_clear_page(
    app: Flask, answered: tuple[Any, str, int, str]
) -> None:
    page, site, ticket_id, token = answered
    page.goto(f"{site}/answer/{token}/no")
    hostile = '<script>window.pwned=1</script> still frozen "after" restart'
    page.get_by_label("What do you still need? (optional)").fill(hostile)
    with page.expect_navigation():
        page.get_by_role("button", name="No, I still need help").click()
    assert page.locator("h1").inner_text() == "Thank you"
    t = _get(app, ticket_id)
    assert t.status == TicketStatus.OPEN and t.answer_rejected_at is not None
    [event] = _events(app, ticket_id, AuditAction.TICKET_ANSWER_REJECTED)
    assert event.details["comment"] == hostile

    expired = make_token(
        app.extensions["triage.settings"].secret_key,
        ticket_id,
        "<whatever@imi.test>",
        issued_at=utcnow() - timedelta(days=31),
    )
    forged = token[:-2] + ("xy" if not token.endswith("xy") else "zz")
    for bad, status, heading in (
        (expired, 410, "This link has expired"),
        (forged, 404, "This link does not work"),
        ("<script>alert(1)</script>", 404, "This link does not work"),
    ):
        response = page.goto(f"{site}/answer/{bad}/yes")
        assert response is not None and response.status == status, bad
        assert page.locator("h1").inner_text() == heading
        assert page.get_by_role("button").count() == 0
        assert page.evaluate("window.pwned") is None
    # the page is styled (the app's stylesheet loads: no inline styles are needed)
    assert page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor") in (
        "rgb(255, 255, 255)",
    )
