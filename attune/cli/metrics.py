"""``attune metrics serve``: the Prometheus endpoint of the worker table and the counters."""

from __future__ import annotations

import threading

import click

from attune import metrics as instruments
from attune.worker.app import resources


@click.group("metrics")
def metrics() -> None:
    """Prometheus metrics."""


@metrics.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="TCP port to serve on.")
def serve(port: int) -> None:
    """Serve the gauges read from the database (attune_workers{status}, the last sweep's
    time) and the counters, until interrupted.

    The counters are those of this process, or of every process counting into
    PROMETHEUS_MULTIPROC_DIR when it is set; each worker serves its own with ATTUNE_METRICS_PORT.
    """
    server = instruments.serve(port, resources.database)
    click.echo(f"serving metrics on http://0.0.0.0:{port}/metrics (Ctrl+C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
