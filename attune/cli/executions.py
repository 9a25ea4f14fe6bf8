"""``attune executions``: read, list, cancel, purge and tail executions."""

from __future__ import annotations

import click

import attune.executions.records as store
from attune.cli.output import show_record, show_table
from attune.cli.tail import tail
from attune.executions import env_records, retention
from attune.store.models import ExecutionStatus
from attune.worker.app import resources


@click.group("executions")
def executions() -> None:
    """Read, list, cancel, purge and tail executions."""


executions.add_command(tail)


@executions.command("get")
@click.argument("execution_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as one JSON object.")
def get(execution_id: int, as_json: bool) -> None:
    """Show one execution."""
    record = store.get(resources.database, execution_id)
    with resources.database.session_scope() as session:
        use = env_records.execution_use(session, execution_id)
        environment = None if use is None else env_records.use_json(use)
    show_record(record, as_json=as_json, environment=environment)


@executions.command("list")
@click.option("--status", type=click.Choice([status.value for status in ExecutionStatus]))
@click.option("--action", "action_ref", help="Only executions of this action ref.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_(status: str | None, action_ref: str | None, limit: int, as_json: bool) -> None:
    """List the newest executions first."""
    with resources.database.session_scope() as session:
        records = store.recent(
            session,
            status=None if status is None else ExecutionStatus(status),
            action_ref=action_ref,
            limit=limit,
        )
    show_table(records, as_json=as_json)


@executions.command("cancel")
@click.argument("execution_id", type=int)
def cancel(execution_id: int) -> None:
    """Cancel an execution (at once if not started; a running one is killed by its worker)."""
    status = store.request_cancel(resources.database, execution_id)
    click.echo(f"execution {execution_id}: {status.value}")


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
    with resources.database.session_scope() as session:
        count = retention.purge(session, older_than_days)
    click.echo(f"purged {count} execution(s) older than {older_than_days:g} day(s)")
