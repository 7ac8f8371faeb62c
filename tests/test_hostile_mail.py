"""Hostile mail cannot stall a worker: every email up to INBOUND_MAX_BYTES goes from bytes to decision
(parse, clean, classify) in well under the 1 s CPU budget (findings H1 and H2 of the security review)."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from bench.parse import BUDGET_SECONDS, hostile_emails, process
from tests.mailutil import post_email, ticket
from triage.classifier.cleaning import latest_reply
from triage.mail.parse import MAX_ADDRESS_FIELD, MAX_HEADER_FIELD, parse

MARGIN = 2  # each shape must take at most half the budget, so the budget holds on a slower or busier machine
SHAPES = hostile_emails()


def _cpu(func) -> float:  # type: ignore[no-untyped-def]
    start = time.process_time()
    func()
    return time.process_time() - start


@pytest.fixture(scope="module")
def classify(trained_model):  # type: ignore[no-untyped-def]
    """The session's trained model's decision function (classification is part of the budget)."""
    return trained_model[0].model.decide_one


@pytest.mark.parametrize("name", list(SHAPES))
def test_h1_h2_every_hostile_shape_is_decided_within_the_cpu_budget(name: str, classify) -> None:  # type: ignore[no-untyped-def]
    raw = SHAPES[name]
    assert len(raw) <= 10 * 1024 * 1024  # INBOUND_MAX_BYTES
    spent = _cpu(lambda: process(raw, classify))
    if (
        spent >= BUDGET_SECONDS / MARGIN
    ):  # a busy machine inflates CPU time too: the best of three runs decides
        spent = min(spent, *(_cpu(lambda: process(raw, classify)) for _ in range(2)))
    assert spent < BUDGET_SECONDS / MARGIN, f"{name}: {spent:.2f} s of CPU (best of three)"


def test_h1_quadratic_cleaning_shapes_clean_fast_and_keep_the_words() -> None:
    blank_lines = "a" + "\r\n" * 20000 + "b"
    assert _cpu(lambda: latest_reply(blank_lines)) < 0.1
    assert latest_reply(blank_lines) == "a"  # "b" sits past MAX_BODY_CHARS
    assert latest_reply("a" + "\r\n" * 5000 + "b") == "a\n\nb"
    on_on = "On " * 6000
    assert _cpu(lambda: latest_reply(on_on)) < 0.1
    assert latest_reply(on_on).startswith("On On")
    deep_quotes = ("> " * 200 + "old\n") * 40 + "new text"
    assert latest_reply(deep_quotes) == "new text"


def test_h2_long_headers_are_capped_before_parsing_and_keep_the_sender() -> None:
    long_name = parse(SHAPES["80 KB From display name"])
    assert long_name.from_address == "jo@college.example" and len(long_name.from_name) <= 200
    unquoted = parse(SHAPES["160 KB From display name"])
    assert unquoted.from_address == "jo@college.example"
    folded = parse(SHAPES["9 MB folded Subject"])
    assert folded.subject.startswith("word word") and len(folded.subject) <= 998
    assert folded.text.strip() == "body"
    html = parse(SHAPES["8 MB HTML-only body"])
    assert html.text.startswith("exam\nfrozen") and len(html.text) < 200_000
    assert MAX_ADDRESS_FIELD < MAX_HEADER_FIELD


def test_h2_many_header_fields_keep_the_first_ones() -> None:
    raw = (
        b"From: jo@college.example\r\nSubject: first\r\n"
        + b"X-Hop: relay\r\n" * 100_000
        + b"\r\nthe body\r\n"
    )
    email = parse(raw)
    assert email.subject == "first" and email.text.strip() == "the body"


def test_h2_boundaries_split_parts_like_the_standard_parser() -> None:
    raw = (
        b'From: jo@college.example\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nline one\r\n--b1x is not a boundary\r\n"
        b'--b1  \r\nContent-Type: application/pdf; name="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        b"JVBERi0x\r\n--b1--\r\nepilogue\r\n"
    )
    email = parse(raw)
    assert email.text.splitlines() == ["line one", "--b1x is not a boundary"]
    assert [(a.filename, a.data) for a in email.attachments] == [("a.pdf", b"%PDF-1")]


@pytest.mark.parametrize(
    "name",
    [
        "blank lines (a + CRLF*20000 + b)",
        "'On ' * 6000",
        "80 KB From display name",
        "160 KB From display name",
        "9 MB folded Subject",
        "8 MB HTML-only body",
    ],
)
def test_h1_h2_review_shapes_become_tickets_through_the_webhook(
    mail_app: Flask, api_token: str, name: str
) -> None:
    response = post_email(mail_app.test_client(), api_token, SHAPES[name])
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["status"] == "processed"
    message = ticket(mail_app, body["reference"]).messages[0]
    assert message.from_address == "jo@college.example" and len(message.clean_text) <= 20_000
