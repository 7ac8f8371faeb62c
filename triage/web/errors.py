"""JSON errors for API routes: a message and the right status code, never an HTML page or a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON with a status code, optionally naming the offending field."""

    def __init__(self, status: int, message: str, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.retry_after = status, message, field, retry_after


def _json_error(
    status: int, message: str, field: str | None = None, retry_after: int | None = None
) -> ResponseReturnValue:
    body: dict[str, object] = {"error": message, "status": status}
    if field:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    if retry_after is None and status == 503:
        retry_after = 5
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _is_api() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Install the handlers."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> ResponseReturnValue:
        return _json_error(exc.status, exc.message, exc.field, exc.retry_after)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if not _is_api():
            return exc
        return _json_error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_down(exc: Exception) -> ResponseReturnValue:
        log.error("database unavailable: %s", exc)
        return _json_error(503, "database unavailable; retry later")
