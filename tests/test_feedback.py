"""'Did this answer your question?': the links in automatic answers, what Yes and No change on the ticket,
the dashboard and the retraining data, and the refusals (second answer, forged or expired link, too many)."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests import factories
from tests.mailutil import deliver, make_email, post_email
from tests.test_outgoing import _assert_reads_well, html, plain, received
from tests.webutil import login, make_user
from triage.classifier.dataset import Example, fit_weights
from triage.classifier.model import build_pipeline
from triage.classifier.retraining import (
    CENTRE_CONFIRMATION_WEIGHT,
    build_datasets,
    confirmed_examples,
)
from triage.helpdesk import stats, tickets
from triage.helpdesk.lifecycle import reopen_queue
from triage.helpdesk.tickets import Actor, TicketFilter
from triage.mail.feedback_links import make_token
from triage.orm import (
    AnswerFeedback,
    AuditEvent,
    Classification,
    ModelVersion,
    PublicRateLimit,
    Ticket,
    utcnow,
)
from triage.routing import routing_map
from triage.states import AuditAction, TicketStatus

FROZEN = "exam_frozen"  # self-serve: answered automatically


def _secret(app: Flask) -> str:
    secret: str = app.extensions["triage.settings"].secret_key
    return secret


def answered_ticket(
    app: Flask,
    *,
    category: str = FROZEN,
    model_version: str = "v-feedback",
    centre_email: str = factories.CENTRE_EMAIL,
    **columns: Any,
) -> tuple[int, str]:
    """An auto-replied ticket with its answer (and the model's classification); returns (ticket id, link
    token)."""
    with factories.session_of(app) as s:
        t = factories.ticket(
            s,
            subject="Exam frozen",
            body=f"The exam has frozen half way, the screen is stuck ({centre_email}).",
            status=columns.pop("status", TicketStatus.AUTO_REPLIED),
            category=category,
            confidence=0.97,
            action="auto_reply",
            queue="triage",
            centre_email=centre_email,
            first_response_at=utcnow(),
            **columns,
        )
        answer = factories.outbound(s, t, kind="auto_reply", body="Dear Jo,\n\nRestart it.\n")
        s.add(
            Classification(
                ticket_id=t.id,
                message_id=t.messages[0].id,
                model_version=model_version,
                category=category,
                confidence=0.97,
                action="auto_reply",
            )
        )
        return t.id, make_token(_secret(app), t.id, answer.message_id)


def _get(app: Flask, ticket_id: int) -> Ticket:
    with app.extensions["triage.sessions"]() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        _ = t.queue
        return t


def _events(app: Flask, ticket_id: int, action: str) -> list[AuditEvent]:
    with app.extensions["triage.sessions"]() as s:
        return list(
            s.scalars(
                select(AuditEvent).where(
                    AuditEvent.ticket_id == ticket_id, AuditEvent.action == action
                )
            )
        )


def _links(text: str) -> dict[str, str]:
    return dict(re.findall(r"(Yes, that solved it|No, I still need help): (\S+)", text))


# --- the answer mail ----------------------------------------------------------------------------------------


def test_an_automatic_answer_carries_both_links_in_text_and_html_and_yes_resolves(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    client = mail_app.test_client()
    reference = post_email(client, api_token, make_email()).get_json()["reference"]  # exam frozen
    deliver(mail_app)
    [(_envelope, sent)] = received(smtp_server)
    assert isinstance(sent, EmailMessage)
    _assert_reads_well(sent)  # the new paragraph reads as the rest: same words in both parts
    text, page = plain(sent), html(sent)
    assert "Did this answer your question?" in text
    links = _links(text)
    assert set(links) == {"Yes, that solved it", "No, I still need help"}
    for url in links.values():
        assert url.startswith("http://127.0.0.1:5000/answer/")
        assert f'href="{url}"' in page  # a working link in the HTML part too
    ticket_id = int(reference.removeprefix("IMI-"))
    path = links["Yes, that solved it"].removeprefix("http://127.0.0.1:5000")

    before = _get(mail_app, ticket_id).status  # open: the email says an exam is going wrong now
    page_shown = client.get(path)  # what a link scanner does: nothing changes
    assert page_shown.status_code == 200 and "<button" in page_shown.get_data(as_text=True)
    assert _get(mail_app, ticket_id).status == before
    assert _events(mail_app, ticket_id, AuditAction.TICKET_ANSWER_CONFIRMED) == []

    done = client.post(path)
    assert done.status_code == 200 and "Thank you" in done.get_data(as_text=True)
    t = _get(mail_app, ticket_id)
    assert t.status == TicketStatus.RESOLVED and t.confirmed_category is None
    assert t.resolution == "solved by the automatic answer"
    [event] = _events(mail_app, ticket_id, AuditAction.TICKET_ANSWER_CONFIRMED)
    assert event.actor == "centre:jo@college.example" and event.details["category"] == FROZEN
    again = client.post(path)
    assert again.status_code == 409 and "already told us" in again.get_data(as_text=True)
    # acknowledgements (routed mail) ask nothing
    post_email(client, api_token, make_email(subject="zebra", body="please send invoice 4471"))
    deliver(mail_app)
    assert "Did this answer" not in plain(received(smtp_server)[-1][1])


# --- Yes and No on the ticket -------------------------------------------------------------------------------


def test_no_reopens_at_the_top_of_its_queue_with_the_comment_in_the_history(
    smtp_app: Flask,
) -> None:
    app = smtp_app
    older = []
    with factories.session_of(app) as s:  # older tickets already waiting in the frozen-exam queue
        queue_slug = reopen_queue(Ticket(predicted_category=FROZEN), routing_map(s))
        for i in range(3):
            older.append(
                factories.ticket(
                    s,
                    queue=queue_slug,
                    created_at=utcnow() - timedelta(days=3 + i),
                    centre_email=f"c{i}@old.example",
                ).id
            )
    ticket_id, token = answered_ticket(app)
    client = app.test_client()
    url = f"/answer/{token}/no"
    shown = client.get(url)
    assert shown.status_code == 200 and 'name="comment"' in shown.get_data(as_text=True)
    assert _get(app, ticket_id).status == TicketStatus.AUTO_REPLIED  # GET changed nothing

    comment = "<b>Still frozen</b> after the restart"
    assert client.post(url, data={"comment": comment}).status_code == 200
    t = _get(app, ticket_id)
    assert t.status == TicketStatus.OPEN and t.queue is not None and t.queue.slug == queue_slug
    assert t.answer_rejected_at is not None and t.centre_replied
    with app.extensions["triage.sessions"]() as s:
        rows, _total = tickets.list_tickets(s, TicketFilter(queue=queue_slug))
        assert (
            next(r.id for r in rows) == ticket_id
        )  # top of its queue, above older waiting tickets
        assert set(older) <= {r.id for r in rows}
    [event] = _events(app, ticket_id, AuditAction.TICKET_ANSWER_REJECTED)
    assert event.details["comment"] == comment and event.details["reopened"] is True

    make_user(app)
    staff = app.test_client()
    login(staff)
    page = staff.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "said the automatic answer did not help" in page
    assert "&lt;b&gt;Still frozen&lt;/b&gt;" in page and "<b>Still frozen" not in page  # escaped
    listed = staff.get(f"/queues/{queue_slug}").get_data(as_text=True)
    assert "answer did not help" in listed
    assert listed.index(f"IMI-{ticket_id:06d}") < min(
        listed.index(f"IMI-{other:06d}") for other in older
    )  # first on the queue page too

    # staff answer: the ticket goes back to its ordinary place
    with app.extensions["triage.sessions"]() as s:
        row = s.get(Ticket, ticket_id)
        assert row is not None
        tickets.reply(s, app.extensions["triage.settings"], Actor("user:x"), row, "Try this.")
        s.commit()
        assert row.answer_rejected_at is None


def test_a_second_answer_or_a_forged_or_expired_link_is_refused_clearly(app: Flask) -> None:
    ticket_id, token = answered_ticket(app)
    client = app.test_client()
    assert client.post(f"/answer/{token}/yes").status_code == 200
    for answer in ("yes", "no"):  # either way, once only
        refused = client.post(f"/answer/{token}/{answer}")
        assert refused.status_code == 409
        assert "already told us" in refused.get_data(as_text=True)
        assert client.get(f"/answer/{token}/{answer}").status_code == 409
    with app.extensions["triage.sessions"]() as s:
        assert len(s.scalars(select(AnswerFeedback)).all()) == 1
    assert _get(app, ticket_id).status == TicketStatus.RESOLVED

    other_id, other = answered_ticket(app, centre_email="sam@school.example")
    forged = [
        other[:-1] + ("A" if other[-1] != "A" else "B"),  # signature changed
        other.replace(f"{other_id}.", f"{ticket_id}.", 1),  # another ticket's id
        make_token("not-our-secret", other_id, "x"),
        "nonsense",
        other[:20],
    ]
    for bad in forged:
        for method in (client.get, client.post):
            response = method(f"/answer/{bad}/no")
            assert response.status_code == 404, bad
            assert "This link does not work" in response.get_data(as_text=True)
    old = make_token(
        _secret(app),
        other_id,
        _answer_message_id(app, other_id),
        issued_at=utcnow() - timedelta(days=31),
    )
    for method in (client.get, client.post):
        expired = method(f"/answer/{old}/yes")
        assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    assert client.get(f"/answer/{other}/maybe").status_code == 404
    assert _get(app, other_id).status == TicketStatus.AUTO_REPLIED  # nothing above changed it


def _answer_message_id(app: Flask, ticket_id: int) -> str:
    with app.extensions["triage.sessions"]() as s:
        row = s.get(Ticket, ticket_id)
        assert row is not None
        return next(m.message_id for m in row.messages if m.kind == "auto_reply")


def test_the_public_page_is_rate_limited_per_client(
    app_config: dict[str, Any], session: Any
) -> None:
    from triage import create_app

    app_config["FEEDBACK_RATE_PER_MINUTE"] = 3
    app = create_app(app_config)
    client: FlaskClient = app.test_client()
    codes = [client.get("/answer/nonsense/yes").status_code for _ in range(4)]
    assert codes[:3] == [404, 404, 404] and codes[3] == 429
    limited = client.get("/answer/nonsense/yes")
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert "Too many requests" in limited.get_data(as_text=True)
    other = client.get("/answer/nonsense/yes", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 404  # another address has its own count
    with app.extensions["triage.sessions"]() as s:  # an old window of another client is forgotten
        s.add(PublicRateLimit(key="feedback:10.0.0.7", window=1, count=99))
        s.commit()
    assert client.get("/answer/x/yes", environ_base={"REMOTE_ADDR": "10.0.0.8"}).status_code == 404
    with app.extensions["triage.sessions"]() as s:
        assert s.get(PublicRateLimit, "feedback:10.0.0.7") is None
        assert s.get(PublicRateLimit, "feedback:10.0.0.9") is not None
    app.extensions["triage.engine"].dispose()


# --- the dashboard ------------------------------------------------------------------------------------------


def test_the_dashboard_counts_answers_per_category_and_model_version(app: Flask) -> None:
    with factories.session_of(app) as s:
        s.add(
            ModelVersion(
                version="v-feedback",
                data_sha256="0" * 64,
                sklearn_version="1",
                metrics={"test": {"auto_reply": {"per_category": {FROZEN: {"precision": 0.95}}}}},
            )
        )
    tokens = [answered_ticket(app, centre_email=f"c{i}@x{i}.example") for i in range(4)]
    answered_ticket(app, category="unlock_with_pin", model_version="v-old")
    client = app.test_client()
    assert client.post(f"/answer/{tokens[0][1]}/yes").status_code == 200
    assert client.post(f"/answer/{tokens[1][1]}/yes").status_code == 200
    assert client.post(f"/answer/{tokens[2][1]}/no").status_code == 200
    with app.extensions["triage.sessions"]() as s:
        rows = {(r["model_version"], r["category"]): r for r in stats.answer_feedback(s)}
    frozen = rows[("v-feedback", FROZEN)]
    assert (frozen["sent"], frozen["confirmed"], frozen["rejected"], frozen["unanswered"]) == (
        4,
        2,
        1,
        1,
    )
    assert frozen["confirmed_precision"] == pytest.approx(2 / 3)
    assert frozen["model_estimate"] == 0.95
    pin = rows[("v-old", "unlock_with_pin")]
    assert (pin["sent"], pin["unanswered"], pin["confirmed_precision"]) == (1, 1, None)

    make_user(app)
    staff = app.test_client()
    login(staff)
    page = staff.get("/dashboard").get_data(as_text=True)
    section = page[page.index('id="answer-feedback"') :]
    assert "66.7%" in section and "95.0%" in section and "v-feedback" in section


# --- the retraining data ------------------------------------------------------------------------------------


def _staff_confirms(app: Flask, ticket_id: int, category: str, resolve: bool = True) -> None:
    with app.extensions["triage.sessions"]() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        actor = Actor("user:staff@imi.test")
        tickets.set_category(s, actor, t, category)
        if resolve:
            tickets.resolve(s, actor, t)
        s.commit()


def test_retraining_takes_yes_as_a_lighter_confirmation_and_no_only_once_staff_set_a_category(
    app: Flask,
) -> None:
    client = app.test_client()
    names = ("staff_1", "staff_2", "yes_corrected", "no", "no_confirmed", "no_confirmed_before")
    made = {name: answered_ticket(app, centre_email=f"{name}@centre.example") for name in names}
    for name in ("staff_1", "staff_2"):  # plain staff confirmations, resolved first
        _staff_confirms(app, made[name][0], FROZEN)
    _staff_confirms(app, made["no_confirmed_before"][0], FROZEN, resolve=False)  # before the No
    for name, (_id, token) in made.items():
        answer = "yes" if name.startswith("yes") else "no"
        if not name.startswith("staff"):
            assert client.post(f"/answer/{token}/{answer}").status_code == 200
    _staff_confirms(app, made["yes_corrected"][0], "candidate_absent")  # staff changed the category
    _staff_confirms(app, made["no_confirmed"][0], "unlock_with_pin")
    with app.extensions["triage.sessions"]() as s:  # resolved with the category from before the No
        t = s.get(Ticket, made["no_confirmed_before"][0])
        assert t is not None
        tickets.resolve(s, Actor("user:staff@imi.test"), t)
        s.commit()
    made["yes"] = answered_ticket(app, centre_email="yes@centre.example")
    assert client.post(f"/answer/{made['yes'][1]}/yes").status_code == 200  # the newest resolved
    with app.extensions["triage.sessions"]() as s:
        examples = {ex.id: ex for _when, ex in confirmed_examples(s)}
        training, evaluation, _n = build_datasets(s, app.extensions["triage.settings"])

    def example(name: str) -> Example | None:
        return examples.get(f"ticket:{made[name][0]}")

    yes = example("yes")
    assert yes is not None and (yes.label, yes.weight) == (FROZEN, CENTRE_CONFIRMATION_WEIGHT)
    assert 0 < CENTRE_CONFIRMATION_WEIGHT < 1
    corrected = example("yes_corrected")
    assert corrected is not None and (corrected.label, corrected.weight) == (
        "candidate_absent",
        1.0,
    )
    assert example("no") is None  # the centre said No and nobody has set a category since
    confirmed = example("no_confirmed")
    assert confirmed is not None and (confirmed.label, confirmed.weight) == ("unlock_with_pin", 1.0)
    assert example("no_confirmed_before") is None
    # a centre's Yes is trained on (with its weight), never scored: it agrees with the model by
    # construction
    trained = {ex.id: ex for ex in training}
    assert trained[f"ticket:{made['yes'][0]}"].weight == CENTRE_CONFIRMATION_WEIGHT
    assert not any(ex.weight != 1.0 for ex in evaluation)
    assert len(examples) == 5 and f"ticket:{made['staff_1'][0]}" in trained


def test_weights_reach_the_pipelines_final_step() -> None:
    """Twelve copies of one ambiguous email, six per label: the heavier side wins."""
    clear = [
        Example(f"frozen {i}", f"the exam screen froze and stuck number {i}", "exam_frozen")
        for i in range(8)
    ] + [
        Example(f"absent {i}", f"the candidate is absent ill today number {i}", "candidate_absent")
        for i in range(8)
    ]

    def winner(frozen_weight: float, absent_weight: float) -> str:
        ambiguous = [
            Example("help", "mixed words zebra quartz", "exam_frozen", weight=frozen_weight)
            for _ in range(6)
        ] + [
            Example("help", "mixed words zebra quartz", "candidate_absent", weight=absent_weight)
            for _ in range(6)
        ]
        data = clear + ambiguous
        params = fit_weights(data)
        assert set(params) == {"classify__sample_weight"}
        pipeline = build_pipeline().fit([e.pair for e in data], [e.label for e in data], **params)
        return str(pipeline.predict([("help", "mixed words zebra quartz")])[0])

    assert winner(1.0, 0.05) == "exam_frozen"
    assert winner(0.05, 1.0) == "candidate_absent"
    assert fit_weights(clear) == {}  # unweighted data trains exactly as before
    assert np.all(
        fit_weights([*clear, Example("a", "b", "other", weight=0.5)])["classify__sample_weight"][
            :-1
        ]
        == 1
    )


def _alerts(app: Flask, ticket_id: int) -> list[tuple[str, str, str]]:
    """(recipient, subject, body) of the staff alerts queued for a ticket."""
    from triage.orm import OutboxItem

    with app.extensions["triage.sessions"]() as s:
        rows = s.scalars(
            select(OutboxItem).where(OutboxItem.ticket_id == ticket_id).order_by(OutboxItem.id)
        ).all()
        return [
            (r.recipient, r.message.subject, r.message.body_text)
            for r in rows
            if r.message.kind == "notification"
        ]


@pytest.mark.parametrize("notify_address", ["exams-team@imi.test", None])
def test_no_alerts_the_queue_since_nobody_is_assigned(
    app: Flask, notify_address: str | None
) -> None:
    from triage.helpdesk import notifications
    from triage.orm import Queue

    make_user(app, "agent@imi.test", "agent", "Alex Agent")
    make_user(app, "boss@imi.test", "admin", "Bo Boss")
    ticket_id, token = answered_ticket(app)
    comment = "Still frozen after the restart.\nThe candidate has been waiting 20 minutes."
    assert (
        app.test_client().post(f"/answer/{token}/no", data={"comment": comment}).status_code == 200
    )
    t = _get(app, ticket_id)
    assert t.assignee_id is None and t.queue is not None
    with factories.session_of(app) as s:
        queue = s.scalars(select(Queue).where(Queue.slug == t.queue.slug)).one()
        queue.notify_address = notify_address

    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    assert notifications.run(sessions, settings) >= 1
    alerts = _alerts(app, ticket_id)
    expected = {notify_address} if notify_address else {"agent@imi.test", "boss@imi.test"}
    assert {a[0] for a in alerts} == expected
    _recipient, subject, body = alerts[0]
    assert subject.startswith(f"[IMI-{ticket_id:06d}] Answer did not help:")
    assert "the automatic answer did not help" in body
    assert "> Still frozen after the restart.\n> The candidate has been waiting 20 minutes." in body
    assert f"/tickets/{ticket_id}" in body
    assert notifications.run(sessions, settings) == 0  # told once

    # the centre writing again later is an ordinary reply: no queue alert for an unassigned ticket
    with factories.session_of(app) as s:
        row = s.get(Ticket, ticket_id)
        assert row is not None
        row.centre_replied_at = utcnow()
    notifications.run(sessions, settings)
    assert len(_alerts(app, ticket_id)) == len(alerts)


def test_no_alerts_the_assignee_only_when_there_is_one(app: Flask) -> None:
    from triage.helpdesk import notifications

    agent = make_user(app, "agent@imi.test", "agent", "Alex Agent")
    make_user(app, "boss@imi.test", "admin", "Bo Boss")
    ticket_id, token = answered_ticket(app)
    with factories.session_of(app) as s:
        row = s.get(Ticket, ticket_id)
        assert row is not None
        row.assignee_id = agent
    assert app.test_client().post(f"/answer/{token}/no", data={}).status_code == 200
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    assert _get(app, ticket_id).assignee_id == agent
    notifications.run(sessions, settings)
    alerts = _alerts(app, ticket_id)
    assert len(alerts) == 1, alerts
    [(recipient, subject, body)] = alerts
    assert recipient == "agent@imi.test" and "Answer did not help" in subject
    assert "It left no comment." in body
