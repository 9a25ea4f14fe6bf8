"""``attune run``: execute one action and show its execution."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from attune.cli.output import show_record
from attune.client import execute, get_execution
from attune.errors import ActionNotFoundError, ParameterError
from attune.executions.param_arguments import parse_cli_value
from attune.store.models import Action
from attune.worker.app import embedded_worker, resources


@click.command("run")
@click.argument("ref")
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--json", "as_json", is_flag=True, help="Print the execution as one JSON object.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Enqueue, print the execution id (with --json: its record), and return.",
)
@click.option("--worker", help="Run on this worker only (its own queue).")
@click.option("--timeout-s", type=float, help="Timeout of this execution, in seconds.")
@click.option(
    "--no-follow", is_flag=True, help="With a retry policy: end with the first attempt's result."
)
def run(
    ref: str,
    assignments: tuple[str, ...],
    as_json: bool,
    no_wait: bool,
    worker: str | None,
    timeout_s: float | None,
    no_follow: bool,
) -> None:
    """Run action REF with parameters KEY=VALUE, converted by the parameter's type.

    With a retry policy it follows the attempts and exits by the last one's status.
    """
    if no_wait and resources.settings.is_embedded:
        raise click.UsageError(
            "--no-wait needs a broker shared with running workers; on the embedded default "
            "(ATTUNE_BROKER_URL=memory://) the worker lives in this process and nothing would "
            "be left to run the action"
        )
    values = _parse(ref, assignments)
    try:
        handle = execute(ref, values, worker=worker, timeout_s=timeout_s)
        if no_wait:
            if as_json:  # read right after the enqueue: ``scheduled`` until a worker starts it
                show_record(get_execution(handle.id), as_json=True)
            else:
                click.echo(str(handle.id))
            return
        record = handle.wait(follow=not no_follow)
    finally:
        embedded_worker.stop()
    show_record(record, as_json=as_json)
    if record.max_attempts > 1 and not as_json:
        click.echo(f"{record.status.value} on attempt {record.try_label}")
    sys.exit(0 if record.succeeded else 1)


def _parse(ref: str, assignments: tuple[str, ...]) -> dict[str, object]:
    with resources.database.session_scope() as session:
        schema = session.scalar(select(Action.parameters).where(Action.ref == ref))
    if schema is None:
        raise ActionNotFoundError(ref)
    values: dict[str, object] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise ParameterError(ref, [f"{assignment!r} is not KEY=VALUE"])
        values[name] = parse_cli_value(ref, schema, name, raw)
    return values
