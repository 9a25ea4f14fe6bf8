"""``attune packs``: load packs of actions from the packs directory into the database."""

from __future__ import annotations

from pathlib import Path

import click

from attune.packs.loader import load_packs
from attune.packs.upsert import PackReport
from attune.store.resources import resources


@click.group()
def packs() -> None:
    """Load packs of actions into the database; build and show their Python environments."""


@packs.command("load")
@click.option(
    "--pack-name",
    "names",
    multiple=True,
    metavar="NAME",
    help="Load only this pack (repeatable); every pack when none is given.",
)
@click.option(
    "--packs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the packs are (default: ATTUNE_PACKS_DIR, else ./packs).",
)
def load(names: tuple[str, ...], packs_dir: Path | None) -> None:
    """Validate packs and upsert their actions by ref; a pack with any problem writes nothing."""
    result = load_packs(resources.database, packs_dir or resources.settings.packs_dir, names)
    for report in result.reports:
        click.echo(_summary(report))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for refused in result.errors:
        click.echo(f"error: {refused}", err=True)
    if not result.reports and not result.errors:
        click.echo("no packs found", err=True)
    if result.errors:
        raise click.ClickException(f"{len(result.errors)} pack(s) not loaded")


def _register() -> None:
    from attune.cli.environments import envs, prepare

    packs.add_command(envs)
    packs.add_command(prepare)


_register()


def _summary(report: PackReport) -> str:
    rules = report.rules
    counted = rules.created + rules.updated + rules.unchanged + rules.removed
    rule_part = (
        f"; rules: {rules.created} created, {rules.updated} updated, "
        f"{rules.unchanged} unchanged, {rules.removed} removed"
        if counted
        else ""
    )
    return (
        f"{report.ref}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.removed} removed (pack {report.pack}){rule_part}"
    )
