"""The ``attune`` command line: the only place that prints or exits."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from attune import __version__
from attune.errors import AttuneError
from attune.settings import Settings
from attune.worker.app import resources


class AttuneGroup(click.Group):
    """A click group that turns attune's errors into one clear line and exit status 1."""

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


def _register() -> None:
    from attune.cli.actions import actions
    from attune.cli.apikey import apikey
    from attune.cli.executions import executions
    from attune.cli.metrics import metrics
    from attune.cli.packs import packs
    from attune.cli.run import run
    from attune.cli.serve import serve
    from attune.cli.tail import tail
    from attune.cli.workers import workers

    for command in (packs, actions, run, executions, workers, metrics, apikey, serve):
        main.add_command(command)
    executions.add_command(tail)


_register()
