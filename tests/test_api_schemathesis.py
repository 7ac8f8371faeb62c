"""Schemathesis against our own OpenAPI document: generated requests to every API operation never get a
500, and every response matches the documented status codes, content type and schema.

It drives schemathesis's hypothesis strategies directly (one property test per operation), in-process
over WSGI with a valid token, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories
from tests.mailutil import make_email
from tests.test_fuzz import emails

EXAMPLES_PER_OPERATION = 25
# the webhook's body: hostile MIME from the fuzz strategy, random bytes, and well-formed mail
_line = st.text(
    st.characters(exclude_characters="\r\n", exclude_categories=("Cs", "Cc")), max_size=80
)
schemathesis.openapi.media_type(
    "message/rfc822",
    st.one_of(
        emails(),
        st.binary(max_size=2000),
        st.builds(
            lambda s, b: make_email(subject=s, body=b), _line, st.text(min_size=1, max_size=400)
        ),
    ),
)


def test_every_operation_keeps_to_its_documented_contract(app: Flask) -> None:
    with factories.session_of(app) as s:
        factories.ticket(s)  # one ticket, so generated ids can find one
        api_token = factories.api_token(s)
    auth = {"Authorization": f"Bearer {api_token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    calls: dict[str, int] = {}
    for operation in operations:
        _exercise(operation, auth, calls)
    assert set(calls) == {op.label for op in operations}
    assert sum(calls.values()) >= len(operations) * 3


def _exercise(operation: Any, auth: dict[str, str], calls: dict[str, int]) -> None:
    """Property test of one operation: no 5xx, documented status codes, content types and schemas."""
    # "schema-valid data must be accepted" does not hold here: an email body has no JSON Schema, and a
    # queue or category must name one that exists (400 otherwise), which a static schema cannot say
    lenient = [schemathesis.checks.positive_data_acceptance]

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        calls[operation.label] = calls.get(operation.label, 0) + 1
        case.call_and_validate(headers=auth, excluded_checks=lenient)

    check()
