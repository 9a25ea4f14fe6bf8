"""One deployment for the workflow tests: two real workers serving shell, python and workflow
(three slots each), a real ``celery beat`` (the sweep every 0.3 s, the workflows' safety net
every 2 s) on PostgreSQL + Redis, and the ``wf`` pack loaded. Skipped locally without the
servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear
from tests.workflows.pack import PACK, write_wf_pack

RUNTIMES = ("shell", "python", "workflow")
SLOTS = 3


@pytest.fixture(scope="package")
def deployment(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The running deployment, shared by the package's tests on PostgreSQL + Redis."""
    with cluster(postgres_url, redis_url, tmp_path_factory.mktemp("workflows")) as running:
        write_wf_pack(Path(running.fleet.env["ATTUNE_PACKS_DIR"]))
        loaded = attune_cli(running.fleet.environment(), "packs", "load", "--pack-name", PACK)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        workers = [
            running.fleet.worker(name, runtimes=RUNTIMES, concurrency=SLOTS)
            for name in ("wf-one", "wf-two")
        ]
        running.fleet.beat()
        running.fleet.wait_registered(running.database, *workers)
        yield running
        # Killed, not stopped: nothing is left to flush, and beat's SIGTERM is at times
        # swallowed (raised inside a garbage-collector callback, "Exception ignored").
        running.fleet.close()
        clear(running.database)
