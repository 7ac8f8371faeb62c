"""The REST API: listing, reading, changing and replying to tickets; errors as JSON; OpenAPI matches routes."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from flask import Flask

from app import create_app
from tests import factories
from tests.mailutil import count, deliver, make_email, post_email, ticket
from tests.webutil import make_user
from triage.config import ConfigError, Settings
from triage.helpdesk import tokens
from triage.orm import Ticket


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_list_get_change_reply_resolve(smtp_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    make_user(smtp_app)
    client = smtp_app.test_client()
    with factories.session_of(smtp_app) as s:
        t = factories.ticket(s, subject="question", body="please send a copy of invoice 4471")
        api_token = factories.api_token(s)
    ref = t.reference
    listing = client.get(
        "/api/v1/tickets?status=open&per_page=5", headers=_auth(api_token)
    ).get_json()
    assert listing["total"] == 1 and listing["tickets"][0]["reference"] == ref
    one = client.get(f"/api/v1/tickets/{t.id}", headers=_auth(api_token)).get_json()
    assert one["messages"][0]["direction"] == "inbound"
    changed = client.patch(
        f"/api/v1/tickets/{t.id}",
        json={"category": "other", "queue": "centre-admin", "assignee": "agent@imi.test"},
        headers=_auth(api_token),
    )
    assert changed.status_code == 200
    assert (
        changed.get_json()["confirmed_category"] == "other"
        and changed.get_json()["queue"] == "centre-admin"
    )
    reply = client.post(
        f"/api/v1/tickets/{t.id}/replies",
        json={"body": "We have sent the invoice."},
        headers=_auth(api_token),
    )
    assert reply.status_code == 201
    resolved = client.patch(
        f"/api/v1/tickets/{t.id}", json={"status": "resolved"}, headers=_auth(api_token)
    )
    assert resolved.get_json()["status"] == "resolved"
    deliver(smtp_app)
    assert (
        "We have sent the invoice."
        in smtp_server[0].parsed()[-1].get_body(("plain",)).get_content()
    )
    queues = client.get("/api/v1/queues", headers=_auth(api_token)).get_json()["queues"]
    assert queues[0]["slug"] == "triage"


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "field"),
    [
        ("get", "/api/v1/tickets?status=bogus", None, 400, "status"),
        ("get", "/api/v1/tickets?per_page=0", None, 400, "per_page"),
        ("get", "/api/v1/tickets?category=nope", None, 400, "category"),
        ("get", "/api/v1/tickets/999999", None, 404, None),
        ("patch", "/api/v1/tickets/{id}", {"category": "nope"}, 400, "category"),
        ("patch", "/api/v1/tickets/{id}", {"colour": "red"}, 400, "colour"),
        ("patch", "/api/v1/tickets/{id}", {"status": "resolved"}, 409, "status"),
        ("patch", "/api/v1/tickets/{id}", {"queue": 5}, 400, "queue"),
        ("patch", "/api/v1/tickets/{id}", [], 400, None),
        ("post", "/api/v1/tickets/{id}/replies", {"body": ""}, 400, "body"),
        ("delete", "/api/v1/tickets/{id}", None, 405, None),
        # ids past what an INTEGER column holds name nothing (found by schemathesis: they were a 500)
        ("get", "/api/v1/tickets/9223372036854775808", None, 404, None),
        ("patch", "/api/v1/tickets/2147483648", {"status": "open"}, 404, None),
        ("post", "/api/v1/tickets/99999999999999999999/replies", {"body": "hello"}, 404, None),
        # NUL cannot be stored in PostgreSQL text (found by schemathesis on PostgreSQL: a 500)
        ("get", "/api/v1/tickets?q=exam%00frozen", None, 400, None),
        ("get", "/api/v1/tickets?queue=tech%00nical", None, 400, None),
        ("patch", "/api/v1/tickets/{id}", {"assignee": "agent\x00@imi.test"}, 400, None),
        # JSON may escape a lone surrogate; no database can store one (found by schemathesis: it was a 500)
        ("post", "/api/v1/tickets/{id}/replies", {"body": "thanks \ud800"}, 400, None),
        ("patch", "/api/v1/tickets/{id}", {"assignee": "\udfff@imi.test"}, 400, None),
        (
            "post",
            "/api/v1/tickets",
            {"from": "a@b.example", "subject": "x\ud800", "body": "hi"},
            400,
            None,
        ),
    ],
)
def test_errors_are_json_with_the_right_code(
    app: Flask, method: str, url: str, body: object, status: int, field: str | None
) -> None:
    client = app.test_client()
    with factories.session_of(app) as s:
        t = factories.ticket(s)
        api_token = factories.api_token(s)
    url = url.replace("{id}", str(t.id))
    response = client.open(url, method=method.upper(), json=body, headers=_auth(api_token))
    assert response.status_code == status, response.get_data(as_text=True)
    data = response.get_json()
    assert isinstance(data, dict) and data["error"]
    if field:
        assert data.get("field") == field


def test_openapi_document_matches_the_routes(app: Flask) -> None:
    with factories.session_of(app) as s:
        api_token = factories.api_token(s)
    spec = app.test_client().get("/api/v1/openapi.json", headers=_auth(api_token)).get_json()
    documented = {
        (re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
        for path, ops in spec["paths"].items()
        for method in ops
    }
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:int:)?(\w+)>", r"<\1>", rule.rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert "401" in op["responses"], path
            for response in op["responses"].values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if "$ref" in schema:
                    assert schema["$ref"].split("/")[-1] in spec["components"]["schemas"]


def test_responses_follow_the_documented_schemas(app: Flask) -> None:
    """Each documented JSON response carries its schema's required fields."""
    with factories.session_of(app) as s:
        api_token = factories.api_token(s)
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json", headers=_auth(api_token)).get_json()
    schemas = spec["components"]["schemas"]
    accepted = post_email(client, api_token, make_email()).get_json()
    assert set(schemas["Accepted"]["required"]) <= set(accepted)
    ticket_id = ticket(app, accepted["reference"]).id
    one = client.get(f"/api/v1/tickets/{ticket_id}", headers=_auth(api_token)).get_json()
    assert set(schemas["Ticket"]["required"]) <= set(one)
    assert all(set(schemas["Message"]["required"]) <= set(m) for m in one["messages"])
    assert set(schemas["TicketList"]["required"]) <= set(
        client.get("/api/v1/tickets", headers=_auth(api_token)).get_json()
    )
    err = client.get("/api/v1/tickets/0", headers=_auth(api_token)).get_json()
    assert set(schemas["Error"]["required"]) <= set(err)


def _fresh_rate_window() -> None:
    """Wait out the last seconds of a rate window so a test's requests all fall in one window."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


def test_api_token_rate_limit_is_shared_by_processes_and_per_token(
    app_config: dict[str, Any],
) -> None:
    config = {**app_config, "API_RATE_PER_MINUTE": 3}
    first, second = create_app(config), create_app(config)  # two web processes sharing one database
    try:
        with first.extensions["triage.sessions"]() as s:
            _row, busy = tokens.create_token(s, "gateway")
            _row, other = tokens.create_token(s, "form")
            s.commit()
        _fresh_rate_window()
        a, b = first.test_client(), second.test_client()
        statuses = [
            post_email(
                c, busy, make_email(subject=f"q{i}", body="where is my certificate")
            ).status_code
            for i, c in enumerate([a, b, a, b])
        ]
        assert statuses == [202, 202, 202, 429]
        refused = b.get("/api/v1/tickets", headers=_auth(busy))
        assert (
            refused.status_code == 429
            and "at most 3 requests a minute" in refused.get_json()["error"]
        )
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert (
            a.get("/api/v1/tickets", headers=_auth(other)).status_code == 200
        )  # another token has its own count
        assert count(first, Ticket) == 3  # the refused email was not stored
    finally:
        for application in (first, second):
            application.extensions["triage.engine"].dispose()


def test_api_rate_limit_setting_is_checked() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("API_RATE_PER_MINUTE", "-1")
        with pytest.raises(ConfigError, match="API_RATE_PER_MINUTE"):
            Settings.from_env()
        mp.setenv("API_RATE_PER_MINUTE", "lots")
        with pytest.raises(ConfigError, match="whole number"):
            Settings.from_env()


def test_search_text_is_literal(app: Flask) -> None:
    """%, _ and backslash are searched for as themselves, not as LIKE wildcards."""
    client = app.test_client()
    with factories.session_of(app) as s:
        factories.ticket(s, subject="exam frozen at 50% on pc_3")
        factories.ticket(s, subject="results day question", body="when are results out")
        api_token = factories.api_token(s)

    def total(q: str) -> int:
        return client.get(
            "/api/v1/tickets", query_string={"q": q}, headers=_auth(api_token)
        ).get_json()["total"]

    assert total("%") == 1 and total("50%") == 1 and total("pc_3") == 1
    assert total("_") == 1 and total("\\") == 0 and total("p%3") == 0
    assert total("results") == 1 and total("") == 2
