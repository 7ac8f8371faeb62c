"""Thank-you and confirmation mail: spotted by the body alone, never answered automatically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.classifier.acknowledgement import (
    ACKNOWLEDGEMENT_REASON,
    acknowledgement_only,
    is_acknowledgement,
)
from triage.classifier.cleaning import clean_body, is_forward

DATA = Path(__file__).resolve().parent.parent / "training_data"


@pytest.mark.parametrize(
    "body",
    [
        "thanks, that worked",
        "all sorted now cheers",
        "ok will do",
        "Thanks!",
        "Many thanks, much appreciated!",
        "Hi, just to let you know the restart worked and he finished fine. No need to reply. Thanks, Dean",
        "Good morning, ok thanks, understood.",
        "That\u2019s there now, ta.",
    ],
)
def test_thanks_and_confirmations_are_spotted(body: str) -> None:
    assert is_acknowledgement(body)


@pytest.mark.parametrize(
    "body",
    [
        "thanks but it still doesn't work",
        "Thanks. Also, when are the results out?",
        "keycode ok, now it says waiting for invigilator",
        "exam frozen on pc 3 thanks",
        "learner absent today thanks",
        "extra time for a dyslexic learner thanks",
        "results out yet thanks",
        "good morning, candidate off today",
        "That worked for two of them, but the third learner is locked again",
        "",
        "thanks " * 200,
    ],
)
def test_questions_and_problems_are_not(body: str) -> None:
    assert not is_acknowledgement(body)


def test_long_mail_is_not_read_past_the_limit() -> None:
    assert not is_acknowledgement("thanks that worked " + "x" * 1_000_000)


def test_a_greeting_left_by_cleaning_falls_back_to_the_raw_body() -> None:
    raw = (
        "Hi Jo,\n\nThanks, that worked: I added the 25% when rescheduling.\n\nAll the best\nRachel"
    )
    assert acknowledgement_only("Hi Jo,", raw)
    assert not acknowledgement_only(
        "Hi Jo,", "Hi Jo,\n\nThanks, but what do I do about the second one?"
    )
    assert not acknowledgement_only("the exam is frozen on pc 4 and the timer runs", raw)


def test_no_enquiry_in_the_labelled_data_is_taken_for_a_thank_you() -> None:
    """The detector costs no coverage: none of the labelled category emails (train and test) is flagged."""
    flagged = []
    for name in ("train.jsonl", "test.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            row = json.loads(line)
            if row["label"] != "other" and acknowledgement_only(
                clean_body(row["body"], forwarded=is_forward(row["subject"])), row["body"]
            ):
                flagged.append(row["id"])
    assert flagged == []


def test_a_thank_you_is_held_for_staff_whatever_the_subject(trained_model) -> None:  # type: ignore[no-untyped-def]
    model = trained_model[0].model
    question = model.decide_one(
        "Re: exam frozen", "the exam froze again on pc 2, screen stuck, timer running"
    )
    assert question.category == "exam_frozen" and not question.reason
    for subject in ("Re: exam frozen", "extra time", "Re: [IMI-000123] PIN code"):
        decision = model.decide_one(subject, "thanks, that worked")
        assert decision.action == "triage" and decision.queue == "triage"
        assert decision.category == "other" and decision.reason == ACKNOWLEDGEMENT_REASON
        assert len(decision.alternatives) == 3


def test_a_thank_you_by_mail_gets_no_answer_and_a_thank_you_on_a_thread_resolves_nothing(  # type: ignore[no-untyped-def]
    mail_app, api_token: str, smtp_server
) -> None:
    from sqlalchemy import select

    from tests.mailutil import deliver, make_email, post_email, ticket
    from triage.orm import AuditEvent

    client = mail_app.test_client()
    thanks = post_email(
        client, api_token, make_email(subject="Re: exam frozen", body="thanks, that worked")
    ).get_json()
    t = ticket(mail_app, thanks["reference"])
    assert t.status == "open" and t.queue.slug == "triage" and t.predicted_category == "other"
    with mail_app.extensions["triage.sessions"]() as s:
        created = s.scalars(select(AuditEvent).where(AuditEvent.ticket_id == t.id)).first()
        assert created is not None and created.details["reason"] == ACKNOWLEDGEMENT_REASON
    assert "auto_reply" not in [
        m.kind for m in ticket(mail_app, thanks["reference"]).messages
    ]  # no FAQ answer
    first = post_email(
        client,
        api_token,
        make_email(
            subject="PIN codes",
            message_id="<pin@centre.example>",
            sender="Sam <sam@centre.example>",
            body="how do we set a PIN so the learners can unlock their own exams next week instead of me "
            "unlocking each one",
        ),
    ).get_json()
    assert ticket(mail_app, first["reference"]).status == "auto_replied"
    deliver(mail_app)
    auto = smtp_server[0].parsed()[-1]
    reply = make_email(
        subject="Re: " + auto["Subject"],
        body="all sorted now cheers",
        sender="sam@centre.example",
        headers={"In-Reply-To": auto["Message-ID"], "References": auto["Message-ID"]},
    )
    assert post_email(client, api_token, reply).get_json()["reference"] == first["reference"]
    after = ticket(mail_app, first["reference"])
    assert (
        after.status == "open" and after.resolved_at is None
    )  # staff see it; the thank-you closes nothing
