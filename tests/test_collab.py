"""Staff working together (issue 28), on SQLite and PostgreSQL: reply conflicts in the web app and the
API (409), Undo after resolving, take-over and bulk actions that need an explicit target, handing a
deactivated user's tickets over, presence that expires, alerts that reach someone (with the ticket's
link and the first lines of the mail), and addresses checked when saved and skipped when bad."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from tests import factories
from tests.mailutil import outbox_rows
from tests.webutil import login, make_user, post_form
from tests.workspace_util import reload
from triage.config import ConfigError, Settings
from triage.helpdesk import notifications, presence, tickets
from triage.orm import AuditEvent, Message, Queue, TicketPresence, User, utcnow

QUESTION = {
    "subject": "Extra time for a candidate",
    "body": "Hello,\nCan a candidate be given extra time in the exam?\nThanks, Sam",
    "category": "extra_time",
}
URGENT = {
    "subject": "Exam frozen - candidate still in the room",
    "body": "Our candidate's exam has frozen half way through.\nHe is still in the room waiting.",
    "category": "exam_frozen",
    "urgent": True,
    "urgent_reason": "Exam has frozen, happening now",
}


def _auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def test_api_reply_with_a_stale_version_is_refused_409(app: Flask) -> None:
    with factories.session_of(app) as s:
        t = factories.ticket(s, **QUESTION)
        token = factories.api_token(s)
    client = app.test_client()
    got = client.get(f"/api/v1/tickets/{t.id}", headers=_auth(token))
    assert got.headers["ETag"] == '"reply-0"' and got.get_json()["reply_version"] == 0
    first = client.post(
        f"/api/v1/tickets/{t.id}/replies",
        json={"body": "First answer."},
        headers=_auth(token, **{"If-Match": '"reply-0"'}),
    )
    assert first.status_code == 201
    # a second caller that read version 0 is told someone replied since
    stale = client.post(
        f"/api/v1/tickets/{t.id}/replies",
        json={"body": "Crossing answer."},
        headers=_auth(token, **{"If-Match": '"reply-0"'}),
    )
    assert stale.status_code == 409 and "replied since" in stale.get_json()["error"]
    by_body = client.post(
        f"/api/v1/tickets/{t.id}/replies",
        json={"body": "Crossing answer.", "reply_version": 0},
        headers=_auth(token),
    )
    assert by_body.status_code == 409
    for bad_header, bad_body in (("reply-1", {}), ('"v1"', {}), ("", {"reply_version": "1"})):
        bad = client.post(
            f"/api/v1/tickets/{t.id}/replies",
            json={"body": "x", **bad_body},
            headers=_auth(token, **({"If-Match": bad_header} if bad_header else {})),
        )
        assert bad.status_code == 400, (bad_header, bad_body)
    now = client.get(f"/api/v1/tickets/{t.id}", headers=_auth(token)).headers["ETag"]
    assert now != '"reply-0"'
    fresh = client.post(
        f"/api/v1/tickets/{t.id}/replies",
        json={"body": "Follow-up."},
        headers=_auth(token, **{"If-Match": now}),
    )
    anyway = client.post(
        f"/api/v1/tickets/{t.id}/replies",
        json={"body": "Without a precondition."},
        headers=_auth(token),
    )
    assert fresh.status_code == 201 and anyway.status_code == 201
    with factories.session_of(app) as s:
        kinds = s.scalars(select(Message.kind).where(Message.ticket_id == t.id)).all()
        assert kinds.count("staff_reply") == 3  # never the refused ones


def test_web_reply_conflict_keeps_the_text_and_take_over_checks_the_holder(app: Flask) -> None:
    make_user(app, "alex@imi.test", name="Alex Agent")
    make_user(app, "bea@imi.test", name="Bea Agent")
    with factories.session_of(app) as s:
        t = factories.ticket(s, **QUESTION)
    alex, bea = app.test_client(), app.test_client()
    login(alex, "alex@imi.test")
    login(bea, "bea@imi.test")
    page = f"/tickets/{t.id}"
    assert 'name="seen_version" value="0"' in alex.get(page).get_data(as_text=True)
    post_form(bea, page, f"{page}/reply", {"body": "Bea's answer", "seen_version": "0"})
    crossed = post_form(
        alex, page, f"{page}/reply", {"body": "Alex's <b>answer</b>", "seen_version": "0"}
    )
    html = crossed.get_data(as_text=True)
    assert crossed.status_code == 409 and "Bea Agent replied to the centre" in html
    assert "Alex&#39;s &lt;b&gt;answer&lt;/b&gt;</textarea>" in html  # kept, and escaped
    assert [m.kind for m in reload(app, t.id).messages].count("staff_reply") == 1
    # taking over: refused when the ticket changed hands since the page showed who had it
    bea_page = bea.get(page).get_data(as_text=True)
    assert 'name="assignee_was" value=""' in bea_page
    post_form(alex, page, f"{page}/claim", {"assignee_was": ""})
    late = post_form(bea, page, f"{page}/claim", {"assignee_was": ""})
    assert "changed hands" in bea.get(late.headers["Location"]).get_data(as_text=True)
    assert reload(app, t.id).assignee.email == "alex@imi.test"  # type: ignore[union-attr]
    asks = bea.get(page).get_data(as_text=True)
    assert 'data-confirm="Alex Agent has this ticket. Take it over from them?"' in asks


def test_undo_resolve_is_for_the_resolver_and_only_for_a_moment(app: Flask) -> None:
    make_user(app, "alex@imi.test")
    make_user(app, "bea@imi.test")
    with factories.session_of(app) as s:
        t = factories.ticket(s, confirmed_category="extra_time", status="pending", **QUESTION)
    alex, bea = app.test_client(), app.test_client()
    login(alex, "alex@imi.test")
    login(bea, "bea@imi.test")
    page = f"/tickets/{t.id}"
    done = post_form(alex, page, f"{page}/resolve", {})
    assert 'id="undo-button"' in alex.get(done.headers["Location"]).get_data(as_text=True)
    assert 'id="undo-button"' not in bea.get(page).get_data(as_text=True)
    refused = post_form(bea, page, f"{page}/undo-resolve", {})
    assert "too late to undo" in bea.get(refused.headers["Location"]).get_data(as_text=True)
    post_form(alex, page, f"{page}/undo-resolve", {})
    back = reload(app, t.id)
    assert back.status == "pending" and back.resolved_at is None  # as it was: waiting on the centre
    post_form(alex, page, f"{page}/resolve", {})
    with factories.session_of(app) as s:
        s.execute(
            update(AuditEvent)
            .where(AuditEvent.ticket_id == t.id)
            .values(created_at=utcnow() - tickets.UNDO_WINDOW - timedelta(seconds=1))
        )
    assert 'id="undo-button"' not in alex.get(page).get_data(as_text=True)
    late = post_form(alex, page, f"{page}/undo-resolve", {})
    assert "too late to undo" in alex.get(late.headers["Location"]).get_data(as_text=True)
    assert reload(app, t.id).status == "resolved"
    with factories.session_of(app) as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.ticket_id == t.id)).all()
        assert "ticket.resolve_undone" in actions


def test_bulk_assign_and_move_need_an_explicit_target(app: Flask) -> None:
    make_user(app, "alex@imi.test")
    colleague = make_user(app, "bea@imi.test")
    with factories.session_of(app) as s:
        bea = s.get(User, colleague)
        t = factories.ticket(s, assignee=bea, **QUESTION)
    client = app.test_client()
    login(client, "alex@imi.test")
    html = client.get("/views/open").get_data(as_text=True)
    assert '<option value="" selected>assign to…</option>' in html

    def bulk(op: str, value: str) -> str:
        response = post_form(
            client,
            "/views/open",
            "/tickets/bulk",
            {"op": op, f"{op}_value": value, "ticket_id": str(t.id), "next": "/views/open"},
        )
        return client.get(response.headers["Location"]).get_data(as_text=True)

    assert "choose who to assign the ticked tickets to" in bulk("assign", "")
    assert "choose the queue to move" in bulk("move", "")
    assert reload(app, t.id).assignee_id == colleague
    assert "1 ticket changed" in bulk("assign", "none")
    assert reload(app, t.id).assignee_id is None
    # a bulk resolve is offered for Undo once, on the page it returns to
    bulk("confirm", "")
    resolved = bulk("resolve", "")
    assert 'id="undo-button"' in resolved and f'name="ticket_id" value="{t.id}"' in resolved
    assert 'id="undo-button"' not in client.get("/views/open").get_data(as_text=True)
    assert "1 ticket changed" in bulk("undo", "")
    assert reload(app, t.id).status == "open"


def test_deactivating_hands_open_tickets_to_the_chosen_person(app: Flask) -> None:
    make_user(app, "boss@imi.test", "admin")
    leaving_id = make_user(app, "carl@imi.test")
    heir_id = make_user(app, "dee@imi.test", name="Dee Heir")
    with factories.session_of(app) as s:
        carl = s.get(User, leaving_id)
        open_one = factories.ticket(s, assignee=carl, **QUESTION)
        waiting = factories.ticket(s, assignee=carl, status="pending", **QUESTION)
        closed = factories.ticket(
            s, assignee=carl, status="resolved", confirmed_category="extra_time", **QUESTION
        )
    admin = app.test_client()
    login(admin, "boss@imi.test")
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "their 2 open tickets go to" in page and "data-confirm=" in page
    wrong = post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"op": "toggle", "user_id": str(leaving_id), "tickets_to": str(leaving_id)},
    )
    assert "another active user" in admin.get(wrong.headers["Location"]).get_data(as_text=True)
    done = post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"op": "toggle", "user_id": str(leaving_id), "tickets_to": str(heir_id)},
    )
    said = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "2 open tickets of carl@imi.test are assigned to Dee Heir." in said
    assert reload(app, open_one.id).assignee_id == heir_id
    assert reload(app, waiting.id).assignee_id == heir_id
    assert reload(app, closed.id).assignee_id == leaving_id  # closed tickets keep their history
    with factories.session_of(app) as s:
        user = s.get(User, leaving_id)
        assert user is not None and not user.is_active


def test_alerts_reach_every_agent_when_the_queue_has_no_address(app: Flask) -> None:
    settings = app.extensions["triage.settings"]
    settings.external_url = "https://triage.imi.test"
    sessions = app.extensions["triage.sessions"]
    make_user(app, "alex@imi.test")
    quiet = make_user(app, "quiet@imi.test")
    gone = make_user(app, "gone@imi.test")
    with factories.session_of(app) as s:
        s.execute(update(Queue).values(notify_address=None))
        s.execute(update(User).where(User.id == quiet).values(notify_urgent=False))
        s.execute(update(User).where(User.id == gone).values(is_active=False))
        urgent = factories.ticket(s, **URGENT)
    assert notifications.run(sessions, settings) == 1
    assert notifications.run(sessions, settings) == 0  # once
    [alert] = outbox_rows(app)
    assert alert.recipient == "alex@imi.test"
    with sessions() as s:
        message = s.get(Message, alert.message_id)
        assert message is not None
        assert f"https://triage.imi.test/tickets/{urgent.id}" in message.body_text
        assert "> Our candidate's exam has frozen half way through." in message.body_text
        event = s.scalars(
            select(AuditEvent).where(
                AuditEvent.ticket_id == urgent.id, AuditEvent.action == "notification.sent"
            )
        ).one()
        assert event.details["alerted"] == ["alex@imi.test"]
    client = app.test_client()
    login(client, "alex@imi.test")
    history = client.get(f"/tickets/{urgent.id}").get_data(as_text=True)
    assert "Alert (urgent ticket) emailed to alex@imi.test." in history


def test_a_bad_notify_address_is_skipped_and_shown_never_stopping_the_others(app: Flask) -> None:
    settings = app.extensions["triage.settings"]
    sessions = app.extensions["triage.sessions"]
    make_user(app, "boss@imi.test", "admin")
    with factories.session_of(app) as s:
        # saved before addresses were checked (the old admin page let this through)
        bad = factories.queue(s, slug="ops", notify_address="ops team@imi.test")
        good = factories.queue(s, slug="desk", notify_address="desk@imi.test")
        on_bad = factories.ticket(s, queue=bad, **URGENT)
        on_good = factories.ticket(s, queue=good, **URGENT)
    sent = notifications.run(sessions, settings)  # does not fail
    recipients = sorted(r.recipient for r in outbox_rows(app))
    assert sent == len(recipients) and "desk@imi.test" in recipients
    assert "ops team@imi.test" not in recipients
    assert "boss@imi.test" in recipients  # the bad queue's alert went to staff instead
    with sessions() as s:
        skipped = s.scalars(
            select(AuditEvent).where(
                AuditEvent.ticket_id == on_bad.id, AuditEvent.action == "notification.sent"
            )
        ).one()
        assert skipped.details["skipped"] == ["ops team@imi.test"]
    assert reload(app, on_good.id).urgent_notified_at is not None
    admin = app.test_client()
    login(admin, "boss@imi.test")
    queues = admin.get("/admin/queues").get_data(as_text=True)
    assert "not a valid address, alerts skip it" in queues
    history = admin.get(f"/tickets/{on_bad.id}").get_data(as_text=True)
    assert "not sent to ops team@imi.test (not a valid address)" in history


@pytest.mark.parametrize("address", ["ops team@imi.test", "ops@", "a@b@imi.test", "ops@imi.test,x"])
def test_addresses_are_checked_when_saved(app: Flask, address: str) -> None:
    make_user(app, "boss@imi.test", "admin")
    admin = app.test_client()
    login(admin, "boss@imi.test")
    saved = post_form(
        admin, "/admin/queues", "/admin/queues", {"slug": "triage", "notify_address": address}
    )
    assert "notify address must be one valid email address" in admin.get(
        saved.headers["Location"]
    ).get_data(as_text=True)
    added = post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"op": "create", "email": address, "password": "long enough password", "role": "agent"},
    )
    assert "valid email address" in admin.get(added.headers["Location"]).get_data(as_text=True)
    with factories.session_of(app) as s:
        assert s.scalar(select(Queue.notify_address).where(Queue.slug == "triage")) is None
        assert s.scalar(select(User.id).where(User.email == address)) is None


def test_presence_shows_others_typing_and_forgets_the_departed(app: Flask) -> None:
    alex_id = make_user(app, "alex@imi.test", name="Alex Agent")
    bea_id = make_user(app, "bea@imi.test", name="")
    with factories.session_of(app) as s:
        t = factories.ticket(s, **QUESTION)
        presence.report(s, t.id, alex_id, typing=False)
        presence.report(s, t.id, bea_id, typing=True)
        presence.report(s, t.id, bea_id, typing=False)  # still typing: within TYPING_FOR
    with factories.session_of(app) as s:
        assert presence.others(s, t.id, alex_id) == [presence.Viewer(bea_id, "bea@imi.test", True)]
        assert presence.others(s, t.id, bea_id) == [presence.Viewer(alex_id, "Alex Agent", False)]
        s.execute(
            update(TicketPresence)
            .where(TicketPresence.user_id == bea_id)
            .values(typing_at=utcnow() - presence.TYPING_FOR - timedelta(seconds=1))
        )
    with factories.session_of(app) as s:
        assert presence.others(s, t.id, alex_id)[0].typing is False
        s.execute(
            update(TicketPresence)
            .where(TicketPresence.user_id == bea_id)
            .values(seen_at=utcnow() - presence.PRESENT_FOR - timedelta(seconds=1))
        )
    with factories.session_of(app) as s:
        assert presence.others(s, t.id, alex_id) == []
    # over HTTP: login needed; the JSON names the others and the reply version
    with factories.session_of(app) as s:
        presence.report(s, t.id, alex_id, typing=False)
    client = app.test_client()
    assert client.post(f"/tickets/{t.id}/presence", json={}).status_code in (302, 400, 401)
    login(client, "bea@imi.test")
    token = client.get(f"/tickets/{t.id}").get_data(as_text=True).split('data-csrf="')[1]
    csrf = token.split('"')[0]
    seen = client.post(
        f"/tickets/{t.id}/presence", json={"typing": True}, headers={"X-CSRFToken": csrf}
    )
    assert seen.get_json() == {
        "viewers": [{"name": "Alex Agent", "typing": False}],
        "reply_version": 0,
    }
    assert client.post(f"/tickets/{t.id}/presence", json={}).status_code == 400  # no CSRF token
    assert (
        client.post("/tickets/999999/presence", json={}, headers={"X-CSRFToken": csrf}).status_code
        == 404
    )
    client.post(f"/tickets/{t.id}/presence", json={"leaving": True}, headers={"X-CSRFToken": csrf})
    with factories.session_of(app) as s:
        assert presence.others(s, t.id, alex_id) == []


def test_external_url_setting_is_checked() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXTERNAL_URL", "https://triage.imi.test/")
        assert Settings.from_env().external_url == "https://triage.imi.test"
        for bad in ("triage.imi.test", "ftp://x", "https://a b"):
            mp.setenv("EXTERNAL_URL", bad)
            with pytest.raises(ConfigError, match="EXTERNAL_URL"):
                Settings.from_env()


def test_presence_is_shared_by_separate_app_processes(
    app: Flask, app_config: dict[str, Any]
) -> None:
    """Two app instances on one database (as gunicorn workers are) see each other's viewers."""
    from triage import create_app

    make_user(app, "alex@imi.test", name="Alex Agent")
    make_user(app, "bea@imi.test", name="Bea Agent")
    with factories.session_of(app) as s:
        t = factories.ticket(s, **QUESTION)
    other = create_app(app_config)
    try:
        alex, bea = app.test_client(), other.test_client()
        login(alex, "alex@imi.test")
        login(bea, "bea@imi.test")

        def report(client: Any, typing: bool) -> Any:
            html = client.get(f"/tickets/{t.id}").get_data(as_text=True)
            csrf = html.split('data-csrf="')[1].split('"')[0]
            return client.post(
                f"/tickets/{t.id}/presence", json={"typing": typing}, headers={"X-CSRFToken": csrf}
            ).get_json()

        report(alex, False)
        assert report(bea, True)["viewers"] == [{"name": "Alex Agent", "typing": False}]
        assert report(alex, False)["viewers"] == [{"name": "Bea Agent", "typing": True}]
    finally:
        other.extensions["triage.engine"].dispose()
