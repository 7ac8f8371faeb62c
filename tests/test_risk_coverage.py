"""Evaluation that shows risk: per-writer precision, the risk-coverage table and the curve on the Models page."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.webutil import login, make_user
from triage.classifier.decision import AUTO_REPLY, TRIAGE, Decision
from triage.classifier.evaluation import evaluate, format_report, risk_coverage
from triage.web import charts


def _d(category: str, confidence: float, action: str = AUTO_REPLY, reason: str = "") -> Decision:
    return Decision(category, confidence, 0.5, action, "triage", [], reason)


TRUTH = ["extra_time", "extra_time", "candidate_absent", "other", "extra_time", "other"]
DECISIONS = [
    _d("extra_time", 0.99),
    _d("extra_time", 0.95),
    _d("extra_time", 0.9),  # wrong, answered
    _d("extra_time", 0.6, TRIAGE),  # wrong, held back by the threshold
    _d("extra_time", 0.5, TRIAGE),
    _d("other", 0.4, TRIAGE, reason="thanks only"),
]


def test_risk_coverage_answers_in_order_of_confidence() -> None:
    curve = risk_coverage(TRUTH, DECISIONS)
    assert [p["answered"] for p in curve] == [1, 2, 3, 4, 5]
    assert [round(p["coverage"], 2) for p in curve] == [0.25, 0.5, 0.5, 0.5, 0.75]
    assert [round(p["risk"], 2) for p in curve] == [0.0, 0.0, 0.33, 0.5, 0.4]
    assert curve[2]["threshold"] == 0.9


def test_report_has_precision_per_writer_and_a_risk_table() -> None:
    report = evaluate(TRUTH, DECISIONS, ["w1", "w1", "w1", "w2", "w2", "w2"])
    assert report["per_writer"]["w1"] == {
        "n": 3,
        "auto_replied": 3,
        "wrong": 1,
        "precision": 2 / 3,
        "coverage": 2 / 3,
    }
    assert report["per_writer"]["w2"]["precision"] is None and report["held_for_staff"] == 1
    text = format_report(report)
    assert (
        "writer" in text
        and "risk-coverage" in text
        and "operating point: coverage 0.500 at risk 0.333" in text
    )
    assert evaluate(TRUTH, DECISIONS)["per_writer"] == {}


def test_risk_coverage_chart_draws_the_curve_and_the_operating_point() -> None:
    svg = charts.risk_coverage(risk_coverage(TRUTH, DECISIONS), (0.5, 1 / 3))
    assert svg.startswith("<svg") and "<polyline" in svg and svg.count("<circle") == 6
    assert "operating point: coverage 50.0%" in svg
    assert "No risk-coverage" in charts.risk_coverage([], None)


def test_models_page_shows_the_risk_coverage_curve(app: Flask, app_config: dict[str, Any]) -> None:
    from triage.orm import ModelVersion

    report = evaluate(TRUTH, DECISIONS)
    with app.extensions["triage.sessions"]() as s:
        s.add(
            ModelVersion(
                version="vcurve",
                status="active",
                data_sha256="0" * 64,
                sklearn_version="x",
                metrics={"test": report},
                trained_by="test",
                gate_passed=True,
                gate_reason="",
            )
        )
        s.commit()
    make_user(app, "boss@imi.test", "admin")
    client = app.test_client()
    login(client, "boss@imi.test")
    html = client.get("/admin/models").get_data(as_text=True)
    assert "Risk and coverage of the active model (vcurve)" in html
    assert 'aria-label="Risk-coverage curve"' in html and "<polyline" in html
