"""Request ids, JSON logs with ticket references, and the Prometheus metrics endpoint."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bench.common import wait_for_http
from tests import factories
from tests.conftest import free_port
from tests.mailutil import make_email, post_email
from triage.web.observability import JsonLines

REPO = Path(__file__).resolve().parent.parent


def test_metrics_need_a_token_and_report_mail_and_decisions(
    mail_app: Flask, api_token: str
) -> None:
    client = mail_app.test_client()
    post_email(client, api_token, make_email())
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers={"Authorization": f"Bearer {api_token}"}).get_data(
        as_text=True
    )
    assert 'triage_emails_received_total{source="webhook"} 1.0' in text
    assert 'triage_decisions_total{action="auto_reply",category="exam_frozen"} 1.0' in text
    assert 'triage_outbox{status="pending"} 1.0' in text
    assert 'triage_inbound{state="processed"} 1.0' in text
    assert "triage_http_request_seconds_bucket" in text


def test_request_id_is_echoed_or_made(app: Flask) -> None:
    client = app.test_client()
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    made = client.get("/healthz", headers={"X-Request-ID": "bad id <script>" * 10}).headers[
        "X-Request-ID"
    ]
    assert len(made) == 32 and "\n" not in made


def test_json_log_lines_carry_request_id_and_reference(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with factories.session_of(app) as s:
        api_token = factories.api_token(s)
    payload = {
        "from": "jo@college.example",
        "subject": "frozen",
        "body": "the exam froze on question 3",
    }
    with caplog.at_level(
        logging.INFO, logger="triage.requests"
    ):  # the JSON API answers with the reference
        body = (
            app.test_client()
            .post("/api/v1/tickets", json=payload, headers={"Authorization": f"Bearer {api_token}"})
            .get_json()
        )
    record = next(
        r
        for r in caplog.records
        if r.name == "triage.requests" and getattr(r, "path", "") == "/api/v1/tickets"
    )
    line = json.loads(JsonLines().format(record))
    assert line["reference"] == body["reference"] and line["status"] == 202 and line["request_id"]
    assert "password" not in line and api_token not in json.dumps(line)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_gunicorn_workers_share_one_latency_histogram(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    """Under the production gunicorn config, any worker's /metrics counts the requests every worker served."""
    from triage import create_app
    from triage.helpdesk import tokens

    app = create_app(app_config)  # migrates the database the server will use
    with app.extensions["triage.sessions"]() as s:
        _row, token = tokens.create_token(s, "metrics")
        s.commit()
    app.extensions["triage.engine"].dispose()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": app_config["DATABASE_URL"],
        "SECRET_KEY": app_config["SECRET_KEY"],
        "TRIAGE_INSTANCE_PATH": str(app_config["INSTANCE_PATH"]),
        "MODELS_DIR": str(app_config["MODELS_DIR"]),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "WEB_CONCURRENCY": "3",
        "BIND": f"127.0.0.1:{port}",
    }
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "counter_999.db").write_bytes(
        b"stale"
    )  # left by an earlier server: must be cleared
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:triage.web.gunicorn_conf", "app:app"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_http(port, proc)

        def healthz(_: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            conn.getresponse().read()

        def healthz_total() -> float:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
            text = conn.getresponse().read().decode()
            counts = re.findall(
                r'triage_http_request_seconds_count\{endpoint="/healthz".*?\} (\S+)', text
            )
            return sum(float(c) for c in counts)

        before = (
            healthz_total()
        )  # the start-up probes (one, or more when the machine is slow to start gunicorn)
        assert before >= 1
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(healthz, range(60)))
        # whichever worker answers, it reports every health check any worker served
        totals = {healthz_total() for _ in range(6)}
        assert totals == {before + 60}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not (tmp_path / "prom" / "counter_999.db").exists()


def test_no_model_is_logged_when_it_starts_and_again_when_one_is_active(
    model_app_config: dict[str, Any],
    trained_model: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from triage import create_app
    from triage.classifier import registry
    from triage.outage import _WATCHES

    _WATCHES.clear()  # this process's watches start afresh
    app = create_app({**model_app_config, "MODEL_CHECK_INTERVAL": 0.0})
    with factories.session_of(app) as s:
        token = factories.api_token(s)
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="triage"):
        for n in range(4):  # four batches, no model: one line when it starts, one warning after
            raw = make_email(subject=f"Question {n}", message_id=f"<nomodel{n}@centre.example>")
            assert post_email(client, token, raw).status_code == 202
        with factories.session_of(app) as s:
            registry.register(s, trained_model[0].model, "test", True, "")
            registry.activate(s, trained_model[0].model.version, "test")
        assert (
            post_email(client, token, make_email(message_id="<m@centre.example>")).status_code
            == 202
        )
    lines = [r for r in caplog.records if "no usable model" in r.getMessage()]
    assert [r.levelname for r in lines] == ["INFO", "WARNING", "WARNING"], [
        r.getMessage() for r in lines
    ]
    assert "no active model; run: flask --app app triage train" in lines[0].getMessage()
    assert "works again" in lines[2].getMessage()
