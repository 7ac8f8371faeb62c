"""Several mailboxes: a webhook channel with its own address, aliases and default queue; replies go
out through the channel the ticket came in on, From the address the centre wrote to; the single-
mailbox settings stay the default channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.mailutil import deliver, make_email, process_all
from triage import create_app
from triage.config import ConfigError, Settings
from triage.helpdesk import tokens
from triage.mail import channels
from triage.orm import InboundEmail, Ticket

FORMS = "forms@imi.test"
ALIAS = "exam-forms@imi.test"


@pytest.fixture
def channel_app(smtp_app_config: dict[str, Any], tmp_path: Path) -> Flask:
    """The SMTP app with a webhook channel `forms` (no SMTP of its own) next to the default."""
    path = tmp_path / "channels.toml"
    path.write_text(
        f'[[channel]]\nname = "forms"\nsource = "webhook"\naddress = "{FORMS}"\n'
        f'aliases = ["{ALIAS}"]\nfrom_name = "IMI Exam Forms"\ndefault_queue = "scheduling"\n'
    )
    return create_app({**smtp_app_config, "CHANNELS_FILE": str(path)})


def _post(app: Flask, raw: bytes, query: str = "") -> Any:
    with app.extensions["triage.sessions"]() as session:
        _row, token = tokens.create_token(session, "gateway")
        session.commit()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
    return app.test_client().post(f"/api/v1/inbound{query}", data=raw, headers=headers)


def test_reply_goes_out_from_the_alias_the_centre_wrote_to(
    channel_app: Flask, smtp_server: Any
) -> None:
    raw = make_email(subject="Form question", body="Which form do we use?").replace(
        b"To: support@imi.test", f"To: {ALIAS}".encode()
    )
    assert _post(channel_app, raw, "?channel=forms").status_code == 202
    assert process_all(channel_app) == 1
    with channel_app.extensions["triage.sessions"]() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert (ticket.channel, ticket.reply_from) == ("forms", ALIAS)
        assert ticket.queue is not None and ticket.queue.slug == "scheduling"  # no model: triage
    assert deliver(channel_app) == 1
    sent = smtp_server[0].parsed()[-1]
    assert sent["From"].addresses[0].addr_spec == ALIAS
    assert sent["From"].addresses[0].display_name == "IMI Exam Forms"
    assert smtp_server[0].messages[-1].mail_from == ALIAS


def test_default_channel_keeps_the_single_mailbox_settings(
    channel_app: Flask, smtp_server: Any
) -> None:
    assert _post(channel_app, make_email(subject="Plain question")).status_code == 202
    process_all(channel_app)
    with channel_app.extensions["triage.sessions"]() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert (ticket.channel, ticket.reply_from) == (None, "support@imi.test")
        assert ticket.queue is not None and ticket.queue.slug == "triage"
    deliver(channel_app)
    assert smtp_server[0].parsed()[-1]["From"].addresses[0].addr_spec == "support@imi.test"


def test_unknown_channel_is_refused_and_nothing_stored(channel_app: Flask) -> None:
    response = _post(channel_app, make_email(), "?channel=nosuch")
    assert response.status_code == 400 and "no channel named" in response.get_json()["error"]
    with channel_app.extensions["triage.sessions"]() as session:
        assert session.scalar(select(func.count()).select_from(InboundEmail)) == 0


def test_mail_from_any_channel_address_is_never_answered(
    channel_app: Flask, smtp_server: Any
) -> None:
    raw = make_email(sender=f"Forms <{FORMS}>", subject="Loop?")
    assert _post(channel_app, raw).status_code == 202
    process_all(channel_app)
    assert deliver(channel_app) == 0


def test_a_wrong_channels_file_is_one_line_naming_the_channel(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    settings = Settings()
    settings.channels_file = path
    path.write_text('[[channel]]\nname = "a"\naddress = "support@imi-awards.example"\n')
    with pytest.raises(ConfigError, match=r"support@imi-awards\.example belongs to channels"):
        channels.load(settings)
    path.write_text('[[channel]]\nname = "a"\nsource = "fax"\n')
    with pytest.raises(ConfigError, match="channel a: source must be imap or webhook"):
        channels.load(settings)
    path.write_text("[[channel]\n")
    with pytest.raises(ConfigError, match="CHANNELS_FILE"):
        channels.load(settings)
