"""``attune rules``: list, show, enable, disable, schedule and test the loaded rules."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from itertools import islice

import click
from sqlalchemy import select

from attune.cli.triggers import parse_payload
from attune.rules import catalog, tester, triggers
from attune.rules.schedules import schedule_of
from attune.store.models import EnforcementStatus
from attune.store.sqltypes import db_now
from attune.worker.app import resources


@click.group("rules")
def rules() -> None:
    """List, show, enable, disable, schedule and test rules."""


def _time(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_(as_json: bool) -> None:
    """Every loaded rule: enabled, trigger type, action, next fire time (timers)."""
    with resources.database.session_scope() as session:
        views = catalog.list_rules(session)
    if as_json:
        click.echo(json.dumps([view.to_json() for view in views], indent=2))
        return
    rows = [("REF", "ENABLED", "TRIGGER", "ACTION", "NEXT FIRE (UTC)")]
    rows += [
        (
            view.rule.ref,
            "yes" if view.rule.enabled else "no",
            view.rule.trigger_type,
            view.rule.action_ref,
            _time(view.next_fire_time),
        )
        for view in views
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@rules.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print as one JSON object.")
def show(ref: str, as_json: bool) -> None:
    """One rule, as loaded, with its timer cursor."""
    with resources.database.session_scope() as session:
        view = catalog.find_rule(session, ref)
    document = view.to_json()
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for key, value in document.items():
        shown = value if isinstance(value, str | bool) or value is None else json.dumps(value)
        click.echo(f"{key}: {shown}")


def _set(ref: str, enabled: bool) -> None:
    with resources.database.session_scope() as session:
        changed = catalog.set_enabled(session, ref, enabled)
    state = "enabled" if enabled else "disabled"
    click.echo(f"{ref} {state}" if changed else f"{ref} was already {state}")


@rules.command("enable")
@click.argument("ref")
def enable(ref: str) -> None:
    """Enable a rule (a timer starts now: nothing is backfilled)."""
    _set(ref, True)


@rules.command("disable")
@click.argument("ref")
def disable(ref: str) -> None:
    """Disable a rule (its timer cursor is dropped)."""
    _set(ref, False)


@rules.command("schedule")
@click.argument("ref")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def schedule(ref: str, count: int, as_json: bool) -> None:
    """The next fire times of a timer rule, in UTC and in the rule's timezone."""
    with resources.database.session_scope() as session:
        rule = catalog.find_rule(session, ref).rule
        now = session.scalar(select(db_now()))
    if rule.trigger_type not in triggers.TIMER_TYPES:
        raise click.ClickException(f"rule {ref!r} has trigger {rule.trigger_type}, not a timer")
    assert now is not None
    plan = schedule_of(rule.trigger_type, rule.trigger_params)
    times = [(tick, plan.local(tick)) for tick in islice(plan.after(now), count)]
    if as_json:
        rows = [{"utc": utc.isoformat(), "local": local.isoformat()} for utc, local in times]
        click.echo(json.dumps(rows, indent=2))
        return
    for utc, local in times:
        click.echo(f"{utc.isoformat()}  {local.isoformat()} ({plan.timezone})")
    if not times:
        click.echo("no further fire times")


@rules.command("test")
@click.argument("ref")
@click.option("--payload", default="{}", help="The trigger payload, as a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object.")
def test(ref: str, payload: str, as_json: bool) -> None:
    """What rule REF would do with a payload; creates nothing. Exit 0 match, 1 no match,
    2 error (render failed, invalid parameters, action missing)."""
    with resources.database.session_scope() as session:
        verdict = tester.trial(session, ref, parse_payload(payload))
    if as_json:
        click.echo(json.dumps(verdict.to_json(), indent=2))
    else:
        for check in verdict.checks:
            mark = "ok" if check.ok else f"FAIL ({check.why})"
            click.echo(
                f"{check.key} {check.op} {json.dumps(check.expected)}:"
                f" actual {json.dumps(check.actual)} -> {mark}"
            )
        click.echo(f"parameters: {json.dumps(dict(verdict.parameters))}")
        click.echo(
            f"verdict: {verdict.status.value}" + (f": {verdict.reason}" * bool(verdict.reason))
        )
    codes = {EnforcementStatus.SCHEDULED: 0, EnforcementStatus.NO_MATCH: 1}
    sys.exit(codes.get(verdict.status, 2))
