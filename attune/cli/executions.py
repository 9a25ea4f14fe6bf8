"""``attune executions``: manage recorded executions."""

from __future__ import annotations

import click

from attune import retention
from attune.db import Database
from attune.settings import Settings


@click.group("executions")
def executions() -> None:
    """Manage recorded executions."""


@executions.command("purge")
@click.option(
    "--older-than",
    "older_than_days",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    metavar="DAYS",
    help="Delete terminal executions that ended at least this many days ago.",
)
def purge(older_than_days: float) -> None:
    """Delete old terminal executions (never one that is still going) and report how many."""
    database = Database.from_settings(Settings.from_env())
    try:
        with database.session_scope() as session:
            count = retention.purge(session, older_than_days)
    finally:
        database.dispose()
    click.echo(f"purged {count} execution(s) older than {older_than_days:g} day(s)")
