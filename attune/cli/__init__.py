"""The ``attune`` command line: the only place that prints or exits.

Each command group is imported when it runs, not before: ``attune packs load`` never imports
Celery, the client or the metrics (a command line pays for the imports of what it runs only).
"""

from __future__ import annotations

import importlib
from typing import Any

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from attune import __version__
from attune.errors import AttuneError
from attune.settings import Settings
from attune.store.resources import resources

_COMMANDS = {
    "packs": "attune.cli.packs",
    "actions": "attune.cli.actions",
    "run": "attune.cli.run",
    "executions": "attune.cli.executions",
    "workers": "attune.cli.workers",
    "metrics": "attune.cli.metrics",
    "apikey": "attune.cli.apikey",
    "serve": "attune.cli.serve",
    "rules": "attune.cli.rules",
    "triggers": "attune.cli.triggers",
    "events": "attune.cli.triggers",
    "enforcements": "attune.cli.triggers",
    "timers": "attune.cli.triggers",
}
"""Each command's name and its module, which defines it under the same name."""


class AttuneGroup(click.Group):
    """A click group that turns attune's errors into one clear line and exit status 1, and
    imports a command's module only when the command is wanted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted."""
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, its module imported now (None when there is none)."""
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = getattr(importlib.import_module(module), cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report an AttuneError or an unreachable/unmigrated database."""
        try:
            return super().invoke(ctx)
        except AttuneError as exc:
            raise click.ClickException(str(exc)) from exc
        except (OperationalError, ProgrammingError) as exc:
            try:  # say whether the database is unreachable or not migrated, when that is why
                resources.database.require_schema()
            except AttuneError as reason:
                raise click.ClickException(str(reason)) from exc
            raise click.ClickException(f"database error: {exc.orig}") from exc


@click.group(cls=AttuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attune")
def main() -> None:
    """attune: run pack actions on Celery workers and record every execution in SQL."""
    resources.configure(Settings.from_env())
