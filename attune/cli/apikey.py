"""``attune apikey``: create, list and revoke the HTTP API's keys."""

from __future__ import annotations

import json

import click

from attune.access.keys import Scope, create_key, list_keys, revoke_key
from attune.worker.app import resources


@click.group("apikey")
def apikey() -> None:
    """API keys of the HTTP API (`attune serve`)."""


@apikey.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in Scope]),
    required=True,
    help="read: GETs and streams; operate: + execute, cancel, rerun; admin: + keys.",
)
@click.option("--expires-days", type=float, default=None, help="Expire after N days.")
def create(name: str, scope: str, expires_days: float | None) -> None:
    """Create key NAME and print its token, once: only a SHA-256 of it is stored."""
    with resources.database.session_scope() as session:
        token = create_key(session, name, Scope(scope), expires_days)
    click.echo(token)


@apikey.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
def list_(as_json: bool) -> None:
    """Every key: name, scope, created, expires, revoked, last used (never the secret)."""
    with resources.database.session_scope() as session:
        views = list_keys(session)
    if as_json:
        click.echo(json.dumps([view.to_json() for view in views], indent=2))
        return
    moments = ("created_at", "expires_at", "revoked_at", "last_used_at")
    rows: list[tuple[str, ...]] = [("NAME", "SCOPE", "CREATED", "EXPIRES", "REVOKED", "LAST USED")]
    for view in views:
        fields = view.to_json()
        rows.append((view.name, view.scope.value, *((fields[key] or "-")[:19] for key in moments)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@apikey.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke key NAME at once."""
    with resources.database.session_scope() as session:
        revoke_key(session, name)
    click.echo(f"revoked {name}")
