"""The staff app's smaller things (issue 28, point 8): UK times, plurals, staff by name, styled error pages,
search snippets, urgent and overdue counts per queue, safe previews of images and PDFs, and staff replies
threaded on the centre's last message written by a person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from tests import factories
from tests.webutil import login, make_user, post_form
from triage.helpdesk import search, tickets
from triage.helpdesk.history import describe
from triage.helpdesk.previews import PreviewKind, preview_type
from triage.orm import AuditEvent, Message, utcnow
from triage.states import AuditAction, MessageKind
from triage.web.formatting import filesize, plural, staff_name, uk_time

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_times_are_uk_clock_time_with_gmt_or_bst() -> None:
    assert uk_time(datetime(2026, 12, 7, 14, 5)) == "07 Dec 2026 14:05 GMT"
    assert uk_time(datetime(2026, 7, 1, 14, 5)) == "01 Jul 2026 15:05 BST"
    assert uk_time(datetime(2026, 7, 1, 23, 30), "%d %b", zone=False) == "02 Jul"
    assert uk_time(datetime(2026, 7, 1, 14, 5, tzinfo=UTC), "%H:%M") == "15:05 BST"
    assert uk_time(None) == "—"


def test_counts_read_in_the_right_number() -> None:
    assert [plural(n, "ticket") for n in (0, 1, 2)] == ["0 tickets", "1 ticket", "2 tickets"]
    assert (
        plural(1, "reply", "replies") == "1 reply" and plural(3, "reply", "replies") == "3 replies"
    )
    assert (filesize(1), filesize(900), filesize(14_000), filesize(2_400_000)) == (
        "1 byte",
        "900 bytes",
        "14 KB",
        "2.3 MB",
    )


def test_staff_appear_by_name_in_lists_pages_and_history(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app, "jo.agent@imi.test", "agent", "Jo Agent")
    with factories.session_of(app) as s:
        jo = factories.user(s, email="sam@imi.test", name="Sam Smith")
        t = factories.ticket(s, assignee=jo)
        s.add(
            AuditEvent(
                actor="user:jo.agent@imi.test",
                ticket_id=t.id,
                action=AuditAction.TICKET_ASSIGNED,
                details={"assignee": "sam@imi.test"},
            )
        )
    login(client, "jo.agent@imi.test")
    page = client.get(f"/tickets/{t.id}").get_data(as_text=True)
    assert "Jo Agent assigned it to Sam Smith." in page and "assignee Sam Smith" in page
    listing = client.get("/views/open").get_data(as_text=True)
    assert "Sam Smith" in listing
    assert staff_name(None) == "nobody" and staff_name(jo) == "Sam Smith"
    event = AuditEvent(actor="user:x@imi.test", action=AuditAction.TICKET_REPLIED, details={})
    assert describe(event) == "x@imi.test replied to the centre."  # no name known: the address


def test_bulk_result_has_plural_and_says_when_nothing_changed(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:
        done = factories.ticket(s, confirmed_category="exam_frozen", status="resolved")
    login(client)
    post_form(client, "/views/open", "/tickets/bulk", {"op": "resolve", "ticket_id": str(done.id)})
    page = client.get("/queues").get_data(as_text=True)
    assert "0 tickets changed." in page and 'class="flash error"' in page


def test_staff_pages_show_styled_error_pages_and_the_api_keeps_json(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    login(client)
    missing = client.get("/tickets/999999")
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404 and "Page not found" in html and "style.css" in html
    assert "Go to the queues" in html and "Werkzeug" not in html
    wrong_method = client.delete("/queues")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    assert "Not possible here" in wrong_method.get_data(as_text=True)
    api = client.get("/api/v1/nothing-here")
    assert api.status_code == 404 and api.is_json


def test_server_faults_on_staff_pages_are_a_styled_500(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    @app.get("/boom-for-test")
    def boom() -> str:
        raise RuntimeError("kaboom-secret-detail")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    make_user(app)
    login(client)
    answer = client.get("/boom-for-test")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 500 and "Something went wrong" in html and "kaboom" not in html


def test_search_results_show_where_the_words_matched() -> None:
    text = (
        "Hello, "
        + "we have a question about our centre. " * 6
        + "\n\nOur candidate was sitting the exam when the SecureClient window froze again. Thanks"
    )
    pieces = search.snippet(text, ["froz", "secure"])
    assert pieces is not None
    assert [p for p, hit in pieces if hit] == ["SecureClient", "froze"]
    shown = "".join(p for p, _ in pieces)
    assert shown.startswith("…") and len(shown) <= search.SNIPPET_CHARS + 2 and "\n" not in shown
    assert search.snippet("short: froze", ["froz"]) == [("short: ", False), ("froze", True)]
    assert search.snippet(text, ["keycode"]) is None
    assert search.snippet("unfrozen", ["froz"]) is None  # a word start, as the index matches


def test_search_page_highlights_the_match_and_escapes_it(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:
        factories.ticket(
            s, subject="Help", body="The <b>keycode</b> for candidate 4411 was refused twice."
        )
    login(client)
    html = client.get("/search?q=keycode").get_data(as_text=True)
    assert "<mark>keycode</mark>" in html and "&lt;b&gt;" in html and "<b>keycode" not in html
    assert "1 ticket matches" in html


def test_queue_list_counts_urgent_and_overdue_tickets(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    long_ago = utcnow() - timedelta(days=10)
    with factories.session_of(app) as s:
        factories.ticket(s, queue="technical", urgent=True, urgent_reason="exam now")
        factories.ticket(s, queue="technical", created_at=long_ago)
        factories.ticket(s, queue="technical")
        factories.ticket(s, queue="technical", status="pending", created_at=long_ago)
    with app.extensions["triage.sessions"]() as s:
        technical = next(q for q in tickets.queue_summaries(s) if q.slug == "technical")
    assert (technical.open_count, technical.urgent_count, technical.overdue_count) == (4, 1, 1)
    login(client)
    html = client.get("/queues").get_data(as_text=True)
    assert "<th>Urgent</th><th>Overdue</th>" in html and 'class="count overdue"' in html


def test_previews_are_recognised_by_their_bytes_never_the_declared_type() -> None:
    assert preview_type(PNG) == ("image/png", PreviewKind.IMAGE)
    assert preview_type(b"\xff\xd8\xff\xe0rest") == ("image/jpeg", PreviewKind.IMAGE)
    assert preview_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("image/webp", PreviewKind.IMAGE)
    assert preview_type(b"%PDF-1.7\n") == ("application/pdf", PreviewKind.PDF)
    for unsafe in (b"<svg onload=alert(1)>", b"<html><script>", b"", None):
        assert preview_type(unsafe) is None


def test_image_and_pdf_previews_are_served_sandboxed(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    with factories.session_of(app) as s:
        t = factories.ticket(s)
        m = t.messages[0]
        image = factories.attachment(
            s, m, filename="screen.png", data=PNG, content_type="image/png"
        )
        pdf = factories.attachment(s, m, filename="form.pdf", data=b"%PDF-1.4\n%%EOF")
        fake = factories.attachment(
            s,
            m,
            filename="evil.png",
            data=b"<html><script>alert(1)</script>",
            content_type="image/png",
        )
    login(client)
    page = client.get(f"/tickets/{t.id}").get_data(as_text=True)
    assert f'<img class="preview" src="/attachments/{image.id}/view"' in page
    assert f"/attachments/{fake.id}/view" not in page
    shown = client.get(f"/attachments/{image.id}/view")
    assert shown.status_code == 200 and shown.mimetype == "image/png"
    assert "sandbox" in shown.headers["Content-Security-Policy"]
    assert shown.headers["X-Content-Type-Options"] == "nosniff"
    assert shown.headers["Content-Disposition"].startswith("inline;")
    as_pdf = client.get(f"/attachments/{pdf.id}/view")
    assert (
        as_pdf.mimetype == "application/pdf"
        and "default-src 'none'" in as_pdf.headers["Content-Security-Policy"]
    )
    assert client.get(f"/attachments/{fake.id}/view").status_code == 404
    stranger = app.test_client()
    assert stranger.get(f"/attachments/{image.id}/view").status_code in (302, 401)


@pytest.mark.parametrize("later", ["out-of-office", "bounce"])
def test_staff_reply_answers_the_centres_last_written_message(smtp_app: Flask, later: str) -> None:
    with factories.session_of(smtp_app) as s:
        agent = factories.user(s, email="agent2@imi.test", name="Ann")
        t = factories.ticket(s)
        written = factories.inbound(s, t, body="Could you also check candidate 12?")
        automatic = factories.inbound(
            s, t, body="I am out of the office until Monday.", auto_submitted_reason="auto-replied"
        )
        if later == "bounce":
            automatic.kind = MessageKind.BOUNCE
            automatic.auto_submitted_reason = None
    with smtp_app.extensions["triage.sessions"]() as s:
        ticket = tickets.get_ticket(s, t.id)
        reply = tickets.reply(
            s,
            smtp_app.extensions["triage.settings"],
            tickets.Actor.of_user(s.get(type(agent), agent.id)),  # type: ignore[arg-type]
            ticket,
            "Yes, candidate 12 is fine now.",
        )
        s.commit()
        assert reply.in_reply_to == written.message_id != automatic.message_id
        sent = s.get(Message, reply.id)
        assert sent is not None and "check candidate 12" in sent.body_text
        assert "out of the office" not in sent.body_text
