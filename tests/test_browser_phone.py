"""The staff app on a 390-pixel phone in a real headless Chromium: ticket lists as cards, nothing off-screen
sideways on any main page, labels never broken a letter per line, the first urgent ticket and a ticket's
Claim and Resolve within the first screen (and still there after scrolling), plus styled error pages and
image previews (reusing the live server and browser of test_browser)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests import factories
from tests.test_browser import browser_page, serving  # noqa: F401 (fixture)
from tests.webutil import ADMIN_PAGES, PASSWORD, make_user

PHONE = {"width": 390, "height": 844}
PNG = (  # a 1x1 transparent PNG
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)
# every element whose box reaches past the right edge of the screen, unless a box around it scrolls or clips
# sideways (a wide table inside a scrolling box is within the screen)
OFF_SCREEN = """() => {
  const width = document.documentElement.clientWidth, found = [];
  const clipped = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return true;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.height && (r.right > width + 1 || r.left < -1) && !clipped(el)
        && getComputedStyle(el).position !== 'fixed') {
      found.push(el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className + ' ' + Math.round(r.right));
    }
  }
  return found.slice(0, 10);
}"""
# labels and references drawn one letter per line are much taller than one line of text
BROKEN_LABELS = """() => Array.from(document.querySelectorAll('.pill, .due, table.tickets td:nth-child(2) > a'))
  .filter(el => el.getBoundingClientRect().height > 2.2 * parseFloat(getComputedStyle(el).fontSize) * 1.2)
  .map(el => el.textContent.trim()).slice(0, 10)"""


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app (no model: the tickets come from the factories) served over HTTP on a loopback port."""
    with serving(app) as url:
        yield url


def _login(page: Any, server: str, email: str) -> None:
    page.goto(f"{server}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/queues")


def test_main_pages_fit_a_390_pixel_phone(app: Flask, live_server: str, browser_page) -> None:  # type: ignore[no-untyped-def]
    make_user(app, "boss@imi.test", "admin", "Boss Person")
    with factories.session_of(app) as s:
        for i in range(3):
            factories.ticket(s, centre_email=f"c{i}@calm{i}.example", subject=f"Contact change {i}")
        t = factories.ticket(
            s,
            centre_email="coordinator.of.examinations@averyveryverylongdomainname.example",
            centre_name="Very Long Centre Name Limited",
            subject="Exam frozen: a subject with a very_long_unbroken_token_" + "x" * 120,
            body="frozen " + "y" * 300 + "\n" + "a long line of words " * 40,
            category="exam_frozen",
            urgent=True,
            urgent_reason="exam happening now",
        )
        factories.attachment(
            s, t.messages[0], filename="screen.png", data=PNG, content_type="image/png"
        )
        factories.outbound(s, t, kind="ack")
        factories.api_token(s)
    page = browser_page
    page.set_viewport_size(PHONE)
    _login(page, live_server, "boss@imi.test")
    domain = t.centre_email.rpartition("@")[2]
    pages = (
        "/queues",
        "/views/open",
        "/queues/triage",
        f"/tickets/{t.id}",
        "/search?q=frozen",
        f"/centres/{domain}",
        "/dashboard",
        "/preferences",
        "/password",
        "/api-docs",
        *ADMIN_PAGES,
        "/tickets/999999",
    )
    for path in pages:
        page.goto(f"{live_server}{path}")
        if path == "/api-docs":
            page.wait_for_selector(".swagger-ui .info", timeout=20_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        assert page.evaluate(OFF_SCREEN) == [], path
        assert page.evaluate(BROKEN_LABELS) == [], path

    # lists are cards, and the first (urgent) ticket is on the first screen
    page.goto(f"{live_server}/views/open")
    assert (
        page.evaluate("getComputedStyle(document.querySelector('table.tickets thead')).display")
        == "none"
    )
    cards = "document.querySelector('table.tickets').parentElement"
    assert page.evaluate(
        f"{cards}.scrollWidth <= {cards}.clientWidth"
    )  # no sideways scrolling inside
    first = page.locator("tr[data-href]").first
    assert "urgent" in (first.get_attribute("class") or "")
    assert first.bounding_box()["y"] < PHONE["height"] / 2

    # a ticket's Claim and Resolve are on the first screen and stay in reach at the bottom of the page
    page.goto(f"{live_server}/tickets/{t.id}")
    for button in ("#claim-form button", "#resolve-form button"):
        assert page.locator(button).bounding_box()["y"] < PHONE["height"] / 2, button
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    for button in ("#claim-form button", "#resolve-form button"):
        box = page.locator(button).bounding_box()
        assert 0 <= box["y"] < PHONE["height"], button
    assert page.locator("img.preview").evaluate("img => img.naturalWidth") == 1


def test_styled_error_page_in_the_browser(app: Flask, live_server: str, browser_page) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    page = browser_page
    _login(page, live_server, "agent@imi.test")
    answer = page.goto(f"{live_server}/queues/no-such-queue")
    assert answer.status == 404
    assert page.is_visible("text=Page not found") and page.is_visible("text=Go to the queues")
    page.click("text=Go to the queues")
    page.wait_for_url(f"{live_server}/queues")
