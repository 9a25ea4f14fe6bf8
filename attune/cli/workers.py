"""``attune workers``: list the workers as the database sees them, and sweep the stale ones."""

from __future__ import annotations

import json

import click

from attune.liveness import registry as worker_table
from attune.liveness import sweep as sweeps
from attune.worker.app import resources


@click.group("workers")
def workers() -> None:
    """List workers and sweep the stale ones."""


@workers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_(as_json: bool) -> None:
    """Every worker: status, runtimes, heartbeat age (database clock), staleness, running."""
    with resources.database.session_scope() as session:
        views = worker_table.list_workers(session, resources.settings)
    if as_json:
        click.echo(json.dumps([view.to_json() for view in views], indent=2))
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


@workers.command("sweep")
def sweep() -> None:
    """Deactivate stale workers and settle their executions now (what beat runs periodically)."""
    with resources.database.session_scope() as session:
        report = sweeps.sweep(session, resources.settings)
    sweeps.announce(report)
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
