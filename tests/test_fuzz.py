"""Property-based fuzzing (hypothesis) of the email parser and the inbound webhook: never a crash or a 500."""

from __future__ import annotations

import time

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage.mail.parse import UnparseableEmail, parse

HEADER_NAMES = ["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Content-Type",
                "Content-Transfer-Encoding", "Auto-Submitted", "List-Id", "Return-Path", "X-Weird"]  # fmt: skip
CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "koi8-r", "x-unknown", "utf-16", "", "us-ascii\x00"]
TYPES = ["text/plain", "text/html", "multipart/mixed", "multipart/alternative", "message/rfc822",
         "application/octet-stream", "multipart/report; report-type=delivery-status", "text/x-odd"]  # fmt: skip
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@st.composite
def emails(draw: st.DrawFn) -> bytes:
    """Raw messages: real-looking headers with hostile values, odd MIME structure, odd charsets, random bytes."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(HEADER_NAMES))
        value = draw(st.one_of(text, st.sampled_from(["jo@centre.example", "<a@b>", "=?utf-8?q?=0D=0ABcc:_x@y?=",
                                                       "\"Evil\r\nBcc: x@y\" <e@x.example>", "a" * 5000])))  # fmt: skip
        lines.append(f"{name}: {value}".encode("utf-8", "surrogatepass"))
    boundary = draw(st.sampled_from(["b1", "", "==", "x" * 80]))
    ctype = draw(st.sampled_from(TYPES))
    lines.append(f'Content-Type: {ctype}; charset="{draw(st.sampled_from(CHARSETS))}"; boundary="{boundary}"'.encode())
    body = [b""]
    for _ in range(draw(st.integers(0, 30))):
        body.append(f"--{boundary}".encode())
        body.append(f"Content-Type: {draw(st.sampled_from(TYPES))}".encode())
        body.append(
            draw(
                st.sampled_from(
                    [b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable", b""]
                )
            )
        )
        body.append(b"")
        body.append(draw(st.binary(max_size=300)))
    body.append(draw(st.binary(max_size=500)))
    return b"\r\n".join(lines + body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(emails(), st.binary(max_size=3000)))
def test_parser_never_crashes_and_is_bounded(raw: bytes) -> None:
    start = time.perf_counter()
    try:
        email = parse(raw)
    except UnparseableEmail:
        return
    assert time.perf_counter() - start < 2.0
    for value in (email.subject, email.from_address, email.from_name, *email.headers.values()):
        assert "\n" not in value and "\r" not in value
    assert email.message_id.startswith("<")


def test_inbound_endpoint_never_answers_500(mail_app: Flask, api_token: str) -> None:
    client = mail_app.test_client()
    seen = {"n": 0}

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(raw=st.one_of(emails(), st.binary(max_size=2000)))
    def check(raw: bytes) -> None:
        seen["n"] += 1
        response = client.post("/api/v1/inbound", data=raw, headers={"Authorization": f"Bearer {api_token}",
                                                                      "Content-Type": "message/rfc822"})  # fmt: skip
        assert response.status_code in {202, 400}, (response.status_code, response.get_data(as_text=True)[:300])
        assert response.is_json

    check()
    assert seen["n"] >= 50
