"""GET /healthz: ok, degraded or unavailable for anyone; database, model, outbox and delivery
details with a `metrics` token."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import timedelta

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from triage import health
from triage.database import disk_full
from triage.mail import channels
from triage.web import db, settings
from triage.web.auth import bearer_token
from triage.web.errors import ApiError

bp = Blueprint("health", __name__)

# a token seen with the metrics scope this recently is believed while the database is down
TOKEN_MEMORY_SECONDS = 900
_seen_tokens: dict[str, float] = {}  # sha256 of the header -> time.monotonic() of its last check
_seen_lock = threading.Lock()


def _header_key() -> str:
    return hashlib.sha256(request.headers.get("Authorization", "").encode()).hexdigest()


def _check_metrics_token() -> None:
    """The bearer token must hold `metrics` (401/403); with the database down, a token that did
    recently is believed, anything else is 503."""
    key = _header_key()
    try:
        bearer_token("metrics")
    except SQLAlchemyError:
        with _seen_lock:
            seen = _seen_tokens.get(key)
        if seen is None or time.monotonic() - seen > TOKEN_MEMORY_SECONDS:
            raise ApiError(503, "database unavailable; the token cannot be checked") from None
        return
    with _seen_lock:
        _seen_tokens[key] = time.monotonic()
        if len(_seen_tokens) > 1000:  # a handful of monitors; never grows without bound
            _seen_tokens.pop(next(iter(_seen_tokens)))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Report service health: 503 when the database or the model is unavailable, 200 with
    `degraded` when mail is not going out as it should.

    Load balancers get only {"status": "ok" | "degraded" | "unavailable"}; the model version, the
    outbox backlog and what is wrong are shown to a bearer token with the `metrics` scope.
    """
    detailed = "Authorization" in request.headers
    if detailed:
        _check_metrics_token()
    current = settings()
    try:
        report = health.check(
            db(),
            current.models_dir,
            channels=channels.load(current),
            alert_minutes=current.channel_alert_minutes,
            lease=timedelta(seconds=current.outbox_lease_seconds),
            backlog_alert=timedelta(seconds=current.outbox_backlog_alert_seconds),
        )
    except SQLAlchemyError as exc:
        db().rollback()
        error = "disk full" if disk_full(exc) else type(exc).__name__
        body = {
            "status": "unavailable",
            "database": {"ok": False, "error": error},
            "model": None,
            "problems": [f"database: {error}"],
        }
        return jsonify(body if detailed else {"status": "unavailable"}), 503
    if not report["serving"]:
        return jsonify(report if detailed else {"status": "unavailable"}), 503
    return jsonify(report if detailed else {"status": report["status"]}), 200
