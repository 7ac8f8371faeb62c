"""Family answers end to end: a real model, sure of the family but not the member, answers once
with the family's combined answer (text and HTML), says why on the ticket page, and a mixed family
goes unanswered to its staff queue."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from tests.mailutil import deliver, make_email, post_email, ticket
from tests.webutil import login, make_user
from triage import catalogue, create_app
from triage.catalogue import Family
from triage.classifier import registry
from triage.classifier.decision import NEVER
from triage.helpdesk import tokens
from triage.mail import compose


@pytest.fixture
def family_app(
    model_app_config: dict[str, Any],
    smtp_app_config: dict[str, Any],
    trained_model,
    session: Session,
) -> Flask:  # type: ignore[no-untyped-def]
    """The session's trained model with single answers switched off and family answers from 50 %,
    active: every unlocking or absence email is then decided by its family."""
    result, models_dir = trained_model
    model = copy.deepcopy(result.model)
    model.metadata["version"] = "vfamily"
    for slug in catalogue.SELF_SERVE_SLUGS | catalogue.STAFF_ONLY_SLUGS:
        model.thresholds.per_category[slug] = dict(NEVER)
    model.thresholds.family_answer = 0.5
    if not registry.version_dir(models_dir, "vfamily").exists():  # saved once per session
        registry.save(model, models_dir)
    registry.register(session, model, "test", True, "")
    registry.activate(session, "vfamily", "test")
    session.commit()
    return create_app(model_app_config)


def _token(app: Flask) -> str:
    with app.extensions["triage.sessions"]() as s:
        _row, plain = tokens.create_token(s, "tests")
        s.commit()
    return plain


def test_an_unsure_member_of_a_sure_family_gets_the_combined_answer_and_staff_see_why(
    family_app: Flask, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    client = family_app.test_client()
    raw = make_email(
        subject="exam locked",
        body="the learner typed in his keycode and now the screen says the exam is locked",
    )
    body = post_email(client, _token(family_app), raw).get_json()
    t = ticket(family_app, body["reference"])
    assert t.action == "auto_reply" and t.predicted_category in Family.UNLOCKING.members
    assert deliver(family_app) == 1
    recorder, _port = smtp_server
    [sent] = recorder.parsed()
    text = sent.get_body(("plain",)).get_content()
    assert compose.family_answer_text(Family.UNLOCKING).splitlines()[0] in text
    for step in ("entered their keycode", "invigilator unlocks it", "Set PIN"):
        assert step in text
    html = sent.get_body(("html",)).get_content()
    assert "<ol" in html and "Set PIN" in html
    make_user(family_app)
    staff = family_app.test_client()
    login(staff)
    page = staff.get(f"/tickets/{t.id}").get_data(as_text=True)
    assert "unlocking an exam (FAQ 2, 3, 4)" in page and "combined answer" in page


def test_a_sure_mixed_family_goes_to_the_staff_queue_without_an_answer(
    family_app: Flask, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    raw = make_email(
        subject="missed exam",
        body="our learner missed his exam last week and now he is greyed out in Create Exam "
        "so I cannot rebook him",
    )
    body = post_email(family_app.test_client(), _token(family_app), raw).get_json()
    t = ticket(family_app, body["reference"])
    assert (t.action, t.queue.slug) == ("route", "scheduling")
    assert deliver(family_app) == 1  # the acknowledgement only
    recorder, _port = smtp_server
    [sent] = recorder.parsed()
    assert "Set PIN" not in sent.get_body(("plain",)).get_content()


def test_only_self_serve_families_have_a_combined_answer() -> None:
    assert [f for f in Family if f.self_serve] == [Family.UNLOCKING, Family.RESULTS]
    assert Family.RESULTS.members == ("results_release_dates", "obtain_results")
    with pytest.raises(ValueError, match="no combined answer"):
        compose.family_answer_text(Family.ABSENCE)
    reply = compose.auto_reply_text(
        catalogue.get("obtain_results"), "IMI-000001", "", "jo@college.example", Family.RESULTS
    )
    assert "results release dates" in reply and "Reporting tab" in reply
