"""Incidents, links and merges (issue 28, point 5) on SQLite and PostgreSQL: one reply reaching every joined
centre at a real SMTP server (each greeted by name, threaded into its own ticket), resolving all at once,
suggestions when many tickets of one category arrive together, merging a centre's duplicate with its thread and
history kept, links both ways, the API, and a browser run of the incident page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests import factories
from tests.mailutil import deliver
from tests.test_browser import browser_page, serving  # noqa: F401 (fixture)
from tests.webutil import PASSWORD, csrf_from, login, make_user, post_form
from tests.workspace_util import reload
from triage.helpdesk import incidents, tickets
from triage.orm import AuditEvent, Incident, utcnow
from triage.states import AuditAction, IncidentStatus, LinkKind, TicketStatus

NAMES = ["Priya Shah", "Tom Evans", "Aisha Khan", "Gareth Jones", "Mei Lin"]
OUTAGE = "We cannot log in to SecureAssess at all this morning, the site will not load."


def _outage_tickets(app: Flask, count: int = 3) -> list[Any]:
    with factories.session_of(app) as s:
        return [
            factories.ticket(
                s,
                centre_email=f"officer{i}@centre{i}.example",
                centre_name=NAMES[i],
                subject="SecureAssess down",
                body=OUTAGE,
                category="exam_access_secureclient",
            )
            for i in range(count)
        ]


def _staff(app: Flask) -> tickets.Actor:
    with app.extensions["triage.sessions"]() as s:
        user = factories.user(s, email="lead@imi.test", name="Lee Lead")
        s.commit()
        s.refresh(user)
        s.expunge(user)
    return tickets.Actor.of_user(user)


def test_one_reply_reaches_every_centre_threaded_and_resolving_resolves_all(
    smtp_app: Flask, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    outage = _outage_tickets(smtp_app)
    with factories.session_of(smtp_app) as s:
        done = factories.ticket(
            s, centre_email="x@done.example", status="resolved", confirmed_category="other"
        )
    actor = _staff(smtp_app)
    settings = smtp_app.extensions["triage.settings"]
    with smtp_app.extensions["triage.sessions"]() as s:
        incident, joined = incidents.create_incident(
            s,
            actor,
            "SecureAssess unavailable",
            "exam_access_secureclient",
            [t.id for t in outage] + [done.id],
        )
        s.commit()
        assert len(joined.done) == 4
        incident = incidents.get_incident(s, incident.id)
        sent = incidents.reply_all(
            s, settings, actor, incident, "SecureAssess is back. Please try again now."
        )
        s.commit()
        assert len(sent.done) == 3 and sent.skipped == [f"{done.reference}: resolved already"]
    assert deliver(smtp_app) == 3
    mails = {m["To"]: m for m in smtp_server[0].parsed()}
    for t in outage:
        mail = next(m for to, m in mails.items() if t.centre_email in to)
        text = mail.get_body(("plain",)).get_content()
        assert text.splitlines()[0] == f"Dear {t.centre_name},"  # greeted by name
        assert "SecureAssess is back" in text and t.reference in mail["Subject"]
        assert mail["In-Reply-To"] == t.messages[0].message_id  # its own thread
    with smtp_app.extensions["triage.sessions"]() as s:
        incident = incidents.get_incident(s, incident.id)
        resolved = incidents.resolve_incident(s, actor, incident)
        s.commit()
        assert len(resolved.done) == 3
    for t in outage:
        row = reload(smtp_app, t.id)
        assert (row.status, row.confirmed_category) == (
            TicketStatus.RESOLVED,
            "exam_access_secureclient",
        )
    with smtp_app.extensions["triage.sessions"]() as s:
        assert s.get(Incident, incident.id).status == IncidentStatus.RESOLVED
        actions = set(s.scalars(select(AuditEvent.action)))
        assert {
            AuditAction.INCIDENT_CREATED,
            AuditAction.INCIDENT_REPLIED,
            AuditAction.INCIDENT_RESOLVED,
        } <= actions


def test_an_incident_without_a_category_stays_open_until_every_ticket_can_be_resolved(
    app: Flask,
) -> None:
    outage = _outage_tickets(app, 2)
    actor = _staff(app)
    with app.extensions["triage.sessions"]() as s:
        incident, _ = incidents.create_incident(s, actor, "Outage", None, [t.id for t in outage])
        s.commit()
        with pytest.raises(tickets.TicketError, match="stays open"):
            incidents.resolve_incident(s, actor, incidents.get_incident(s, incident.id))
        s.rollback()
        assert s.get(Incident, incident.id).status == IncidentStatus.OPEN
        with pytest.raises(tickets.TicketError, match="title"):
            incidents.create_incident(s, actor, "   ", None, [])
    assert all(reload(app, t.id).status == TicketStatus.OPEN for t in outage)


def test_many_tickets_of_one_category_arriving_together_are_suggested(app: Flask) -> None:
    _outage_tickets(app, 5)
    with factories.session_of(app) as s:
        factories.ticket(s, category="exam_frozen")
        factories.ticket(
            s, category="exam_access_secureclient", created_at=utcnow() - timedelta(hours=3)
        )  # too long ago
    actor = _staff(app)
    with app.extensions["triage.sessions"]() as s:
        found = incidents.suggestions(s)
        assert [(x.category, len(x.ticket_ids)) for x in found] == [("exam_access_secureclient", 5)]
        incidents.create_incident(
            s, actor, "Outage", "exam_access_secureclient", found[0].ticket_ids
        )
        s.commit()
        assert incidents.suggestions(s) == []  # joined tickets are not suggested again


def test_merging_a_centres_duplicate_keeps_thread_and_history_and_later_mail_threads_there(
    smtp_app: Flask,
) -> None:
    with factories.session_of(smtp_app) as s:
        first = factories.ticket(s, subject="Keycode", body="Where is the keycode for today?")
        again = factories.ticket(
            s, subject="Keycode again", body="Sorry, asking again about the keycode."
        )
        other = factories.ticket(s, centre_email="someone@else.example")
    actor = _staff(smtp_app)
    with smtp_app.extensions["triage.sessions"]() as s:
        dup, kept = tickets.get_ticket(s, again.id), tickets.get_ticket(s, first.id)
        tickets.add_note(s, actor, dup, "phoned them")
        with pytest.raises(tickets.TicketError, match="one centre"):
            incidents.merge(s, actor, dup, tickets.get_ticket(s, other.id))
        incidents.merge(s, actor, dup, kept)
        s.commit()
    kept = reload(smtp_app, first.id)
    dup = reload(smtp_app, again.id)
    assert [m.subject for m in kept.messages] == ["Keycode", "Keycode again"]
    assert (
        dup.messages == [] and dup.status == TicketStatus.RESOLVED and dup.merged_into_id == kept.id
    )
    with smtp_app.extensions["triage.sessions"]() as s:
        assert [n.body for n in tickets.notes(s, kept)] == ["phoned them"]
        assert AuditAction.TICKET_MERGED_IN in {e.action for e in tickets.history(s, kept)}
        assert incidents.links_of(s, kept)[0][1] == LinkKind.DUPLICATE
        with pytest.raises(tickets.TicketError, match="merged already"):
            incidents.merge(s, actor, tickets.get_ticket(s, dup.id), tickets.get_ticket(s, kept.id))


def test_links_show_on_both_tickets_and_can_be_removed(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:
        one = factories.ticket(s, subject="Printer jammed <b>now</b>")
        two = factories.ticket(s, centre_email="b@other.example", subject="Same printer")
    login(client)
    page = f"/tickets/{one.id}"
    post_form(client, page, f"{page}/link", {"other": two.reference, "kind": "related"})
    html = client.get(f"/tickets/{two.id}").get_data(as_text=True)
    assert f'Related to\n        <a href="/tickets/{one.id}">{one.reference}</a>' in html
    assert "Printer jammed &lt;b&gt;now&lt;/b&gt;" in html
    assert "linked it to" in html
    bad = post_form(client, page, f"{page}/link", {"other": "nonsense", "kind": "related"})
    assert bad.status_code == 302
    assert "not a ticket reference" in client.get(page).get_data(as_text=True)
    post_form(client, page, f"{page}/unlink/{two.id}", {})
    assert f'Related to\n        <a href="/tickets/{one.id}"' not in client.get(
        f"/tickets/{two.id}"
    ).get_data(as_text=True)


def test_bulk_bar_joins_ticked_tickets_to_an_incident(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    outage = _outage_tickets(app, 2)
    login(client)
    post_form(
        client, "/incidents", "/incidents", {"title": "Outage", "category": "", "tickets": ""}
    )
    with app.extensions["triage.sessions"]() as s:
        incident_id = s.scalar(select(Incident.id))
    html = client.get("/views/open").get_data(as_text=True)
    assert "Add to incident" in html
    client.post(
        "/tickets/bulk",
        data={
            "op": "incident",
            "incident_value": str(incident_id),
            "ticket_id": [str(t.id) for t in outage],
            "csrf_token": csrf_from(html),
        },
    )
    assert all(reload(app, t.id).incident_id == incident_id for t in outage)
    queues = client.get("/queues").get_data(as_text=True)
    assert "Answer them as one incident" not in queues  # two tickets: no suggestion


def test_the_api_opens_answers_and_resolves_an_incident(smtp_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    outage = _outage_tickets(smtp_app, 2)
    with factories.session_of(smtp_app) as s:
        token = factories.api_token(s)
    api = smtp_app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    bad = api.post("/api/v1/incidents", json={"title": ""}, headers=auth)
    assert bad.status_code == 400 and bad.json["field"] == "title"
    assert (
        api.post(
            "/api/v1/incidents", json={"title": "x", "ticket_ids": ["1"]}, headers=auth
        ).status_code
        == 400
    )
    made = api.post(
        "/api/v1/incidents",
        json={
            "title": "SecureAssess down",
            "category": "exam_access_secureclient",
            "ticket_ids": [t.id for t in outage],
        },
        headers=auth,
    )
    assert made.status_code == 201 and len(made.json["tickets"]) == 2
    incident_id = made.json["id"]
    assert api.get(f"/api/v1/incidents/{incident_id}", headers=auth).json["status"] == "open"
    assert api.get("/api/v1/incidents/999999", headers=auth).status_code == 404
    replied = api.post(
        f"/api/v1/incidents/{incident_id}/replies", json={"body": "Fixed now."}, headers=auth
    )
    assert replied.status_code == 201 and len(replied.json["done"]) == 2
    assert deliver(smtp_app) == 2 and len(smtp_server[0].parsed()) == 2
    resolved = api.post(f"/api/v1/incidents/{incident_id}/resolve", headers=auth)
    assert resolved.status_code == 200 and resolved.json["status"] == "resolved"
    again = api.post(f"/api/v1/incidents/{incident_id}/resolve", headers=auth)
    assert again.status_code == 409
    linked = api.post(
        f"/api/v1/tickets/{outage[0].id}/links",
        json={"ticket_id": outage[1].id, "kind": "duplicate"},
        headers=auth,
    )
    assert linked.status_code == 201 and linked.json["links"][0]["kind"] == "duplicate"
    cross = api.post(
        f"/api/v1/tickets/{outage[0].id}/merge", json={"into": outage[1].id}, headers=auth
    )
    assert cross.status_code == 409 and "one centre" in cross.json["error"]
    assert api.get("/api/v1/incidents").status_code == 401


@pytest.fixture
def live_server(smtp_app: Flask) -> Iterator[str]:
    """The app wired to the test SMTP server, served over HTTP on a loopback port."""
    with serving(smtp_app) as url:
        yield url


def test_incident_page_in_the_browser_answers_every_centre(
    smtp_app: Flask, smtp_server, live_server: str, browser_page
) -> None:  # type: ignore[no-untyped-def]
    make_user(smtp_app)
    outage = _outage_tickets(smtp_app, 5)
    page = browser_page
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", "agent@imi.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/queues")
    assert page.is_visible("text=Answer them as one incident")  # five at once: a suggestion
    page.click("text=Answer them as one incident")
    page.click("text=Open an incident with these 5 tickets")
    page.wait_for_selector("#incident-tickets")
    assert page.locator("#incident-tickets tbody tr").count() == 5
    page.fill("#incident-reply", "SecureAssess is working again; please retry.")
    page.click("text=Send to 5 centres")
    page.wait_for_selector("text=5 tickets answered")
    assert deliver(smtp_app) == 5
    received = smtp_server[0].parsed()
    assert sorted(m["To"].addresses[0].addr_spec for m in received) == sorted(
        t.centre_email for t in outage
    )
    page.click("#resolve-incident button")
    page.wait_for_selector("text=5 tickets resolved")
    assert all(reload(smtp_app, t.id).status == TicketStatus.RESOLVED for t in outage)
