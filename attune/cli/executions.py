"""``attune executions``: read, list, cancel, purge and tail executions."""

from __future__ import annotations

import json
from typing import Any

import click

import attune.executions.records as store
from attune.cli.output import show_record, show_table
from attune.cli.tail import tail
from attune.executions import chains, env_records, retention, standings
from attune.store.models import ExecutionStatus
from attune.worker.app import resources
from attune.worker.dispatch import RuleFinishing
from attune.workflows.listing import tasks_of


@click.group("executions")
def executions() -> None:
    """Read, list, cancel, purge and tail executions."""


executions.add_command(tail)


@executions.command("get")
@click.argument("execution_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as one JSON object.")
def get(execution_id: int, as_json: bool) -> None:
    """Show one execution, with its place in a retry chain or a concurrency queue."""
    database = resources.database
    record = store.get(database, execution_id)
    extra: dict[str, Any] = {}
    notes: list[str] = []
    following = chains.successor(database, execution_id)
    if following is not None:
        after = store.get(database, following)
        eligible = after.eligible_at.isoformat() if after.eligible_at else "-"
        extra.update(next_attempt_id=following, next_eligible_at=eligible)
        notes.append(f"next attempt: {following} ({after.status.value}), eligible at {eligible}")
    waiting = standings.standing(database, execution_id)
    if waiting is not None:
        extra["waiting"] = {"position": waiting.position, "limit": waiting.limit}
        notes.append(f"waiting for a slot: position {waiting.position}, limit {waiting.limit}")
    with database.session_scope() as session:
        use = env_records.execution_use(session, execution_id)
    if use is not None:
        environment = env_records.use_json(use)
        extra["environment"] = environment
        waited = "waited for a build" if environment["waited"] else "was ready"
        built = ", built by this run" if environment["built"] else ""
        notes.append(
            f"environment: {environment['key'][:16]} on {environment['host']} ({waited}{built})"
        )
    show_record(record, as_json=as_json, extra=extra, notes=notes)


@executions.command("attempts")
@click.argument("execution_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def attempts(execution_id: int, as_json: bool) -> None:
    """List every attempt of the retry chain of EXECUTION_ID (any of its ids), first first."""
    show_table(chains.attempts(resources.database, execution_id), as_json=as_json)


@executions.command("list")
@click.option("--status", type=click.Choice([status.value for status in ExecutionStatus]))
@click.option("--action", "action_ref", help="Only executions of this action ref.")
@click.option(
    "--parent", "parent_id", type=int, help="Only the task attempts of this workflow run."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_(
    status: str | None, action_ref: str | None, parent_id: int | None, limit: int, as_json: bool
) -> None:
    """List the newest executions first."""
    with resources.database.session_scope() as session:
        records = store.recent(
            session,
            status=None if status is None else ExecutionStatus(status),
            action_ref=action_ref,
            parent_id=parent_id,
            limit=limit,
        )
    show_table(records, as_json=as_json)


@executions.command("tasks")
@click.argument("execution_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def tasks(execution_id: int, as_json: bool) -> None:
    """List the tasks of workflow run EXECUTION_ID: each attempt of each task activation."""
    store.get(resources.database, execution_id)  # says so when there is no such execution
    rows = tasks_of(resources.database, execution_id)
    if as_json:
        click.echo(json.dumps([row.to_json() for row in rows]))
        return
    if not rows:
        click.echo(f"execution {execution_id} has no tasks (not a workflow, or not started)")
        return
    width = max(len(row.task) for row in rows)
    click.echo(f"{'TASK':<{width}}  OCC  ITEM  TRY  {'STATUS':<10}  EXECUTION")
    for row in rows:
        item = "-" if row.item is None else str(row.item)
        attempt = "-" if row.attempt is None else str(row.attempt)
        child = "-" if row.execution_id is None else str(row.execution_id)
        click.echo(
            f"{row.task:<{width}}  {row.occurrence:>3}  {item:>4}  {attempt:>3}  "
            f"{row.status:<10}  {child}"
        )


@executions.command("cancel")
@click.argument("execution_id", type=int)
def cancel(execution_id: int) -> None:
    """Cancel an execution (at once if not started; a running one is killed by its worker).

    Any id of a retry chain cancels the chain's live attempt and stops the chain.
    """
    finishing = RuleFinishing(resources.settings)
    target, status = chains.cancel(resources.database, execution_id, finishing)
    click.echo(f"execution {target}: {status.value}")


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
