"""Mail providers' inbound webhooks (Mailgun, SendGrid Inbound Parse, Postmark), posted with the
payload shapes each provider documents; each provider's own authentication (Mailgun's signed
timestamp and token, basic auth) must hold, or nothing is stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests import factories
from tests.mailutil import count, make_email, process_all
from triage import create_app
from triage.mail import providers
from triage.mail.providers import Provider
from triage.orm import InboundEmail, Ticket, WebhookToken
from triage.states import InboundSource

SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
USER, PASSWORD = "inbound", "s3cret-" + "x" * 24


@pytest.fixture
def provider_app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """The app with all three providers' webhooks enabled."""
    application = create_app(
        {
            **app_config,
            "MAILGUN_SIGNING_KEY": SIGNING_KEY,
            "SENDGRID_INBOUND_USER": USER,
            "SENDGRID_INBOUND_PASSWORD": PASSWORD,
            "POSTMARK_INBOUND_USER": USER,
            "POSTMARK_INBOUND_PASSWORD": PASSWORD,
            "INBOUND_MAX_BYTES": 256 * 1024,
        }
    )
    yield application
    application.extensions["triage.engine"].dispose()


# --- payloads as the providers document them -------------------------------------------------


def multipart(fields: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of plain fields (no file names), as the providers post them."""
    boundary = "----provider" + secrets.token_hex(8)
    parts = [
        b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (boundary.encode(), name.encode(), value)
        for name, value in fields
    ]
    body = b"".join(parts) + b"--%s--\r\n" % boundary.encode()
    return body, f"multipart/form-data; boundary={boundary}"


def urlencoded(fields: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """An application/x-www-form-urlencoded body (Mailgun's choice when there is no attachment)."""
    from urllib.parse import quote_from_bytes

    body = "&".join(f"{name}={quote_from_bytes(value, safe='')}" for name, value in fields)
    return body.encode(), "application/x-www-form-urlencoded"


def mailgun_signature(timestamp: str, token: str, key: str = SIGNING_KEY) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def mailgun_fields(
    raw: bytes, timestamp: str | None = None, token: str | None = None, key: str = SIGNING_KEY
) -> list[tuple[str, bytes]]:
    """Mailgun's forward() to a URL ending in "mime": envelope fields, the raw message, and the
    signature fields (timestamp, a 50-character token, hex HMAC-SHA256)."""
    timestamp = timestamp or str(int(time.time()))
    token = token or secrets.token_hex(25)
    return [
        ("recipient", b"support@imi-awards.example"),
        ("sender", b"exams@centre.example"),
        ("from", b"Exams Officer <exams@centre.example>"),
        ("subject", b"Candidate cannot log in"),
        ("body-mime", raw),
        ("timestamp", timestamp.encode()),
        ("token", token.encode()),
        ("signature", mailgun_signature(timestamp, token, key).encode()),
    ]


def sendgrid_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """SendGrid Inbound Parse with "POST the raw, full MIME message": the message in `email`."""
    return [
        ("dkim", b"{@centre.example : pass}"),
        ("email", raw),
        ("to", b"support@imi-awards.example"),
        ("from", b"Exams Officer <exams@centre.example>"),
        ("subject", b"Candidate cannot log in"),
        ("sender_ip", b"192.0.2.10"),
        ("spam_report", b"Spam detection software ... 0.0 points"),
        ("envelope", b'{"to":["support@imi-awards.example"],"from":"exams@centre.example"}'),
        ("charsets", b'{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}'),
        ("SPF", b"pass"),
        ("spam_score", b"0.011"),
    ]


def postmark_payload(raw: str) -> dict[str, Any]:
    """Postmark's inbound webhook JSON with "Include raw email content in JSON payload" on."""
    return {
        "FromName": "Exams Officer",
        "MessageStream": "inbound",
        "From": "exams@centre.example",
        "FromFull": {"Email": "exams@centre.example", "Name": "Exams Officer", "MailboxHash": ""},
        "To": "support@imi-awards.example",
        "ToFull": [{"Email": "support@imi-awards.example", "Name": "", "MailboxHash": ""}],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": "support@imi-awards.example",
        "Subject": "Candidate cannot log in",
        "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": "Mon, 7 Dec 2026 10:00:00 +0000",
        "TextBody": "A candidate cannot log in.",
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Tag": "",
        "Headers": [{"Name": "X-Spam-Status", "Value": "No"}],
        "Attachments": [],
        "RawEmail": raw,
    }


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def post(client: FlaskClient, path: str, body_and_type: tuple[bytes, str], **headers: str) -> Any:
    body, content_type = body_and_type
    return client.post(path, data=body, headers={"Content-Type": content_type, **headers})


def stored(app: Flask) -> list[bytes]:
    with factories.session_of(app) as s:
        return list(s.scalars(select(InboundEmail.raw).order_by(InboundEmail.id)))


# --- Mailgun ----------------------------------------------------------------------------------


def test_mailgun_raw_mime_is_stored_as_the_webhook_stores_it(provider_app: Flask) -> None:
    client = provider_app.test_client()
    # 8-bit Latin-1 in the body: the bytes are kept exactly as posted
    raw = (
        b"From: Exams Officer <exams@centre.example>\r\nTo: support@imi.test\r\n"
        b"Subject: exam froze\r\nMessage-ID: <mg-1@centre.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nThe caf\xe9 room's exam froze.\r\n"
    )
    answer = post(client, "/api/v1/inbound/mailgun/mime", multipart(mailgun_fields(raw)))
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "pending" and body["duplicate"] is False
    assert body["message_id"] == "<mg-1@centre.example>"
    assert stored(provider_app) == [raw]
    with factories.session_of(provider_app) as s:
        row = s.get(InboundEmail, body["id"])
        assert row is not None and row.source == InboundSource.WEBHOOK
    # then a worker makes the ticket, as for mail posted to POST /api/v1/inbound
    assert process_all(provider_app) == 1
    with factories.session_of(provider_app) as s:
        row = s.get(InboundEmail, body["id"])
        assert row is not None and row.ticket_id is not None
        made = s.get(Ticket, row.ticket_id)
        assert made is not None and made.centre_email == "exams@centre.example"
    # Mailgun posts URL-encoded when the message has no attachment: the same
    second = make_email(message_id="<mg-2@centre.example>")
    answer = post(client, "/api/v1/inbound/mailgun", urlencoded(mailgun_fields(second)))
    assert answer.status_code == 202
    assert stored(provider_app) == [raw, second]


def test_mailgun_bad_signature_stale_timestamp_and_replay_are_401_and_store_nothing(
    provider_app: Flask,
) -> None:
    client = provider_app.test_client()
    raw = make_email(message_id="<mg-bad@centre.example>")
    url = "/api/v1/inbound/mailgun/mime"
    wrong_key = mailgun_fields(raw, key="key-not-ours")
    stale_time = str(int(time.time()) - 3600)
    future = str(int(time.time()) + 3600)
    tampered = mailgun_fields(raw)
    tampered[5] = ("timestamp", str(int(time.time()) + 1).encode())  # signature no longer covers it
    for fields in (
        wrong_key,
        mailgun_fields(raw, stale_time),
        mailgun_fields(raw, future),
        tampered,
    ):
        answer = post(client, url, multipart(fields))
        assert answer.status_code == 401 and answer.is_json, answer.get_json()
    no_signature = [f for f in mailgun_fields(raw) if f[0] != "signature"]
    assert post(client, url, multipart(no_signature)).status_code == 401
    assert stored(provider_app) == []
    # a good call, then the very same call again (a replay) within the freshness window
    fields = mailgun_fields(raw)
    assert post(client, url, multipart(fields)).status_code == 202
    replay = post(client, url, multipart(fields))
    assert replay.status_code == 401 and "used before" in replay.get_json()["error"]
    other_mail_same_token = [(n, make_email() if n == "body-mime" else v) for n, v in fields]
    assert post(client, url, multipart(other_mail_same_token)).status_code == 401
    assert len(stored(provider_app)) == 1


def test_mailgun_parsed_format_or_broken_mail_is_400_and_a_retry_is_not_a_replay(
    provider_app: Flask,
) -> None:
    client = provider_app.test_client()
    url = "/api/v1/inbound/mailgun/mime"
    parsed = [f for f in mailgun_fields(make_email()) if f[0] != "body-mime"] + [
        ("body-plain", b"A candidate cannot log in.")
    ]
    answer = post(client, url, multipart(parsed))
    assert answer.status_code == 400 and "/mime" in answer.get_json()["error"]
    # headers that are not an email: refused like the webhook refuses them; the token is given back
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    broken = mailgun_fields(b"\x00\x01 not a mail", timestamp, token)
    assert post(client, url, multipart(broken)).status_code == 400
    fixed = mailgun_fields(make_email(message_id="<retry@centre.example>"), timestamp, token)
    assert post(client, url, multipart(fixed)).status_code == 202
    with factories.session_of(provider_app) as s:
        assert s.scalars(select(WebhookToken.token)).all() == [token]


def test_mailgun_is_off_without_its_key(app: Flask) -> None:
    answer = post(
        app.test_client(), "/api/v1/inbound/mailgun/mime", multipart(mailgun_fields(make_email()))
    )
    assert answer.status_code == 401 and "not enabled" in answer.get_json()["error"]
    assert count(app, InboundEmail) == 0


# --- SendGrid ---------------------------------------------------------------------------------


def test_sendgrid_raw_mime_with_basic_auth(provider_app: Flask) -> None:
    client = provider_app.test_client()
    raw = make_email(message_id="<sg-1@centre.example>")
    url = "/api/v1/inbound/sendgrid"
    for headers in (
        {},
        basic(password="wrong"),
        basic(user="other"),
        {"Authorization": "Basic %%%"},
    ):
        answer = post(client, url, multipart(sendgrid_fields(raw)), **headers)
        assert answer.status_code == 401, headers
    assert stored(provider_app) == []
    answer = post(client, url, multipart(sendgrid_fields(raw)), **basic())
    assert answer.status_code == 202 and answer.get_json()["message_id"] == "<sg-1@centre.example>"
    assert stored(provider_app) == [raw]
    parsed_mode = [f for f in sendgrid_fields(raw) if f[0] != "email"] + [("text", b"hello")]
    answer = post(client, url, multipart(parsed_mode), **basic())
    assert answer.status_code == 400 and "raw, full MIME" in answer.get_json()["error"]


# --- Postmark ---------------------------------------------------------------------------------


def test_postmark_raw_email_with_basic_auth(provider_app: Flask) -> None:
    client = provider_app.test_client()
    raw = make_email(message_id="<pm-1@centre.example>", body="Grüße: the candidate cannot log in")
    payload = json.dumps(postmark_payload(raw.decode("utf-8")))
    url = "/api/v1/inbound/postmark"
    for headers in ({}, basic(password=PASSWORD + "x")):
        assert (
            post(client, url, (payload.encode(), "application/json"), **headers).status_code == 401
        )
    assert stored(provider_app) == []
    answer = post(client, url, (payload.encode(), "application/json"), **basic())
    assert answer.status_code == 202 and answer.get_json()["message_id"] == "<pm-1@centre.example>"
    assert stored(provider_app) == [raw]
    without_raw = postmark_payload("")
    del without_raw["RawEmail"]
    answer = post(client, url, (json.dumps(without_raw).encode(), "application/json"), **basic())
    assert answer.status_code == 400 and "RawEmail" in answer.get_json()["error"]
    assert post(client, url, (b"{not json", "application/json"), **basic()).status_code == 400


def test_provider_posts_over_the_size_cap_are_413(provider_app: Flask) -> None:
    import io

    client = provider_app.test_client()
    big = make_email(body="x" * 300_000)
    body, content_type = multipart(sendgrid_fields(big))
    answer = client.post(  # no Content-Length (as with chunked transfer): counted while read
        "/api/v1/inbound/sendgrid",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": content_type, **basic()},
    )
    assert answer.status_code == 413 and answer.is_json
    assert stored(provider_app) == []


# --- the pure checks ----------------------------------------------------------------------------


def test_basic_auth_and_signature_checks() -> None:
    header = basic()["Authorization"]
    assert providers.basic_auth_valid(header, USER, PASSWORD)
    assert not providers.basic_auth_valid(header, USER, "")  # never open without a password
    assert not providers.basic_auth_valid("Bearer abc", USER, PASSWORD)
    no_colon = "Basic " + base64.b64encode(USER.encode() + PASSWORD.encode()).decode()
    assert not providers.basic_auth_valid(no_colon, USER, PASSWORD)
    timestamp, token = "1765105200", "a" * 50
    signature = mailgun_signature(timestamp, token)
    assert providers.mailgun_signature_valid(SIGNING_KEY, timestamp, token, signature.upper())
    assert not providers.mailgun_signature_valid("", timestamp, token, signature)
    assert not providers.timestamp_fresh("1e9", time.time(), 300)
    assert providers.timestamp_fresh(str(int(time.time()) - 299), time.time(), 300)
    with pytest.raises(providers.PayloadError, match="/mime"):
        providers.form_mime({}, Provider.MAILGUN)
