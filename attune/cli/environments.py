"""``attune packs envs`` and ``attune packs prepare``: the packs' Python environments per host."""

from __future__ import annotations

import json

import click

from attune.executions import env_records, environments
from attune.executions.env_records import EnvironmentRow
from attune.store.resources import resources


@click.command("envs")
@click.argument("pack", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as a JSON array.")
@click.option(
    "--prune",
    is_flag=True,
    help="Remove this host's environments that match no current key and that no process uses.",
)
def envs(pack: str | None, as_json: bool, prune: bool) -> None:
    """Show the packs' Python environments on every host (of PACK only, when given)."""
    if prune:
        for path in environments.prune(resources.database, resources.settings):
            click.echo(f"removed {path}")
    with resources.database.session_scope() as session:
        rows = env_records.environments(session, pack)
    if as_json:
        click.echo(json.dumps([row.to_json() for row in rows]))
        return
    if not rows:
        if not prune:
            click.echo("no environments recorded", err=True)
        return
    click.echo(
        f"{'HOST':<20} {'PACK':<16} {'KEY':<16}  {'STATUS':<8} {'PYTHON':<8} "
        f"{'INSTALLER':<12} {'BUILT AT':<19} {'SIZE':>9}"
    )
    for row in rows:
        click.echo(_line(row))
        if row.error:
            click.echo("    " + row.error.replace("\n", "\n    "))


def _line(row: EnvironmentRow) -> str:
    built_at = "-" if row.built_at is None else f"{row.built_at:%Y-%m-%d %H:%M:%S}"
    size = "-" if row.size_bytes is None else _size(row.size_bytes)
    return (
        f"{row.host:<20} {row.pack:<16} {row.key[:16]:<16}  {row.status:<8} {row.python:<8} "
        f"{row.installer:<12} {built_at:<19} {size:>9}"
    )


def _size(size_bytes: int) -> str:
    """``12 kB``, ``3.4 MB``: a size readable at a glance."""
    if size_bytes < 1_000_000:
        return f"{size_bytes / 1000:.0f} kB"
    return f"{size_bytes / 1_000_000:.1f} MB"


@click.command("prepare")
@click.argument("names", nargs=-1, metavar="[PACK]...")
@click.option(
    "--force", is_flag=True, help="Rebuild even ready environments; clears a failure's backoff."
)
def prepare(names: tuple[str, ...], force: bool) -> None:
    """Build the Python environments of loaded packs on this host (every pack when none given)."""
    results = environments.prepare(resources.database, resources.settings, names, force=force)
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            click.echo(f"error: {result.error}", err=True)
        else:
            how = "built" if result.built else "ready"
            click.echo(f"{result.pack}: {how} {result.key} at {result.path}")
    if not results:
        click.echo("no pack has a requirements.txt", err=True)
    if failed:
        raise click.ClickException(f"{failed} environment(s) not ready")
