"""Bearer-token authentication and token scopes for the API, the inbound webhook and the metrics
endpoints."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar, overload

from flask import g, request

from triage.helpdesk import tokens
from triage.web import settings, statement_db
from triage.web.errors import ApiError

P = ParamSpec("P")
R = TypeVar("R")
ANY_SCOPE = "any"  # any live token (the OpenAPI document)


def bearer_token(scope: str | tuple[str, ...]) -> tokens.TokenUse:
    """The live token in `Authorization: Bearer ...` (401), within its rate limit (429), holding
    `scope` (403).

    `scope` may be a tuple: any one of its scopes will do. The check and the count are one
    statement, committed on its own (in the request's statement session, so the request's own writes
    keep their transaction).
    """
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
    presented = value.strip()
    token = None
    if tokens.well_formed(presented):  # anything else is refused without a database round trip
        session = statement_db()
        token = tokens.use_token(session, presented)
        session.commit()
    if token is None:
        raise ApiError(401, "invalid or revoked API token")
    limit = settings().api_rate_per_minute
    if limit and token.count > limit:
        raise ApiError(
            429,
            f"rate limit: at most {limit} requests a minute for this token",
            retry_after=token.retry_after,
        )
    needed = (scope,) if isinstance(scope, str) else scope
    if ANY_SCOPE not in needed and not any(tokens.has_scope(token, s) for s in needed):
        wanted = " or ".join(repr(s) for s in needed)
        raise ApiError(
            403, f"this token lacks the {wanted} scope (it has: {', '.join(token.scope_list)})"
        )
    g.api_token = token
    return token


@overload
def token_required(
    func: Callable[P, R], *, scope: str | tuple[str, ...] | None = None
) -> Callable[P, R]: ...


@overload
def token_required(
    func: None = None, *, scope: str | tuple[str, ...] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def token_required(
    func: Callable[P, R] | None = None, *, scope: str | tuple[str, ...] | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a live bearer token with a scope: `scope`, else `read` for GET and `write` for other
    methods.

    Use bare (`@token_required`) or with a scope (`@token_required(scope="inbound")`).
    """
    if func is None:
        return lambda f: token_required(f, scope=scope)

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        bearer_token(scope or ("read" if request.method in {"GET", "HEAD"} else "write"))
        return func(*args, **kwargs)

    return wrapper
