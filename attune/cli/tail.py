"""``attune executions tail ID``: follow an execution's output from the HTTP API."""

from __future__ import annotations

import json
import sys

import click
import httpx
from httpx_sse import SSEError, connect_sse

from attune.worker.app import resources

RECONNECTS = 5
"""How often a dropped stream is reopened before ``tail`` gives up."""


@click.command("tail")
@click.argument("execution_id", type=int)
def tail(execution_id: int) -> None:
    """Follow execution ID's stdout and stderr from the server at ATTUNE_API_URL.

    Exits 0 exactly when the execution succeeded (as ``attune run``).
    """
    settings = resources.settings
    headers = {} if settings.api_key is None else {"Authorization": f"Bearer {settings.api_key}"}
    url = f"{settings.api_url}/api/v1/executions/{execution_id}/output/stream"
    printed = {"stdout": 0, "stderr": 0}
    outputs = {"stdout": sys.stdout, "stderr": sys.stderr}
    with httpx.Client(headers=headers, timeout=httpx.Timeout(30, read=None)) as client:
        for attempt in range(RECONNECTS + 1):
            try:
                with connect_sse(client, "GET", url) as source:
                    if source.response.status_code != 200:
                        raise click.ClickException(_problem(source.response))
                    for event in source.iter_sse():
                        if event.event in outputs:
                            data = json.loads(event.data)
                            skip = max(0, printed[event.event] - data["offset"])
                            outputs[event.event].write(data["text"][skip:])
                            outputs[event.event].flush()
                            printed[event.event] = max(
                                printed[event.event], data["offset"] + len(data["text"])
                            )
                        elif event.event == "end":
                            sys.exit(0 if json.loads(event.data)["status"] == "succeeded" else 1)
                        elif event.event in ("truncated", "live output unavailable"):
                            click.echo(f"attune: {event.event}: {event.data}", err=True)
            except (httpx.TransportError, SSEError) as exc:
                if attempt == RECONNECTS:
                    raise click.ClickException(f"{settings.api_url}: {exc}") from exc
    raise click.ClickException(f"{url}: the stream ended without an end event")


def _problem(response: httpx.Response) -> str:
    """One line saying why the server refused, from its problem document when it sent one."""
    response.read()
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title")
    except ValueError:
        detail = response.text
    return f"{response.request.url}: {response.status_code} {detail}"
