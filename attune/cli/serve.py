"""``attune serve``: the HTTP API on uvicorn, bound to loopback unless told otherwise."""

from __future__ import annotations

import ipaddress

import click

from attune.access.keys import any_usable_key
from attune.worker.app import resources


def is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log a line per request answered (uvicorn's access log, on stdout).",
)
def serve(host: str, port: int, access_log: bool) -> None:
    """Serve the HTTP API (and, on the embedded default, run the worker in this process).

    A non-loopback --host is refused until an API key exists (`attune apikey create`).
    The access log costs about a fifth of a plain page's time on this server; a deployment
    logging requests at its proxy can turn it off.
    """
    import uvicorn

    from attune.api import create_app

    loopback = is_loopback(host)
    if not loopback:
        with resources.database.session_scope() as session:
            if not any_usable_key(session):
                raise click.UsageError(
                    f"--host {host} is not a loopback address and no API key exists: "
                    "create one first (attune apikey create NAME --scope admin)"
                )
    app = create_app(resources.settings, loopback=loopback)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
