"""Staff working together, in a real headless Chromium with two staff sessions at once (issue 28):
who else has a ticket open and who is typing, a reply that would cross a colleague's, nothing typed
lost, Undo after resolving, asking before taking a colleague's ticket or deactivating someone, bulk
actions that need a target. One app and server for the module, one browser with a context per person."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests import factories
from tests.test_browser import CHROMIUM, FLAGS, press, serving
from tests.webutil import PASSWORD
from tests.workspace_util import reload
from triage import create_app
from triage.orm import AuditEvent, Macro, Message, Ticket, User

QUESTION = {
    "subject": "Extra time for a candidate",
    "body": "Hello,\nCan a candidate be given extra time in the exam?\nThanks, Sam",
    "category": "extra_time",
}


@pytest.fixture(scope="module")
def shared_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app on a SQLite copy for the whole module, with two agents and an admin."""
    base = tmp_path_factory.mktemp("collab")
    shutil.copy(sqlite_template, base / "triage.db")
    (base / "instance").mkdir()
    (base / "models").mkdir()
    application = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{base / 'triage.db'}",
            "INSTANCE_PATH": base / "instance",
            "MODELS_DIR": base / "models",
            "SECRET_KEY": "collab-secret",
        }
    )
    with factories.session_of(application) as s:
        factories.user(s, email="alex@imi.test", name="Alex Agent")
        factories.user(s, email="bea@imi.test", name="Bea Agent")
        factories.user(s, email="boss@imi.test", name="Bo Boss", role="admin")
    yield application
    application.extensions["triage.engine"].dispose()


@pytest.fixture(scope="module")
def server(shared_app: Flask) -> Iterator[str]:
    """The module's app served over HTTP on a loopback port."""
    with serving(shared_app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def _person(browser: Any, server: str, email: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.problems = problems
    page.goto(f"{server}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/queues")
    return page


@pytest.fixture(scope="module")
def alex(browser: Any, server: str) -> Any:
    """Alex's logged-in page."""
    return _person(browser, server, "alex@imi.test")


@pytest.fixture(scope="module")
def bea(browser: Any, server: str) -> Any:
    """Bea's logged-in page (another browser context: another session)."""
    return _person(browser, server, "bea@imi.test")


def _ticket(app: Flask, **fields: Any) -> Ticket:
    with factories.session_of(app) as s:
        return factories.ticket(s, **{**QUESTION, **fields})


def _user(app: Flask, email: str) -> User:
    with factories.session_of(app) as s:
        return s.scalars(select(User).where(User.email == email)).one()


def test_presence_typing_and_a_conflicting_reply(
    shared_app: Flask, server: str, alex: Any, bea: Any
) -> None:
    t = _ticket(shared_app, centre_email="sam@presence.example")
    url = f"{server}/tickets/{t.id}"
    alex.goto(url)
    bea.goto(url)
    # each sees the other within a poll or two
    alex.wait_for_selector("#viewers .viewer:has-text('Bea Agent has this open')", timeout=10_000)
    bea.wait_for_selector("#viewers .viewer:has-text('Alex Agent has this open')", timeout=10_000)
    # Bea types: Alex sees her typing, live
    bea.click("#reply-body")
    bea.keyboard.type("Yes, 25% extra time is allowed.")
    alex.wait_for_selector(
        "#viewers .typing:has-text('Bea Agent is typing a reply')", timeout=10_000
    )
    # Alex writes too, and Bea sends first
    alex.fill("#reply-body", "Alex's answer: please send us the form.")
    bea.click("button:text-is('Send reply')")
    bea.wait_for_selector("text=Reply queued for sending.")
    # Alex's open page learns of it, and sending asks Alex to look first; the text is kept
    alex.wait_for_selector("#newer-reply:visible", timeout=10_000)
    alex.click("button:text-is('Send reply')")
    alex.wait_for_selector("text=Bea Agent replied to the centre")
    assert alex.input_value("#reply-body") == "Alex's answer: please send us the form."
    assert alex.locator("text=Yes, 25% extra time is allowed.").count() >= 1  # the reply to read
    with factories.session_of(shared_app) as s:
        replies = s.scalars(
            select(Message).where(Message.ticket_id == t.id, Message.kind == "staff_reply")
        ).all()
        assert len(replies) == 1  # the centre got one answer, not two
    # having looked, Alex can still send (the page now knows Bea's reply)
    alex.click("button:text-is('Send reply')")
    alex.wait_for_selector("text=Reply queued for sending.")
    assert len(reload(shared_app, t.id).messages) == 3
    # Bea leaves: Alex's page stops showing her
    bea.goto(f"{server}/queues")
    alex.locator("#viewers .viewer:has-text('Bea')").wait_for(state="detached", timeout=10_000)
    assert alex.problems == [] and bea.problems == []


def test_nothing_typed_is_lost_and_send_and_resolve_confirms_by_macro(
    shared_app: Flask, server: str, alex: Any
) -> None:
    with factories.session_of(shared_app) as s:
        macro = Macro(title="Extra time: yes", body="Yes, it can.", category="extra_time")
        s.add(macro)
        s.flush()
        macro_title = macro.title
    t = _ticket(shared_app, centre_email="kim@macro.example")
    other = _ticket(shared_app, centre_email="lee@keep.example", category="other")
    # a reply that cannot go (a colleague resolved the ticket meanwhile) keeps the text, with the reason
    alex.goto(f"{server}/tickets/{other.id}")
    alex.fill("#reply-body", "My careful answer")
    with factories.session_of(shared_app) as s:
        row = s.get(Ticket, other.id)
        assert row is not None
        row.status = "resolved"
    alex.click("button:text-is('Send reply')")
    alex.wait_for_selector("text=reopen the ticket before replying")
    assert alex.input_value("#reply-body") == "My careful answer"
    with factories.session_of(shared_app) as s:
        row = s.get(Ticket, other.id)
        assert row is not None
        row.status = "open"
    # a draft survives a reload in the tab
    alex.goto(f"{server}/tickets/{other.id}")
    alex.fill("#reply-body", "Half-written answer")
    alex.reload()
    assert alex.input_value("#reply-body") == "Half-written answer"
    alex.fill("#reply-body", "")
    alex.evaluate("sessionStorage.clear()")
    # Send and resolve with the model's category unconfirmed: the macro of that category confirms it
    alex.goto(f"{server}/tickets/{t.id}")
    alex.select_option("#canned", label=macro_title)
    assert alex.input_value("#reply-body") == "Yes, it can."
    alex.click("button:text-is('Send and resolve')")
    alex.wait_for_selector("text=Reply queued for sending.")
    assert alex.is_visible("text=Category confirmed as")
    alex.wait_for_selector("text=Ticket resolved.")
    done = reload(shared_app, t.id)
    assert done.status == "resolved" and done.confirmed_category == "extra_time"
    # without a macro: sent, and the page says why it was not resolved
    alex.goto(f"{server}/tickets/{other.id}")
    alex.fill("#reply-body", "We will look into it.")
    alex.click("button:text-is('Send and resolve')")
    alex.wait_for_selector("text=Reply queued for sending.")
    alex.wait_for_selector("text=was not resolved: confirm the category before resolving")
    assert reload(shared_app, other.id).status == "pending"
    assert alex.problems == []


def test_resolve_offers_undo_and_taking_a_colleagues_ticket_asks(
    shared_app: Flask, server: str, alex: Any, bea: Any
) -> None:
    bea_user = _user(shared_app, "bea@imi.test")
    t = _ticket(shared_app, centre_email="pat@undo.example", confirmed_category="extra_time")
    with factories.session_of(shared_app) as s:
        row = s.get(Ticket, t.id)
        assert row is not None
        row.assignee_id = bea_user.id
    alex.goto(f"{server}/tickets/{t.id}")
    alex.click("h1")
    # `a` on Bea's ticket asks first; saying no changes nothing
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    alex.once("dialog", lambda d: answer(d, False))
    press(alex, "a")
    alex.wait_for_timeout(300)
    assert asked and "Bea Agent has this ticket" in asked[0]
    assert reload(shared_app, t.id).assignee_id == bea_user.id
    alex.once("dialog", lambda d: answer(d, True))
    press(alex, "a")
    alex.wait_for_selector("text=Saved.")
    assert reload(shared_app, t.id).assignee_id == _user(shared_app, "alex@imi.test").id
    # `e` resolves, and Undo is offered for a few seconds
    press(alex, "e")
    alex.wait_for_selector("#undo-button")
    assert reload(shared_app, t.id).status == "resolved"
    alex.click("#undo-button")
    alex.wait_for_selector("text=Undone: the ticket is open again.")
    assert reload(shared_app, t.id).status == "open"
    # the Resolve button too; the offer goes by itself
    alex.click("#resolve-form button")
    alex.wait_for_selector("#undo-button")
    alex.wait_for_selector("#undo", state="detached", timeout=15_000)
    assert reload(shared_app, t.id).status == "resolved"
    assert alex.problems == []


def test_bulk_assign_needs_a_target_and_deactivating_asks_where_tickets_go(
    shared_app: Flask, server: str, browser: Any
) -> None:
    carl = None
    with factories.session_of(shared_app) as s:
        carl = factories.user(s, email="carl@imi.test", name="Carl Leaving")
        mine = [
            factories.ticket(s, **{**QUESTION, "centre_email": f"c{i}@bulk.example"}, assignee=carl)
            for i in range(2)
        ]
        carl_id = carl.id
    boss = _person(browser, server, "boss@imi.test")
    # ticking a colleague's ticket and pressing Assign without choosing does not unassign it
    boss.goto(f"{server}/search?q=bulk.example")
    boss.check(f"input[name=ticket_id][value='{mine[0].id}']")
    boss.click("button[name=op][value=assign]")
    boss.wait_for_selector("text=choose who to assign the ticked tickets to")
    assert reload(shared_app, mine[0].id).assignee_id == carl_id
    # `e` on ticked tickets resolves them, with Undo for a few seconds
    with factories.session_of(shared_app) as s:
        done = [
            factories.ticket(
                s,
                **{**QUESTION, "centre_email": f"u{i}@undo-bulk.example"},
                confirmed_category="extra_time",
            )
            for i in range(2)
        ]
    boss.goto(f"{server}/search?q=undo-bulk.example")
    boss.check("#tick-all")
    boss.click("h1")
    press(boss, "e")
    boss.wait_for_selector("#undo-button")
    assert all(reload(shared_app, t.id).status == "resolved" for t in done)
    boss.click("#undo-button")
    boss.wait_for_selector("text=2 tickets changed.")
    assert all(reload(shared_app, t.id).status == "open" for t in done)
    # Deactivate asks, and says where Carl's 2 open tickets go (nobody, by default)
    boss.goto(f"{server}/admin/users")
    row = boss.locator("tr", has_text="carl@imi.test")
    assert row.locator("select[name=tickets_to]").input_value() == ""
    asked: list[str] = []
    boss.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    row.locator("button:text-is('Deactivate')").click()
    boss.wait_for_timeout(300)
    assert asked and "2 open tickets" in asked[0]
    assert _user(shared_app, "carl@imi.test").is_active
    boss.once("dialog", lambda d: d.accept())
    row.locator("button:text-is('Deactivate')").click()
    boss.wait_for_selector("text=2 open tickets of carl@imi.test are now unassigned.")
    assert not _user(shared_app, "carl@imi.test").is_active
    assert all(reload(shared_app, t.id).assignee_id is None for t in mine)
    with factories.session_of(shared_app) as s:
        moved = s.scalars(
            select(AuditEvent).where(
                AuditEvent.ticket_id == mine[0].id, AuditEvent.action == "ticket.assigned"
            )
        ).all()
        assert moved and moved[-1].details["previous"] == "carl@imi.test"
    # macro Delete asks too
    with factories.session_of(shared_app) as s:
        s.add(Macro(title="Doomed macro", body="x", category=None))
    boss.goto(f"{server}/admin/macros")
    boss.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    boss.click("button:has-text('Delete “Doomed macro”')")
    boss.wait_for_timeout(300)
    assert "Delete the macro “Doomed macro”" in asked[-1]
    with factories.session_of(shared_app) as s:
        assert s.scalars(select(Macro).where(Macro.title == "Doomed macro")).one_or_none()
    assert boss.problems == []
    boss.context.close()
