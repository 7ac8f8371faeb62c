"""The staff web app: authentication everywhere, CSRF, escaping, queue and ticket pages, staff actions."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from tests import factories
from tests.mailutil import deliver, email_with_attachment, make_email, post_email, ticket
from tests.webutil import ADMIN_PAGES, PASSWORD, login, make_user, post_form
from triage.orm import AuditEvent, User

PUBLIC = {
    "/login",
    "/healthz",
    "/api/v1/inbound",
    "/static/<path:filename>",
    # "Did this answer your question?": the signed link is the proof (tests/test_feedback.py)
    "/answer/<token>/<answer>",
    "/answer/",
    "/answer/<path:rest>",
}


def test_every_route_but_login_health_and_inbound_needs_authentication(app: Flask) -> None:
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        url = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url, method=method)
            checked += 1
            if url.startswith("/api/") or url == "/metrics":
                assert response.status_code == 401, (method, url, response.status_code)
            else:
                # pages redirect to the login form; forms without a session are refused before anything happens
                assert response.status_code in {302, 400}, (method, url, response.status_code)
                if response.status_code == 302:
                    assert "/login" in response.headers["Location"], (method, url)
    assert checked >= 25
    inbound = client.post("/api/v1/inbound", data=b"x")
    assert inbound.status_code == 401


def test_login_logout_and_wrong_password(app: Flask) -> None:
    make_user(app)
    client = app.test_client()
    bad = login(client, password="wrong password!!")
    assert bad.status_code == 401 and "Wrong email or password" in bad.get_data(as_text=True)
    ok = login(client)
    assert ok.status_code == 302
    assert client.get("/queues").status_code == 200
    post_form(client, "/queues", "/logout", {})
    assert client.get("/queues").status_code == 302


def test_login_is_rate_limited(app: Flask) -> None:
    make_user(app)
    client = app.test_client()
    for _ in range(5):
        assert login(client, password="nope nope nope").status_code == 401
    blocked = login(client)  # even the right password waits now
    assert blocked.status_code == 429
    with app.extensions["triage.sessions"]() as s:
        details = [
            e.details
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "login.failed"))
        ]
    assert all("password" not in str(d) for d in details)


def test_passwords_never_reach_the_logs_or_the_audit_trail(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record and audit row written around logins and user creation is free of the passwords."""
    import logging

    make_user(app, "boss@imi.test", "admin")
    wrong, new_password = "Wrong-Horse-42-secret", "Brand-New-Staff-Pass-99"
    with caplog.at_level(logging.DEBUG):
        client = app.test_client()
        login(client, "boss@imi.test", password=wrong)
        login(client, "nobody@imi.test", password=wrong)
        login(client, "boss@imi.test")
        post_form(
            client,
            "/admin/users",
            "/admin/users",
            {
                "op": "create",
                "email": "new@imi.test",
                "name": "New",
                "password": new_password,
                "role": "agent",
            },
        )
        app.test_cli_runner().invoke(
            args=["triage", "create-user", "cli@imi.test", "--role", "agent", "--name", "Cli"],
            input=f"{new_password}\n{new_password}\n",
        )
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records  # the requests were logged ...
    for secret in (wrong, new_password, PASSWORD):
        assert secret not in logged  # ... without any password
    with app.extensions["triage.sessions"]() as s:
        events = s.scalars(select(AuditEvent)).all()
    assert {"login.failed", "login.ok", "user.created"} <= {e.action for e in events}
    audit = " ".join(f"{e.actor} {e.details}" for e in events)
    for secret in (wrong, new_password, PASSWORD):
        assert secret not in audit


def test_forms_need_a_csrf_token(app: Flask) -> None:
    make_user(app)
    client = app.test_client()
    assert (
        client.post("/login", data={"email": "agent@imi.test", "password": "x" * 12}).status_code
        == 400
    )
    login(client)
    assert client.post("/tickets/1/claim").status_code == 400


def test_session_cookie_flags(app: Flask) -> None:
    make_user(app)
    client = app.test_client()
    response = login(client)
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_hostile_email_is_shown_inert(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        t = factories.ticket(
            s,
            subject="<script>alert('subject')</script> exam frozen",
            body="<img src=x onerror=alert(1)> <b>bold</b> the exam froze",
            centre_email="x@evil.example",
            centre_name="<i>Evil</i>",
        )
    client = app.test_client()
    login(client)
    for page in (f"/tickets/{t.id}", f"/queues/{t.queue.slug}?status=all"):
        html = client.get(page).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html and "<i>Evil" not in html
        assert "&lt;script&gt;" in html


def test_queue_page_filters_search_and_pages(app: Flask) -> None:
    make_user(app)
    slug = "centre-admin"
    with factories.session_of(app) as s:
        for i in range(30):
            factories.ticket(
                s,
                queue=slug,
                subject=f"invoice query {i}",
                body=f"please send a copy of invoice number {i} to our finance team",
                centre_email=f"c{i}@centre{i}.example",
            )
    client = app.test_client()
    login(client)
    queues = client.get("/queues").get_data(as_text=True)
    assert queues.index("triage") < queues.index("technical")
    page1 = client.get(f"/queues/{slug}?status=all").get_data(as_text=True)
    assert "page 1 of 2" in page1
    page2 = client.get(f"/queues/{slug}?status=all&page=2").get_data(as_text=True)
    assert page2.count("invoice query") == 5
    found = client.get(f"/queues/{slug}?status=all&q=number+17").get_data(as_text=True)
    assert "invoice query 17" in found and "invoice query 16" not in found
    assert "invoice query" not in client.get(f"/queues/{slug}?status=resolved").get_data(
        as_text=True
    )
    assert client.get("/queues/nope").status_code == 404


def test_staff_correct_reply_and_resolve(smtp_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    make_user(smtp_app)
    with factories.session_of(smtp_app) as s:  # the model was unsure: in triage, acknowledged
        t = factories.ticket(s, subject="hmm", body="zebra crossing outside the test centre")
        factories.outbound(s, t, kind="ack")
    ref = t.reference
    page = f"/tickets/{t.id}"
    client = smtp_app.test_client()
    login(client)
    html = client.get(page).get_data(as_text=True)
    assert "Why it is here" in html and "automatic acknowledgement" in html
    refused = post_form(client, page, f"{page}/resolve", {})
    assert "confirm the category before resolving" in client.get(
        refused.headers["Location"]
    ).get_data(as_text=True)
    post_form(client, page, f"{page}/claim", {})
    post_form(client, page, f"{page}/category", {"category": "exam_frozen"})
    post_form(client, page, f"{page}/note", {"body": "called the centre, PC restarted"})
    post_form(
        client, page, f"{page}/reply", {"body": "Please restart the PC and re-enter the keycode."}
    )
    post_form(client, page, f"{page}/move", {"queue": "technical"})
    post_form(client, page, f"{page}/resolve", {})
    t = ticket(smtp_app, ref)
    assert (t.status, t.confirmed_category, t.queue.slug, t.assignee.email) == (
        "resolved",
        "exam_frozen",
        "technical",
        "agent@imi.test",
    )
    deliver(smtp_app)
    staff_reply = smtp_server[0].parsed()[-1]
    assert (
        "re-enter the keycode" in staff_reply.get_body(("plain",)).get_content()
        and "Auto-Submitted" not in staff_reply
    )
    assert staff_reply["In-Reply-To"] == t.messages[0].message_id
    with smtp_app.extensions["triage.sessions"]() as s:
        actions = [
            e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.ticket_id == t.id))
        ]
    assert {
        "ticket.assigned",
        "ticket.category_confirmed",
        "ticket.note_added",
        "ticket.replied",
        "ticket.resolved",
    } <= set(actions)
    post_form(client, page, f"{page}/reopen", {})
    assert ticket(smtp_app, ref).status == "open"


def test_raw_source_and_attachment_download(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        t = factories.ticket(s, subject="form", body=None)
        factories.inbound(
            s,
            t,
            body="please see the attached form 45",
            message_id="<att@centre.example>",
            attachments={"form45.pdf": b"%PDF-1.4 fake"},
            raw=email_with_attachment("form45.pdf", b"%PDF-1.4 fake"),
        )
    client = app.test_client()
    login(client)
    raw = client.get(f"/messages/{t.messages[0].id}/raw")
    assert (
        raw.status_code == 200
        and b"<att@centre.example>" in raw.data
        and "attachment" in raw.headers["Content-Disposition"]
    )
    att = t.messages[0].attachments[0]
    download = client.get(f"/attachments/{att.id}")
    assert download.data == b"%PDF-1.4 fake" and download.mimetype == "application/octet-stream"


def test_dashboard_renders_svg_charts(app: Flask) -> None:
    make_user(app)
    with factories.session_of(app) as s:
        factories.ticket(s, category="exam_frozen", action="auto_reply", status="auto_replied")
    client = app.test_client()
    login(client)
    html = client.get("/dashboard").get_data(as_text=True)
    assert html.count("<svg") >= 2 and "answered automatically" in html


def test_admin_pages_need_the_admin_role(app: Flask) -> None:
    make_user(app)
    make_user(app, "boss@imi.test", "admin")
    agent = app.test_client()
    login(agent)
    assert agent.get("/admin/users").status_code == 403
    admin = app.test_client()
    login(admin, "boss@imi.test")
    for page in ADMIN_PAGES:
        assert admin.get(page).status_code == 200, page
    post_form(
        admin, "/admin/routing", "/admin/routing", {"category": "extra_time", "queue": "scheduling"}
    )
    from triage.routing import routing_map

    with app.extensions["triage.sessions"]() as s:
        assert routing_map(s)["extra_time"] == "scheduling"
    created = post_form(
        admin, "/admin/tokens", "/admin/tokens", {"name": "gateway", "scope": "inbound"}
    )
    token = re.search(r'id="new-token">(imi_[^<]+)<', created.get_data(as_text=True))
    assert token is not None
    assert post_email(app.test_client(), token.group(1), make_email()).status_code == 202


@pytest.mark.parametrize(
    "payload", ["' OR 1=1 --", "%' UNION SELECT password_hash FROM users --", "\\x00", "%", "_"]
)
def test_sql_injection_in_search_is_inert(app: Flask, payload: str) -> None:
    make_user(app)
    client = app.test_client()
    login(client)
    response = client.get("/queues/triage", query_string={"q": payload, "status": "all"})
    assert response.status_code == 200 and "No tickets match" in response.get_data(as_text=True)


def test_create_user_command_prompts_for_the_password(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["triage", "create-user", "New@IMI.test", "--role", "admin"],
        input="Nia Newton\na long enough password\na long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin new@imi.test" in result.output and "Name" in result.output
    with app.extensions["triage.sessions"]() as s:
        assert (
            s.scalars(select(User).where(User.email == "new@imi.test")).one().name == "Nia Newton"
        )
    client = app.test_client()
    assert login(client, "new@imi.test", "a long enough password").status_code == 302
    again = runner.invoke(
        args=["triage", "create-user", "new@imi.test", "--name", "N"],
        input="a long enough password\na long enough password\n",
    )
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(
        args=["triage", "create-user", "x@imi.test", "--name", "X"], input="short\nshort\n"
    )
    assert short.exit_code != 0 and "at least 10 characters" in short.output


def test_models_page_and_drift_panel(mail_app: Flask, api_token: str) -> None:
    make_user(mail_app, "boss@imi.test", "admin")
    for i in range(3):
        post_email(mail_app.test_client(), api_token, make_email(sender=f"x{i}@c{i}.example"))
    client = mail_app.test_client()
    login(client, "boss@imi.test")
    html = client.get("/admin/models").get_data(as_text=True)
    assert ("vtest-1" in html and "Confusion matrix" not in html) or "<svg" in html
    queued = post_form(client, "/admin/models", "/admin/models", {"op": "retrain"})
    assert "Retrain job" in client.get(queued.headers["Location"]).get_data(as_text=True)
    from triage.orm import Job

    with mail_app.extensions["triage.sessions"]() as s:
        assert s.scalars(select(Job)).one().status == "queued"
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert "Drift" in dashboard and "Not enough mail yet" in dashboard
    refused = post_form(client, "/admin/models", "/admin/models", {"op": "rollback"})
    assert "no earlier active version" in client.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    missing = post_form(
        client, "/admin/models", "/admin/models", {"op": "activate", "version": "vnothere"}
    )
    assert "not found" in client.get(missing.headers["Location"]).get_data(as_text=True)


def test_drift_flags_a_big_move(session) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from triage.helpdesk.stats import drift
    from triage.orm import Ticket, utcnow

    now = utcnow()
    for i in range(40):
        session.add(
            Ticket(
                centre_email="a@b.example",
                predicted_category="exam_frozen",
                action="auto_reply",
                created_at=now - timedelta(days=10 + i % 20),
            )
        )
    for _ in range(30):
        session.add(
            Ticket(
                centre_email="a@b.example",
                predicted_category="other",
                action="triage",
                created_at=now - timedelta(days=1),
            )
        )
    session.commit()
    report = drift(session)
    assert report["enough_data"] and len(report["flags"]) == 2


def test_inbound_problems_page_shows_stuck_mail_and_retries_it(app: Flask) -> None:
    """Mail that was stored but never became a ticket is visible to admins, downloadable, and retryable."""
    from triage.mail.inbound import MAX_PROCESS_ATTEMPTS, InboundContext, process_pending, receive
    from triage.orm import InboundEmail

    sessions = app.extensions["triage.sessions"]
    ctx = InboundContext(app.extensions["triage.settings"], app.extensions["triage.model_provider"])
    hostile = make_email(subject="<script>alert(1)</script>", message_id="<stuck@college.example>")
    with sessions() as s:
        s.add(
            InboundEmail(
                message_id="<stuck@college.example>",
                raw=hostile,
                source="imap",
                attempts=MAX_PROCESS_ATTEMPTS,
                last_error="OperationalError: <b>disk full</b>",
            )
        )
        s.commit()
    receive(sessions, ctx, b"\x00\x01 not mail", "imap", keep_unparseable=True)
    assert process_pending(sessions, ctx) == 0  # the worker has given up on it
    make_user(app, "boss@imi.test", "admin")
    admin = app.test_client()
    login(admin, "boss@imi.test")
    html = admin.get("/admin/inbound").get_data(as_text=True)
    assert f"gave up after {MAX_PROCESS_ATTEMPTS} attempts" in html and "unparseable" in html
    assert "<b>disk full</b>" not in html and "&lt;b&gt;disk full&lt;/b&gt;" in html
    with sessions() as s:
        stuck = s.query(InboundEmail).filter_by(message_id="<stuck@college.example>").one()
    raw = admin.get(f"/admin/inbound/{stuck.id}/raw")
    assert raw.data == hostile and raw.mimetype == "application/octet-stream"
    assert "attachment" in raw.headers["Content-Disposition"]
    post_form(admin, "/admin/inbound", "/admin/inbound", {"inbound_id": str(stuck.id)})
    assert process_pending(sessions, ctx) == 1  # retried by the worker: it becomes a ticket now
    with sessions() as s:
        assert s.get(InboundEmail, stuck.id).status == "processed"  # type: ignore[union-attr]
    assert "stuck@college.example" not in admin.get("/admin/inbound").get_data(as_text=True)
    agent_only = app.test_client()
    make_user(app)
    login(agent_only)
    assert agent_only.get(f"/admin/inbound/{stuck.id}/raw").status_code == 403
