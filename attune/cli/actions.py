"""``attune actions``: list the loaded actions and show one in full."""

from __future__ import annotations

import json
from typing import Any

import click

from attune.executions import params
from attune.executions.policies import Policy
from attune.packs.upsert import find_action, find_actions
from attune.store.models import MASK, Action
from attune.worker.app import resources


@click.group()
def actions() -> None:
    """List and inspect the loaded actions."""


@actions.command("list")
@click.option("--pack", "pack", metavar="PACK", default=None, help="Only this pack's actions.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_actions(pack: str | None, as_json: bool) -> None:
    """List the loaded actions, by ref."""
    with resources.database.session_scope() as session:
        rows = [_as_dict(row) for row in find_actions(session, pack)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no actions loaded" + (f" for pack {pack!r}" if pack else ""), err=True)
        return
    width = max(len(row["ref"]) for row in rows)
    for row in rows:
        state = "" if row["enabled"] else " (disabled)"
        click.echo(f"{row['ref']:<{width}}  {row['runner_type']:<6}  {row['description']}{state}")


@actions.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(ref: str, as_json: bool) -> None:
    """Show one action: its runner, entry point, formats, timeout and parameters."""
    with resources.database.session_scope() as session:
        row = _as_dict(find_action(session, ref))
    default_timeout_s = resources.settings.default_timeout_s
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    for line in _describe(row, default_timeout_s):
        click.echo(line)


def _as_dict(action: Action) -> dict[str, Any]:
    """The action as JSON-ready data; the defaults of secret parameters are masked."""
    secrets = params.secret_names(action.parameters)
    parameters = {
        name: {**spec, "default": MASK} if name in secrets and "default" in spec else spec
        for name, spec in action.parameters.items()
    }
    return {
        "ref": action.ref,
        "pack": action.ref.partition(".")[0],
        "label": action.label,
        "description": action.description,
        "enabled": action.enabled,
        "tags": action.tags,
        "runner_type": action.runner_type,
        "entry_point": action.entry_point,
        "parameters": parameters,
        "parameter_delivery": action.parameter_delivery,
        "parameter_format": action.parameter_format,
        "output_format": action.output_format,
        "timeout_s": action.timeout_s,
        "policy": action.policy,
        "created_at": action.created_at.isoformat(),
        "updated_at": action.updated_at.isoformat(),
    }


def _describe(row: dict[str, Any], default_timeout_s: float) -> list[str]:
    timeout = f"{row['timeout_s']} s"
    if row["timeout_s"] is None:
        timeout = f"{default_timeout_s:g} s (the default, ATTUNE_DEFAULT_TIMEOUT_S)"
    lines = [
        row["ref"] + ("" if row["enabled"] else " (disabled)"),
        f"  label:        {row['label']}",
        f"  description:  {row['description']}",
        f"  runner:       {row['runner_type']} actions/{row['entry_point']}",
        f"  parameters:   {row['parameter_format']} on {row['parameter_delivery']}",
        f"  output:       {row['output_format']}",
        f"  timeout:      {timeout}",
        f"  tags:         {', '.join(row['tags']) or '-'}",
        *(f"  {line}" for line in Policy.from_json(row["policy"]).describe()),
    ]
    if not row["parameters"]:
        return [*lines, "  (no parameters)"]
    width = max(len(name) for name in row["parameters"])
    for name, spec in row["parameters"].items():
        lines.append(f"  {name:<{width}}  {_parameter(spec)}")
    return lines


def _parameter(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "any")
    parts = ["|".join(kind) if isinstance(kind, list) else str(kind)]
    parts += [flag for flag in ("required", "secret") if spec.get(flag) is True]
    if "default" in spec:
        parts.append(f"default {json.dumps(spec['default'])}")
    if "enum" in spec:
        parts.append("one of " + ", ".join(json.dumps(value) for value in spec["enum"]))
    bounds = [f"{key} {spec[key]}" for key in ("minimum", "maximum") if key in spec]
    described = f" - {spec['description']}" if spec.get("description") else ""
    return ", ".join(parts + bounds) + described
