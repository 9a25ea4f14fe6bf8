"""How the command line shows executions: one record in detail, or a table of them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from attune.executions.records import ExecutionRecord


def show_record(
    record: ExecutionRecord,
    *,
    as_json: bool,
    extra: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Print one execution: as one JSON object (with ``extra`` fields), or status, ``notes``,
    result/stdout and stderr."""
    if as_json:
        click.echo(json.dumps({**record.to_json(), **(extra or {})}))
        return
    duration = "-" if record.duration_ms is None else f"{record.duration_ms} ms"
    exit_code = "-" if record.exit_code is None else str(record.exit_code)
    click.echo(f"execution {record.id}  {record.action_ref}  {record.status.value}")
    click.echo(f"exit code: {exit_code}  duration: {duration}  worker: {record.worker or '-'}")
    if record.max_attempts > 1:
        retry_of = "-" if record.retry_of_id is None else str(record.retry_of_id)
        click.echo(
            f"attempt: {record.try_label}  first: {record.first_attempt_id}  retry of: {retry_of}"
        )
    if record.parent_id is not None:
        click.echo(f"parent: {record.parent_id} (a task of that workflow run)")
    for note in notes:
        click.echo(note)
    if record.error:
        click.echo(f"error: {record.error}")
    if record.result is not None:
        click.echo("--- result ---")
        click.echo(json.dumps(record.result, indent=2, sort_keys=True))
    for name, text, truncated in (
        ("stdout", record.stdout, record.stdout_truncated),
        ("stderr", record.stderr, record.stderr_truncated),
    ):
        if text:
            click.echo(f"--- {name}{' (truncated)' if truncated else ''} ---")
            click.echo(text.rstrip("\n"))


def show_table(records: Sequence[ExecutionRecord], *, as_json: bool) -> None:
    """Print executions one per line (or as a JSON array)."""
    if as_json:
        click.echo(json.dumps([record.to_json() for record in records]))
        return
    click.echo(
        f"{'ID':>8}  {'ACTION':<28} {'STATUS':<10} {'TRY':<5} {'WORKER':<24} {'REQUESTED':<26} MS"
    )
    for record in records:
        duration = "" if record.duration_ms is None else str(record.duration_ms)
        click.echo(
            f"{record.id:>8}  {record.action_ref:<28} {record.status.value:<10} "
            f"{record.try_label:<5} {record.worker or '-':<24} "
            f"{record.requested_at.isoformat():<26} {duration}"
        )
