"""The ``attune`` command line: the only place that prints or exits."""

from __future__ import annotations

import click

from attune import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attune")
def main() -> None:
    """attune: run pack actions on Celery workers and record every execution in SQL."""


def _register() -> None:
    from attune.cli.executions import executions
    from attune.cli.metrics import metrics
    from attune.cli.workers import workers

    for group in (executions, metrics, workers):
        main.add_command(group)


_register()
