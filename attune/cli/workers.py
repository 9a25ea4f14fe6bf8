"""``attune workers``: list the workers as the database sees them, sweep the stale ones, and
tell whether the sweeper itself is running."""

from __future__ import annotations

import json

import click

from attune.liveness import registry as worker_table
from attune.liveness.sweeper import (
    OVERDUE_INTERVALS,
    SweeperStatus,
    sweep_and_record,
    sweeper_status,
)
from attune.worker.app import resources
from attune.worker.dispatch import RuleFinishing


@click.group("workers")
def workers() -> None:
    """List workers, sweep the stale ones, and watch the sweeper."""


@workers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_(as_json: bool) -> None:
    """Every worker: status, runtimes, heartbeat age (database clock), staleness, running."""
    with resources.database.session_scope() as session:
        views = worker_table.list_workers(session, resources.settings)
        sweeper = sweeper_status(session, resources.settings)
    if as_json:
        click.echo(json.dumps([view.to_json() for view in views], indent=2))
        _warn_if_overdue(sweeper)
        return
    rows = [("NAME", "STATUS", "RUNTIMES", "HEARTBEAT AGE", "STALE", "RUNNING")]
    rows += [
        (
            view.name,
            view.status,
            ",".join(view.runtimes),
            "never" if view.heartbeat_age_s is None else f"{view.heartbeat_age_s:.1f} s",
            "yes" if view.stale else "no",
            str(view.running),
        )
        for view in views
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    click.echo(f"last sweep: {_ago(sweeper)}")
    _warn_if_overdue(sweeper)


@workers.command("sweep")
def sweep() -> None:
    """Deactivate stale workers and settle their executions now (what beat runs periodically)."""
    settings = resources.settings
    report = sweep_and_record(resources.database, settings, RuleFinishing(settings))
    for deactivation in report.deactivated:
        click.echo(
            f"deactivated {deactivation.name}: {deactivation.reason};"
            f" {deactivation.abandoned} execution(s) abandoned"
        )
    counts = report.counts()
    click.echo(
        f"{counts['deactivated']} worker(s) deactivated, {counts['abandoned']} execution(s)"
        f" abandoned, {counts['failed_scheduled']} scheduled execution(s) failed"
    )


@workers.command("sweeper")
@click.option("--json", "as_json", is_flag=True, help="Print as one JSON object.")
def sweeper(as_json: bool) -> None:
    """When the last sweep ran (database clock), and whether it is overdue.

    Overdue: no sweep within the last 3 sweep intervals, or none ever (is beat running?).
    """
    with resources.database.session_scope() as session:
        status = sweeper_status(session, resources.settings)
    if as_json:
        click.echo(json.dumps(status.to_json(), indent=2))
    else:
        when = "" if status.last_sweep_at is None else f" ({status.last_sweep_at.isoformat()})"
        click.echo(f"last sweep: {_ago(status)}{when}")
        click.echo(f"sweep interval: {status.sweep_interval_s:g} s")
        click.echo(f"overdue: {'yes' if status.overdue else 'no'}")
    _warn_if_overdue(status)


def _ago(status: SweeperStatus) -> str:
    age_s = status.last_sweep_age_s
    return "never" if age_s is None else f"{age_s:.1f} s ago"


def _warn_if_overdue(status: SweeperStatus) -> None:
    """On stderr: no sweep ran within the last sweep intervals (stale workers go unnoticed)."""
    if not status.overdue:
        return
    limit_s = OVERDUE_INTERVALS * status.sweep_interval_s
    click.echo(
        f"warning: no sweep within the last {OVERDUE_INTERVALS} sweep intervals"
        f" ({limit_s:g} s; last sweep: {_ago(status)}): stale workers go unnoticed;"
        " is `celery -A attune beat` running?",
        err=True,
    )
