"""Channel commands: `channels list` and `channels check` (log in, open the folder, send a test
message to the channel's own address and see it arrive)."""

from __future__ import annotations

import click

from triage.commands import app_settings, ready_engine, reports_config_errors, sessions, triage_cli
from triage.mail import channel_check, channel_health, channels


@triage_cli.group("channels")
def channels_cli() -> None:
    """Mail channels: their health, and an end-to-end check."""


@channels_cli.command("list")
@reports_config_errors
def list_command() -> None:
    """List the channels with their last success and last error."""
    settings = app_settings()
    ready_engine(migrate_sqlite=True)
    with sessions()() as session:
        statuses = channel_health.overview(session, channels.load(settings))
    for status in statuses:
        last = (
            status.last_success_at.isoformat(timespec="seconds")
            if status.last_success_at
            else "never"
        )
        error = f"; failing: {status.last_error}" if status.last_error else ""
        click.echo(
            f"{status.name}: {status.address} ({status.source}, {status.auth}); "
            f"last success {last}; {status.received_hour} in the last hour, "
            f"{status.received_day} in the last day{error}"
        )


@channels_cli.command("check")
@click.argument("names", nargs=-1)
@click.option(
    "--wait", default=60.0, show_default=True, help="Seconds to wait for the test message."
)
@reports_config_errors
def check_command(names: tuple[str, ...], wait: float) -> None:
    """Check the named channels (default: all); exits 1 if any check fails."""
    settings = app_settings()
    configured = channels.load(settings)
    unknown = [n for n in names if n not in configured.by_name]
    if unknown:
        raise click.ClickException(
            f"no channel named {', '.join(unknown)} (configured: {', '.join(configured.by_name)})"
        )
    ready_engine(migrate_sqlite=True)
    failed = []
    for channel in configured:
        if names and channel.name not in names:
            continue
        report = channel_check.check(sessions(), settings, channel, wait_seconds=wait)
        for step in report.steps:
            click.echo(f"{channel.name}: {step}")
        if not report.ok:
            failed.append(channel.name)
    if failed:
        raise click.ClickException(f"channel check failed: {', '.join(failed)}")
    click.echo("all channels OK")
