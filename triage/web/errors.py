"""JSON errors for API routes: a message and the right status code, never an HTML page or a
traceback."""

from __future__ import annotations

import logging

from flask import Flask, flash, jsonify, make_response, redirect, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from triage.database import disk_full
from triage.outage import describe_database_error

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON with a status code, optionally naming the offending field."""

    def __init__(
        self, status: int, message: str, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.retry_after = (
            status,
            message,
            field,
            retry_after,
        )


def _refuse_nul_in_fields() -> ResponseReturnValue | None:
    """Query and form fields with a NUL character are refused (PostgreSQL text cannot hold one)."""
    fields = [*request.args.values()]
    # API forms (mail providers' webhooks) are read raw, as bytes, by their own routes
    if not _is_api() and request.mimetype in {
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }:
        fields += request.form.values()
    if any("\x00" in value for value in fields):
        message = "a query or form field holds a NUL character"
        return _json_error(400, message) if _is_api() else (message, 400)
    return None


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


def _form_error(message: str) -> ResponseReturnValue:
    """A bad parameter on a staff page: a posted form goes back to its page with the error; else
    a 400."""
    rule = request.url_rule
    if request.method == "POST" and rule is not None and "GET" in (rule.methods or ()):
        flash(message, "error")
        return redirect(request.path)
    return message, 400, {"Content-Type": "text/plain; charset=utf-8"}


# what a person is told on a staff page, by status; the framework's own wording otherwise
_PAGE_WORDS = {
    403: (
        "Not allowed",
        "Your account cannot open this page. An administrator can change your role.",
    ),
    404: ("Page not found", "There is nothing at this address. The link may be old or mistyped."),
    405: ("Not possible here", "This page cannot be used that way. Go back and try again."),
    500: (
        "Something went wrong",
        "The page could not be shown because of a fault on our side. It has been logged; "
        "try again in a moment.",
    ),
}


def _error_page(exc: HTTPException) -> ResponseReturnValue:
    """A styled page for an HTTP error on a staff page (never the framework's bare page)."""
    status = exc.code or 500
    title, message = _PAGE_WORDS.get(status, (exc.name, exc.description or exc.name))
    response = make_response(
        render_template("error.html", status=status, title=title, message=message), status
    )
    for name, value in exc.get_headers():  # such as Allow on a 405
        if name != "Content-Type":
            response.headers[name] = value
    return response


def _is_api() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Install the handlers."""
    app.before_request(_refuse_nul_in_fields)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> ResponseReturnValue:
        if exc.status == 400 and exc.field and not _is_api():
            return _form_error(exc.message)
        return _json_error(exc.status, exc.message, exc.field, exc.retry_after)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if not _is_api():
            return _error_page(exc)
        return _json_error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_down(exc: Exception) -> ResponseReturnValue:
        reason = describe_database_error(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
        if disk_full(exc):
            log.error("database disk full: %s", reason)
            return _json_error(
                503, "the database's disk is full: nothing can be stored; retry later"
            )
        log.error("database unavailable: %s", reason)
        return _json_error(503, "database unavailable; retry later")
