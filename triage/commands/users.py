"""User commands: create-user."""

from __future__ import annotations

import click

from triage.commands import ready_engine, reports_config_errors, sessions, triage_cli
from triage.database import transaction
from triage.helpdesk import users
from triage.states import Role


@triage_cli.command("create-user")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),  # values: click matches Enum members by name
    default=Role.AGENT.value,
    show_default=True,
)
@click.option(
    "--name",
    prompt="Name (signs your replies to centres)",
    help="Display name, used to sign replies.",
)
@click.password_option(prompt="Password (10+ characters)", help="Prompted for when not given.")
@reports_config_errors
def create_user_command(email: str, role: str, name: str, password: str) -> None:
    """Create a staff login (prompts for the name when --name is not given, and for the
    password)."""
    ready_engine(migrate_sqlite=True)
    try:
        with transaction(sessions()) as session:
            user = users.create_user(session, email, password, role, name)
            created = user.email
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} {created}; log in at http://127.0.0.1:5000/login")
