"""Rendering a reply cannot fail or grow without bound (issue 25, review findings): quotations are
flattened past a depth, and the rendering caches are bounded by the text they hold."""

from __future__ import annotations

from flask import Flask

from tests import factories
from tests.mailutil import deliver, ticket
from tests.webutil import login, make_user, post_form
from triage.mail import compose
from triage.mail.bounded_cache import BoundedCache

NESTED_400 = "Hello\n\n" + "\n".join(">" * depth + f" level {depth}" for depth in range(1, 401))
ONE_LINE_400 = ">" * 400 + " the innermost words"


def test_quotes_nest_a_bounded_depth_and_keep_every_line() -> None:
    html = compose.html_body(NESTED_400, "t")
    assert html.count("<blockquote") == compose.MAX_QUOTE_DEPTH
    assert "level 1<" in html and "level 400" in html  # nothing dropped, deeper lines flattened
    assert "&gt;" not in html  # the markers past the bound are removed, not shown
    single = compose.html_body(ONE_LINE_400, "t")
    assert (
        single.count("<blockquote") == compose.MAX_QUOTE_DEPTH and "the innermost words" in single
    )


def test_a_bounded_cache_skips_long_keys_and_holds_at_most_its_characters() -> None:
    calls: list[str] = []

    def render(text: str) -> str:
        calls.append(text)
        return text.upper()

    cache = BoundedCache(render, max_chars=100, max_key=20)
    assert cache("short") == "SHORT" and cache("short") == "SHORT" and calls == ["short"]
    long_key = "x" * 21
    cache(long_key)
    cache(long_key)
    assert calls.count(long_key) == 2 and cache.size == 10  # never kept
    for i in range(20):
        cache(f"key number {i:02d}")  # 13 characters each, 26 with the value
    assert cache.size <= 100
    cache("short")
    assert calls.count("short") == 2  # the oldest went first


def test_rendering_replies_quoting_huge_emails_keeps_the_caches_small() -> None:
    compose._linked.cache_clear()
    compose._chunk_html.cache_clear()
    for reply in range(10):
        quoted = "\n".join(f"line {reply}-{i} " + "q" * 800 for i in range(10_000))  # ~8 MB
        text = compose.staff_reply_text(
            body="Please see below.",
            reference="IMI-000001",
            centre_name="Jo Bloggs",
            centre_address="jo@college.example",
            agent_name="Alex Agent",
            team_name="IMI Support",
            quoted_text=quoted,
        )
        compose.html_body(text, "t")
    assert compose._linked.size <= compose.MAX_CACHED_CHARS
    assert compose._chunk_html.size <= compose.MAX_CACHED_CHARS


def test_a_reply_on_a_ticket_with_400_nested_quotes_is_sent(smtp_app: Flask, smtp_server) -> None:  # type: ignore[no-untyped-def]
    make_user(smtp_app)
    with factories.session_of(smtp_app) as s:
        t = factories.ticket(s, subject="quotes", body=None)
        factories.inbound(s, t, body=NESTED_400)
    page = f"/tickets/{t.id}"
    client = smtp_app.test_client()
    login(client)
    answer = post_form(client, page, f"{page}/reply", {"body": "We have looked into this."})
    assert answer.status_code == 302
    assert client.get(answer.headers["Location"]).status_code == 200
    assert deliver(smtp_app) == 1
    [sent] = smtp_server[0].parsed()
    html = sent.get_body(("html",)).get_content()
    assert "We have looked into this." in html
    assert html.count("<blockquote") <= compose.MAX_QUOTE_DEPTH
    assert len(ticket(smtp_app, t.reference).messages) == 2
