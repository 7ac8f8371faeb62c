"""GET /healthz: database reachability, active model version and outbox backlog."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from triage import health
from triage.web import db, settings

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Report service health; 503 when the database or the model is unavailable."""
    try:
        report = health.check(db(), settings().models_dir)
    except SQLAlchemyError as exc:
        db().rollback()
        body = {"status": "unavailable", "database": {"ok": False, "error": type(exc).__name__}, "model": None}
        return jsonify(body), 503
    return jsonify(report), 200 if report["status"] == "ok" else 503
