"""The ``attune`` command line: the only place that prints or exits."""

from __future__ import annotations

import click

from attune import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attune")
def main() -> None:
    """attune: run pack actions on Celery workers and record every execution in SQL."""


from attune.cli.actions import actions  # noqa: E402 - registered after main is defined
from attune.cli.packs import packs  # noqa: E402

main.add_command(packs)
main.add_command(actions)
