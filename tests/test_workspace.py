"""The staff workspace on SQLite and PostgreSQL: urgency, due times, views, global search, bulk actions,
faster replies, notifications, the centre page, user admin and the API page."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from tests import factories
from tests.mailutil import deliver, make_email, outbox_rows, post_email
from tests.webutil import PASSWORD, csrf_from, login, make_user, post_form
from tests.workspace_util import ingest, reload
from triage.helpdesk import notifications, search
from triage.orm import AuditEvent, Message, Queue, Ticket, User, utcnow

LIVE_EXAM = {
    "subject": "Exam frozen - candidate still in the room",
    "body": "Our candidate's exam has frozen half way through. He is still in the room waiting. "
    "The exam started at 10:30. What do we do?",
}
QUESTION = {
    "subject": "Changing our centre contact",
    "body": "Can we change our centre contact? zebra crossing",
}
# a ticket as live-exam mail makes one (test_webhook_mail_becomes_urgent_too sends the mail itself)
URGENT = {
    **LIVE_EXAM,
    "category": "exam_frozen",
    "urgent": True,
    "urgent_reason": 'Exam has frozen, happening now ("still in the room")',
}


def _first_ref_in_table(html: str) -> str:
    body = html.split("<tbody>", 1)[1]
    match = re.search(r"IMI-\d{6}", body)
    assert match
    return match.group(0)


def test_live_exam_mail_is_urgent_at_the_top_of_its_queue_and_due_in_minutes(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        for i in range(3):
            factories.ticket(
                s, queue="technical", centre_email=f"c{i}@centre{i}.example", **QUESTION
            )
        live = factories.ticket(
            s, queue="technical", centre_email="pat@livecollege.example", **URGENT
        )
        api_token = factories.api_token(s)
    client = app.test_client()
    login(client)
    html = client.get(f"/queues/{live.queue.slug}").get_data(as_text=True)
    assert _first_ref_in_table(html) == live.reference  # urgent first, though the newest
    due_text = re.search(r'class="due (?:soon|due)"[^>]*>due in (\d+)([ms])<', html)
    assert due_text and int(due_text.group(1)) <= 15 and due_text.group(2) == "m"
    page = client.get(f"/tickets/{live.id}").get_data(as_text=True)
    assert (
        "happening now" in page and "Not urgent" in page
    )  # explained, and the button to change it
    api = app.test_client().get(
        f"/api/v1/tickets/{live.id}", headers={"Authorization": f"Bearer {api_token}"}
    )
    body = api.get_json()
    assert body["urgent"] is True
    from datetime import datetime

    due_at = datetime.fromisoformat(body["due_at"])
    assert timedelta(0) < due_at - utcnow() <= timedelta(minutes=15)
    listed = app.test_client().get(
        "/api/v1/tickets?status=open", headers={"Authorization": f"Bearer {api_token}"}
    )
    assert listed.get_json()["tickets"][0]["reference"] == live.reference


def test_webhook_mail_becomes_urgent_too(mail_app: Flask, api_token: str) -> None:
    """The webhook path (whether it processes at once or leaves it to the worker) ends in an urgent ticket."""
    from triage.mail.inbound import InboundContext, process_pending

    response = post_email(
        mail_app.test_client(), api_token, make_email(message_id="<live@x.example>", **LIVE_EXAM)
    )
    assert response.status_code == 202
    process_pending(
        mail_app.extensions["triage.sessions"],
        InboundContext(
            mail_app.extensions["triage.settings"], mail_app.extensions["triage.model_provider"]
        ),
    )
    with mail_app.extensions["triage.sessions"]() as s:
        ticket_id = s.scalar(
            select(Message.ticket_id).where(Message.message_id == "<live@x.example>")
        )
    live = reload(mail_app, ticket_id)
    assert live.urgent and live.status == "open"
    assert "happening now" in (live.urgent_reason or "")


def test_waiting_on_the_centre_has_no_due_time_and_staff_change_urgency_with_history(
    app: Flask,
) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        t = factories.ticket(s, **URGENT)
        api_token = factories.api_token(s)
    client = app.test_client()
    login(client)
    page = f"/tickets/{t.id}"
    post_form(
        client,
        page,
        f"{page}/urgent",
        {"urgent": "0", "reason": "exam is next week, they misdated it"},
    )
    assert not reload(app, t.id).urgent
    html = client.get(page).get_data(as_text=True)
    assert "Alex Agent marked it not urgent: exam is next week, they misdated it." in html
    assert "Mark urgent" in html
    refused = post_form(client, page, f"{page}/urgent", {"urgent": "0"})
    assert "already not urgent" in client.get(refused.headers["Location"]).get_data(as_text=True)
    post_form(client, page, f"{page}/urgent", {"urgent": "1"})
    assert reload(app, t.id).urgent
    post_form(
        client, page, f"{page}/reply", {"body": "Please restart the PC and re-enter the keycode."}
    )
    auth = {"Authorization": f"Bearer {api_token}"}
    body = app.test_client().get(f"/api/v1/tickets/{t.id}", headers=auth).get_json()
    assert body["status"] == "pending" and body["due_at"] is None
    with app.extensions["triage.sessions"]() as s:
        actions = [
            e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.ticket_id == t.id))
        ]
    assert actions.count("ticket.urgency_changed") == 2


def test_buttons_that_do_not_apply_are_hidden(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        t = factories.ticket(s, **QUESTION)
    client = app.test_client()
    login(client)
    page = f"/tickets/{t.id}"
    html = client.get(page).get_data(as_text=True)
    assert ">Claim<" in html and ">Resolve<" in html and ">Reopen<" not in html
    post_form(client, page, f"{page}/claim", {})
    html = client.get(page).get_data(as_text=True)
    assert ">Claim<" not in html and "Take over" not in html  # my own ticket
    post_form(client, page, f"{page}/category", {"category": "other"})
    post_form(client, page, f"{page}/resolve", {})
    html = client.get(page).get_data(as_text=True)
    assert ">Reopen<" in html and ">Resolve<" not in html and "Send reply" not in html


def test_views_mine_unassigned_urgent_waiting_centre_replied_and_all_open(
    smtp_app: Flask, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    me_id = make_user(smtp_app)
    with factories.session_of(smtp_app) as s:
        other = factories.user(s, email="other@imi.test", name="Other")
        mine = factories.ticket(s, centre_email="a@one.example", **QUESTION)
        theirs = factories.ticket(
            s,
            centre_email="b@two.example",
            subject="Invoice copy",
            body="please send invoice 77 again",
            assignee=other,
        )
        urgent = factories.ticket(s, centre_email="c@three.example", **URGENT)
        waiting = factories.ticket(
            s,
            centre_email="d@four.example",
            subject="Certificates",
            body="when do certificates arrive?",
        )
        ooo = factories.ticket(  # automatic mail: kept, resolved, never answered
            s,
            centre_email="e@five.example",
            subject="Out of office",
            body=None,
            status="resolved",
            resolution="no action needed",
        )
        factories.inbound(
            s,
            ooo,
            body="I am away until Monday.",
            auto_submitted_reason="Auto-Submitted: auto-replied",
        )
    client = smtp_app.test_client()
    login(client)
    post_form(client, f"/tickets/{mine.id}", f"/tickets/{mine.id}/claim", {})
    post_form(
        client,
        f"/tickets/{waiting.id}",
        f"/tickets/{waiting.id}/reply",
        {"body": "In about two weeks."},
    )
    deliver(smtp_app)
    # the centre answers the staff reply: the ticket moves from "waiting on centre" to "centre replied"
    reply_to = reload(smtp_app, waiting.id).messages[-1].message_id
    ingest(
        smtp_app,
        sender="d@four.example",
        subject="Re: Certificates",
        body="Thanks, and the learner names?",
        headers={"In-Reply-To": reply_to},
    )

    def refs(view: str) -> set[str]:
        html = client.get(f"/views/{view}").get_data(as_text=True)
        return set(re.findall(r'data-href="/tickets/(\d+)"', html))

    assert refs("mine") == {str(mine.id)}
    assert str(mine.id) not in refs("unassigned") and str(urgent.id) in refs("unassigned")
    assert refs("urgent") == {str(urgent.id)}
    assert str(waiting.id) not in refs("waiting")  # the centre has replied since
    assert refs("centre-replied") == {str(waiting.id)}
    assert {str(mine.id), str(theirs.id), str(urgent.id), str(waiting.id)} <= refs("open")
    assert str(ooo.id) in refs("automatic")
    html = client.get("/views/open").get_data(as_text=True)
    assert html.count("centre replied</span>") == 1  # marked in every list
    assert 'Urgent <span class="count urgent">1</span>' in html  # and counted in the navigation
    assert client.get("/views/nope").status_code == 404
    # a staff action clears the marker
    post_form(
        client, f"/tickets/{waiting.id}", f"/tickets/{waiting.id}/note", {"body": "asked finance"}
    )
    assert refs("centre-replied") == set()
    assert me_id


def test_global_search_finds_a_body_word_in_any_queue(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:  # in different queues, each acknowledged
        a = factories.ticket(
            s,
            queue="technical",
            centre_email="exams@greenfield.example",
            centre_name="Greenfield College",
            subject="Keycode trouble",
            body="The learner typed the keycode but SecureAssess says locked. Workshop 4.",
        )
        b = factories.ticket(
            s,
            queue="centre-admin",
            centre_email="office@hill.example",
            centre_name="Hill School",
            subject="Invoice",
            body="Please send a copy of invoice 1234 for the workshop booking.",
        )
        factories.outbound(s, a, kind="ack")
        factories.outbound(s, b, kind="ack")
    client = app.test_client()
    login(client)

    def found(q: str) -> set[int]:
        response = client.get("/search", query_string={"q": q})
        assert response.status_code == 200
        return {
            int(i)
            for i in re.findall(r'data-href="/tickets/(\d+)"', response.get_data(as_text=True))
        }

    assert found("workshop") == {a.id, b.id}  # a word from both bodies, two queues
    assert found("WORKSHOP booking") == {b.id}  # every word must match
    assert found("secureass") == {a.id}  # the start of a word is enough
    assert found("greenfield") == {a.id}  # centre address and name
    assert found("Hill School") == {b.id}
    assert found("keycode trouble") == {a.id}  # subject
    assert found(b.reference) == {b.id} and a.id in found(
        str(a.id)
    )  # reference (digits also match words: 1 -> 1234)
    assert found("nothingmatchesthis") == set()
    # words from our own automatic replies are not the centre's words
    assert (
        found("member staff") == set()
    )  # in every acknowledgement we sent, never in what a centre wrote
    for hostile in (
        '" OR 1=1 --',
        "*",
        "NEAR(a b)",
        "a:*",
        "!!!",
        "%_\\",
        "x" * 500,
        "IMI-99999999999999",
    ):
        assert client.get("/search", query_string={"q": hostile}).status_code == 200
    html = client.get("/search?q=workshop").get_data(as_text=True)
    assert "2 tickets match" in html


def test_search_contract_is_the_same_function_on_both_backends(app: Flask) -> None:
    with factories.session_of(app) as s:
        a = factories.ticket(
            s,
            centre_email="x@alpha.example",
            centre_name="",
            subject="Café booking",
            body="Straße naïve résumé data-entry 42",
        )
    with app.extensions["triage.sessions"]() as s:
        for q, expected in (
            ("café", {a.id}),
            ("straße", {a.id}),
            ("entry", {a.id}),
            ("data entry", {a.id}),
            ("42", {a.id}),
            ("alpha example", {a.id}),
            ("cafe", set()),
        ):
            assert {t.id for t in search.search(s, q).tickets} == expected, q
        # the subject changed later is found by its new words (the triggers keep the document current)
        s.execute(update(Ticket).where(Ticket.id == a.id).values(subject="Renamed subject quokka"))
        s.commit()
        assert {t.id for t in search.search(s, "quokka").tickets} == {a.id}


def test_bulk_assign_move_confirm_and_resolve(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        tickets = [
            factories.ticket(s, centre_email=f"s{i}@bulk{i}.example", category="other", **QUESTION)
            for i in range(3)
        ]
    ids = [str(t.id) for t in tickets]
    client = app.test_client()
    login(client)
    page = "/views/open"
    token = csrf_from(client.get(page).get_data(as_text=True))
    with app.extensions["triage.sessions"]() as s:
        me = s.scalars(select(User).where(User.email == "agent@imi.test")).one()

    def bulk(op: str, value: str, chosen: list[str]) -> str:
        response = client.post(
            "/tickets/bulk",
            data={
                "csrf_token": token,
                "op": op,
                f"{op}_value": value,
                "ticket_id": chosen,
                "next": page,
            },
        )
        assert response.status_code == 302 and response.headers["Location"].endswith(page)
        return client.get(page).get_data(as_text=True)

    refused = bulk("resolve", "", ids[:2])
    assert "0 tickets changed" in refused and "confirm the category before resolving" in refused
    assert "3 tickets changed" in bulk("assign", str(me.id), ids)
    assert "3 tickets changed" in bulk("move", "technical", ids)
    assert "2 tickets changed" in bulk("confirm", "", ids[:2])  # the model's category
    assert "2 tickets changed" in bulk("resolve", "", ids[:2])
    rows = [reload(app, int(i)) for i in ids]
    assert [t.assignee_id for t in rows] == [me.id] * 3 and {t.queue.slug for t in rows} == {
        "technical"
    }
    assert [t.status for t in rows] == ["resolved", "resolved", "open"]
    assert rows[0].confirmed_category == rows[0].predicted_category
    assert "choose someone" in bulk("assign", "999999", ids)
    assert "select at least one" in bulk("move", "technical", [])
    offsite = client.post(
        "/tickets/bulk",
        data={
            "csrf_token": token,
            "op": "move",
            "move_value": "triage",
            "ticket_id": ids[2:],
            "next": "//evil.example/x",
        },
    )
    assert offsite.headers["Location"] == "/queues"


def test_send_and_resolve_and_send_and_next(smtp_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    make_user(smtp_app)
    with factories.session_of(smtp_app) as s:
        first = factories.ticket(s, centre_email="a@one.example", **QUESTION)
        second = factories.ticket(
            s, centre_email="b@two.example", subject="Another", body="zebra crossing question two"
        )
    client = smtp_app.test_client()
    login(client)
    page = f"/tickets/{first.id}"
    sent = post_form(client, page, f"{page}/reply", {"body": "Done for you.", "then": "resolve"})
    said = client.get(sent.headers["Location"]).get_data(as_text=True)
    # the reply went; the resolve could not, and the page says why (issue 28: nothing is lost)
    assert "Reply queued for sending" in said and "was not resolved: confirm the category" in said
    assert reload(smtp_app, first.id).status == "pending" and deliver(smtp_app) == 1
    post_form(client, page, f"{page}/category", {"category": "other"})
    done = post_form(client, page, f"{page}/reply", {"body": "Done for you.", "then": "resolve"})
    assert "Ticket resolved" in client.get(done.headers["Location"]).get_data(as_text=True)
    assert reload(smtp_app, first.id).status == "resolved" and deliver(smtp_app) == 1
    with factories.session_of(smtp_app) as s:
        third = factories.ticket(
            s, centre_email="c@three.example", subject="Third", body="zebra crossing question three"
        )
    page = f"/tickets/{second.id}"
    moved_on = post_form(client, page, f"{page}/reply", {"body": "Answered.", "then": "next"})
    assert moved_on.headers["Location"].endswith(f"/tickets/{third.id}")
    assert reload(smtp_app, second.id).status == "pending"


def test_notifications_for_urgent_mail_centre_replies_and_overdue_are_sent_once(
    app: Flask,
) -> None:
    from triage.helpdesk.tickets import Actor, assign

    make_user(app)
    settings = app.extensions["triage.settings"]
    sessions = app.extensions["triage.sessions"]
    with sessions() as s:
        s.execute(update(Queue).values(notify_address="team@imi.test"))
        s.commit()
    with factories.session_of(app) as s:  # answered at once, as live-exam mail is
        urgent = factories.ticket(s, action="auto_reply", first_response_at=utcnow(), **URGENT)
    assert notifications.run(sessions, settings) == 1
    assert notifications.run(sessions, settings) == 0  # once
    [told] = [r for r in outbox_rows(app) if r.recipient == "team@imi.test"]
    with sessions() as s:
        message = s.get(Message, told.message_id)
        assert message and "Urgent" in message.subject and "happening now" in message.body_text
        assert message.raw and b"Auto-Submitted: auto-generated" in message.raw
    # the centre replies on a ticket assigned to the agent: the assignee is told (the queue already is, by inbound)
    with sessions() as s:
        agent = s.scalars(select(User).where(User.email == "agent@imi.test")).one()
        t = s.get(Ticket, urgent.id)
        assign(s, Actor.of_user(agent), t, agent)  # type: ignore[arg-type]
        s.commit()
    ingest(
        app,
        subject="Re: " + LIVE_EXAM["subject"],
        body="Still frozen after the restart.",
        headers={"In-Reply-To": urgent.messages[0].message_id},
    )
    before = len(outbox_rows(app))
    assert notifications.run(sessions, settings) >= 1
    to_agent = [r for r in outbox_rows(app)[before:] if r.recipient == "agent@imi.test"]
    assert len(to_agent) == 1
    assert notifications.run(sessions, settings) == 0
    # overdue: told once per due time; switched off for the agent, the queue still hears
    client = app.test_client()
    login(client)
    post_form(client, "/preferences", "/preferences", {"notify_centre_replies": "on"})
    with sessions() as s:
        agent = s.scalars(select(User).where(User.email == "agent@imi.test")).one()
        assert (agent.notify_centre_replies, agent.notify_urgent, agent.notify_overdue) == (
            True,
            False,
            False,
        )
        t = s.get(Ticket, urgent.id)
        t.centre_replied_at = utcnow() - timedelta(minutes=30)  # type: ignore[union-attr]
        s.commit()
    before = len(outbox_rows(app))
    assert notifications.run(sessions, settings) == 1
    [overdue] = outbox_rows(app)[before:]
    assert overdue.recipient == "team@imi.test"
    assert notifications.run(sessions, settings) == 0


def test_a_queue_target_shorter_than_the_defaults_still_makes_a_ticket_overdue(
    app: Flask,
) -> None:
    """The overdue scan skips tickets waiting less than the shortest target; that is the queues' shortest, not
    the defaults (15 minutes for urgent mail)."""
    settings = app.extensions["triage.settings"]
    sessions = app.extensions["triage.sessions"]
    with factories.session_of(app) as s:
        queue = factories.queue(s, notify_address="team@imi.test", urgent_response_minutes=3)
        urgent = factories.ticket(s, queue=queue, **URGENT)
    assert notifications.run(sessions, settings) == 1  # the urgent arrival
    assert notifications.run(sessions, settings) == 0  # waiting under 3 minutes: not overdue yet
    with sessions() as s:
        five_minutes_ago = utcnow() - timedelta(minutes=5)
        s.execute(
            update(Ticket)
            .where(Ticket.id == urgent.id)
            .values(created_at=five_minutes_ago, last_inbound_at=five_minutes_ago)
        )
        s.commit()
    before = len(outbox_rows(app))
    assert (
        notifications.run(sessions, settings) == 1
    )  # 5 minutes: past its queue's 3, short of the default 15
    [told] = outbox_rows(app)[before:]
    with sessions() as s:
        message = s.get(Message, told.message_id)
        assert message is not None and message.subject.startswith(f"[{urgent.reference}] Overdue")


def test_centre_page_lists_every_ticket_from_the_domain(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        a = factories.ticket(s, centre_email="jo@greenfield.example", centre_name="Jo", **QUESTION)
        b = factories.ticket(s, centre_email="sam@GreenField.example", centre_name="Sam", **URGENT)
        other = factories.ticket(s, centre_email="x@greenfield.example.evil", **QUESTION)
    client = app.test_client()
    login(client)
    assert "all tickets from greenfield.example" in client.get(f"/tickets/{a.id}").get_data(
        as_text=True
    )
    html = client.get("/centres/greenfield.example").get_data(as_text=True)
    assert a.reference in html and b.reference in html and other.reference not in html
    assert "2 tickets" in html and "Exam has frozen" in html
    assert client.get("/centres/not a domain").status_code == 404
    assert client.get("/centres/%25.example").status_code == 404


def test_admin_renames_resets_passwords_deactivates_and_sets_targets(app: Flask) -> None:
    make_user(app, "boss@imi.test", "admin")
    agent_id = make_user(app)
    admin = app.test_client()
    login(admin, "boss@imi.test")
    post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"op": "rename", "user_id": str(agent_id), "name": " Alex  B. "},
    )
    new_password = "a brand new password 7"
    post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"op": "password", "user_id": str(agent_id), "password": new_password},
    )
    short = post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"op": "password", "user_id": str(agent_id), "password": "short"},
    )
    assert "at least 10" in admin.get(short.headers["Location"]).get_data(as_text=True)
    agent = app.test_client()
    assert login(agent, password=PASSWORD).status_code == 401
    assert login(agent, password=new_password).status_code == 302
    post_form(admin, "/admin/users", "/admin/users", {"op": "toggle", "user_id": str(agent_id)})
    with app.extensions["triage.sessions"]() as s:
        user = s.get(User, agent_id)
        assert user and user.name == "Alex B." and not user.is_active
        events = [
            e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("user.%")))
        ]
        assert {"user.renamed", "user.password_reset", "user.changed"} <= set(events)
        assert new_password not in str([e.details for e in s.scalars(select(AuditEvent))])
    post_form(
        admin,
        "/admin/queues",
        "/admin/queues",
        {
            "slug": "technical",
            "notify_address": "",
            "first_response_minutes": "120",
            "next_response_minutes": "60",
            "urgent_response_minutes": "10",
        },
    )
    bad = post_form(
        admin,
        "/admin/queues",
        "/admin/queues",
        {"slug": "technical", "first_response_minutes": "0"},
    )
    assert "whole number of minutes" in admin.get(bad.headers["Location"]).get_data(as_text=True)
    with app.extensions["triage.sessions"]() as s:
        q = s.scalars(select(Queue).where(Queue.slug == "technical")).one()
        assert (q.first_response_minutes, q.next_response_minutes, q.urgent_response_minutes) == (
            120,
            60,
            10,
        )


def test_api_page_and_openapi_for_a_logged_in_session(app: Flask) -> None:
    make_user(app)
    client = app.test_client()
    assert client.get("/api/v1/openapi.json").status_code == 401
    login(client)
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    ticket_schema = spec.get_json()["components"]["schemas"]["Ticket"]
    assert {"urgent", "due_at"} <= set(ticket_schema["required"])
    html = client.get("/api-docs").get_data(as_text=True)
    assert (
        "vendor/swagger-ui/swagger-ui-bundle.js" in html
        and "unsafe-inline" not in client.get("/api-docs").headers["Content-Security-Policy"]
    )
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_dashboard_first_reply_time_is_never_negative(app: Flask) -> None:
    make_user(app)
    with app.extensions["triage.sessions"]() as s:
        now = utcnow()
        s.add(
            Ticket(
                centre_email="a@b.example",
                action="auto_reply",
                created_at=now,
                first_response_at=now - timedelta(seconds=2),
            )
        )
        s.commit()
    client = app.test_client()
    login(client)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "-0.0" not in html and "median time to first reply: 0 min" in html
    assert "day (UTC)" in html
