"""Bearer-token authentication and token scopes for the API, the inbound webhook and the metrics endpoints."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from triage.helpdesk import tokens
from triage.models import ApiToken
from triage.web import db, settings
from triage.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])
ANY_SCOPE = "any"  # any live token (the OpenAPI document)


def bearer_token(scope: str) -> ApiToken:
    """The live token in `Authorization: Bearer ...` (401), within its rate limit (429), holding `scope` (403)."""
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
        raise ApiError(429, f"rate limit: at most {limit} requests a minute for this token", retry_after=retry_after)
    if scope != ANY_SCOPE and not tokens.has_scope(token, scope):
        raise ApiError(403, f"this token lacks the {scope!r} scope (it has: {', '.join(token.scope_list)})")
    g.api_token = token
    return token


def token_required(func: F | None = None, *, scope: str | None = None) -> Any:
    """Require a live bearer token with a scope: `scope`, else `read` for GET and `write` for other methods.

    Use bare (`@token_required`) or with a scope (`@token_required(scope="inbound")`).
    """
    if func is None:
        return lambda f: token_required(f, scope=scope)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bearer_token(scope or ("read" if request.method in {"GET", "HEAD"} else "write"))
        return func(*args, **kwargs)

    return wrapper
