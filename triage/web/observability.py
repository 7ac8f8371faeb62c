"""Request ids, JSON-lines access logs with the ticket reference, request timing, and GET
/metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Blueprint, Flask, Response, g, request
from flask.typing import ResponseReturnValue

from triage import metrics
from triage.logs import scrub
from triage.web import session_factory
from triage.web.auth import token_required

bp = Blueprint("observability", __name__)
log = logging.getLogger("triage.requests")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonLines(logging.Formatter):
    """One JSON object per log line, carrying request id and ticket reference when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON."""
        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key in ("request_id", "reference", "method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send the triage loggers to stderr as JSON lines (production)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("triage")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def init_app(app: Flask) -> None:
    """Install the request hooks and the metrics route."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        duration = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUEST_LATENCY.labels(endpoint, request.method, str(response.status_code)).observe(
            duration
        )
        response.headers["X-Request-ID"] = g.get("request_id", "")
        reference = (
            (response.get_json(silent=True) or {}).get("reference") if response.is_json else None
        )
        extra = {
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(duration * 1000, 1),
        }
        if reference:
            extra["reference"] = reference
        log.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            response.status_code,
            extra["duration_ms"],
            extra=extra,
        )
        return response

    app.register_blueprint(bp)


@bp.get("/metrics")
@token_required(scope="metrics")
def metrics_endpoint() -> ResponseReturnValue:
    """Prometheus exposition (bearer token, like the API)."""
    return Response(metrics.render(session_factory()), mimetype="text/plain; version=0.0.4")
