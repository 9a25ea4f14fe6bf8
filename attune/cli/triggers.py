"""``attune triggers``, ``events``, ``enforcements`` and ``timers``: emit, list, tick."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from attune.client import ExecutionHandle, emit
from attune.rules import catalog
from attune.rules import events as recorded
from attune.rules.enforcement import Enforced
from attune.rules.triggers import TRIGGER_TYPES
from attune.store.models import EnforcementStatus, EventStatus
from attune.worker.app import embedded_worker, resources
from attune.worker.dispatch import timer_pass


def parse_payload(text: str) -> dict[str, Any]:
    """The ``--payload`` option's JSON object; a usage error naming the option otherwise."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--payload") from None
    if not isinstance(document, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    return document


@click.group("triggers")
def triggers() -> None:
    """List the trigger types and emit events."""


@triggers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_types(as_json: bool) -> None:
    """Every trigger type attune knows, with its parameter schema."""
    kinds = sorted(TRIGGER_TYPES.values(), key=lambda kind: kind.ref)
    if as_json:
        rows = [
            {"ref": k.ref, "description": k.description, "params_schema": k.params_schema}
            for k in kinds
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for kind in kinds:
        click.echo(f"{kind.ref}  {kind.description}")


def _show(enforced: Sequence[Enforced]) -> None:
    """Print each enforcement; on the embedded default, wait for the executions it started."""
    try:
        for item in enforced:
            line = f"{item.rule_ref}: {item.status.value}"
            if item.execution_id is not None:
                line += f", execution {item.execution_id}"
                if resources.settings.is_embedded and item.queue is not None:
                    line += f" {ExecutionHandle(item.execution_id).wait().status.value}"
            click.echo(line + (f" ({item.reason})" if item.reason else ""))
    finally:
        embedded_worker.stop()


@triggers.command("emit")
@click.argument("trigger_type")
@click.option("--payload", default="{}", help="The event payload, as a JSON object.")
@click.option("--dedup-key", help="A repeated key records nothing new and fires nothing.")
def emit_(trigger_type: str, payload: str, dedup_key: str | None) -> None:
    """Record an event of TRIGGER_TYPE and enforce the rules it selects."""
    emitted = emit(trigger_type, parse_payload(payload), dedup_key=dedup_key)
    if emitted.duplicate:
        embedded_worker.stop()
        click.echo(f"duplicate of event {emitted.event_id}: nothing recorded, nothing fired")
        return
    click.echo(f"event {emitted.event_id}: {len(emitted.enforcements)} enforcement(s)")
    _show(emitted.enforcements)


@click.group("events")
def events() -> None:
    """List recorded trigger events."""


@events.command("list")
@click.option("--rule", "rule_ref", help="Only the events of this (timer) rule.")
@click.option("--type", "trigger_type", help="Only events of this trigger type.")
@click.option("--status", type=click.Choice([s.value for s in EventStatus]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_events(
    rule_ref: str | None, trigger_type: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """The newest events first."""
    with resources.database.session_scope() as session:
        rule_id = catalog.find_rule(session, rule_ref).rule.id if rule_ref else None
        found = recorded.recent(
            session, rule_id=rule_id, trigger_type=trigger_type, status=status, limit=limit
        )
    if as_json:
        click.echo(json.dumps([event.to_json() for event in found], indent=2))
        return
    for event in found:
        when = event.fire_time or event.received_at
        shown = when.isoformat(timespec="seconds") if when else "-"
        click.echo(f"{event.id}  {event.type}  {event.status}  {shown}  {event.source}")


@click.group("enforcements")
def enforcements() -> None:
    """List rule enforcements: did a rule run its action, and if not, why."""


@enforcements.command("list")
@click.option("--rule", "rule_ref", help="Only the enforcements of this rule.")
@click.option("--status", type=click.Choice([s.value for s in EnforcementStatus]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_enforcements(rule_ref: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """The newest enforcements first, with their reason and criteria trace."""
    with resources.database.session_scope() as session:
        found = catalog.recent_enforcements(session, rule_ref=rule_ref, status=status, limit=limit)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for row in found:
        execution = f" execution {row['execution_id']}" if row["execution_id"] else ""
        reason = f" ({row['reason']})" if row["reason"] else ""
        click.echo(
            f"{row['id']}  event {row['event_id']}  {row['rule_ref']}  {row['status']}"
            f"{execution}{reason}"
        )


@click.group("timers")
def timers() -> None:
    """Run the timer pass by hand (beat runs it about every second)."""


@timers.command("tick")
def tick() -> None:
    """One pass over the due timers: fire what is due, record what was missed."""
    if resources.settings.is_embedded:
        embedded_worker.start()
    report = timer_pass(resources.database, resources.settings)
    click.echo(
        f"{report.fired} tick(s) fired, {report.missed} recorded missed,"
        f" {report.raced} taken by another pass"
    )
    _show(report.enforced)
