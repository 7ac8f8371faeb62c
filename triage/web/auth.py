"""Bearer-token authentication for the API and the inbound webhook."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from triage.helpdesk import tokens
from triage.web import db, settings
from triage.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def token_required(func: F) -> F:
    """Require `Authorization: Bearer <token>` naming a live API token (401), within its rate limit (429)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
        token = tokens.authenticate(db(), value.strip())
        if token is None:
            db().rollback()
            raise ApiError(401, "invalid or revoked API token")
        count, retry_after = tokens.count_request(db(), token)
        db().commit()
        limit = settings().api_rate_per_minute
        if limit and count > limit:
            raise ApiError(
                429, f"rate limit: at most {limit} requests a minute for this token", retry_after=retry_after
            )
        g.api_token = token
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
