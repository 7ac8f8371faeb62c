"""Request ids, JSON logs with ticket references, and the Prometheus metrics endpoint."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from tests.mailutil import make_email, post_email
from triage.web.observability import JsonLines


def test_metrics_need_a_token_and_report_mail_and_decisions(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    post_email(client, api_token, make_email())
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers={"Authorization": f"Bearer {api_token}"}).get_data(as_text=True)
    assert 'triage_emails_received_total{source="webhook"} 1.0' in text
    assert 'triage_decisions_total{action="auto_reply",category="exam_frozen"} 1.0' in text
    assert 'triage_outbox{status="pending"} 1.0' in text
    assert "triage_http_request_seconds_bucket" in text


def test_request_id_is_echoed_or_made(mail_app: Flask) -> None:
    client = mail_app.test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id <script>" * 10}).headers["X-Request-ID"]
    assert len(made) == 32 and "\n" not in made


def test_json_log_lines_carry_request_id_and_reference(
    mail_app: Flask, api_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="triage.requests"):
        body = post_email(mail_app.test_client(), api_token, make_email()).get_json()
    record = next(
        r for r in caplog.records if r.name == "triage.requests" and getattr(r, "path", "") == "/api/v1/inbound"
    )
    line = json.loads(JsonLines().format(record))
    assert line["reference"] == body["reference"] and line["status"] == 202 and line["request_id"]
    assert "password" not in line and api_token not in json.dumps(line)
