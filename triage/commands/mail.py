"""Mail commands: create-token, ingest (.eml files, folders, mbox), poll-imap."""

from __future__ import annotations

import mailbox
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from triage.classifier.registry import ModelProvider
from triage.commands import app_settings, ready_engine, reports_config_errors, sessions, triage_cli
from triage.database import transaction
from triage.helpdesk import tokens
from triage.mail import channel_polling, channels
from triage.mail.inbound import InboundContext, receive
from triage.states import InboundSource, InboundStatus


@triage_cli.command("create-token")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(tokens.SCOPES),
    help="What the token may do (repeatable): inbound (webhook, contact form), read, write, "
    "metrics. Default: every scope.",
)
@reports_config_errors
def create_token_command(name: str, scopes: tuple[str, ...]) -> None:
    """Create an API token called NAME; the token is printed once, alone on the last line."""
    ready_engine(migrate_sqlite=True)
    if not scopes:
        click.echo(
            f"No --scope given: the token gets every scope ({', '.join(tokens.SCOPES)}). "
            "A mail gateway needs only --scope inbound.",
            err=True,
        )
    try:
        with transaction(sessions()) as session:
            row, plain = tokens.create_token(session, name, scopes=scopes or tokens.SCOPES)
            row_id, granted = row.id, row.scopes
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"API token {name!r} created (id {row_id}, scopes: {granted}). It is shown only now; "
        "store it safely:"
    )
    click.echo(plain)


def _context() -> InboundContext:
    settings = app_settings()
    return InboundContext(
        settings, ModelProvider(sessions(), settings.models_dir, settings.model_check_interval)
    )


def _is_mbox(path: Path) -> bool:
    if path.suffix.lower() == ".mbox":
        return True
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def iter_raw(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) for every message in .eml files, folders of them (recursively) and mbox
    files."""
    for path in paths:
        if path.is_dir():
            for child in sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in {".eml", ".mbox"}
            ):
                yield from iter_raw([child])
        elif _is_mbox(path):
            box = mailbox.mbox(path, create=False)
            for index, key in enumerate(box.keys()):
                yield f"{path}#{index + 1}", box.get_bytes(key)
        else:
            yield str(path), path.read_bytes()


@triage_cli.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@reports_config_errors
def ingest_command(paths: tuple[Path, ...]) -> None:
    """Feed .eml files, folders of them, or mbox files through the inbound path (a backlog, or the
    samples)."""
    ready_engine(migrate_sqlite=True)
    ctx = _context()
    counts = {"new": 0, "duplicate": 0, "pending": 0, "rejected": 0}
    for label, raw in iter_raw(list(paths)):
        result = receive(sessions(), ctx, raw, InboundSource.INGEST, keep_unparseable=True)
        if result.status == InboundStatus.REJECTED:
            counts["rejected"] += 1
            click.echo(f"{label}: rejected (not a usable email)", err=True)
            continue
        kind = (
            "duplicate"
            if result.duplicate
            else ("pending" if result.status == InboundStatus.PENDING else "new")
        )
        counts[kind] += 1
        click.echo(
            f"{label}: {result.reference or 'stored, pending'}"
            f"{' (already received)' if result.duplicate else ''}"
        )
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    if counts["rejected"]:
        sys.exit(1)


@triage_cli.command("poll-imap")
@reports_config_errors
def poll_imap_command() -> None:
    """Poll each channel's IMAP folder once (IMAP_HOST, IMAP_USER, ... and CHANNELS_FILE)."""
    settings = app_settings()
    polled = channels.load(settings).polled()
    if not polled:
        raise click.ClickException(
            "IMAP_HOST is not set and no channel has a mailbox; nothing to poll"
        )
    ready_engine(migrate_sqlite=True)
    ctx = _context()
    failed = []
    for channel in polled:
        try:
            count = channel_polling.poll_channel(
                sessions(),
                settings,
                channel,
                lambda raw, name: receive(
                    sessions(), ctx, raw, InboundSource.IMAP, keep_unparseable=True, channel=name
                ),
            )
        except channel_polling.POLL_ERRORS as exc:
            failed.append(
                f"IMAP poll failed: channel {channel.name}: {channel_polling.describe(exc)}"
            )
            continue
        click.echo(f"{count} message(s) fetched from {channel.mailbox_key()}")
    if failed:
        raise click.ClickException("\n".join(failed))
