"""Pack environments end to end: real ``celery -A attune worker`` processes on PostgreSQL + Redis,
the ``attune`` command line, offline from a local wheelhouse."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import attune
from attune.store.models import ExecutionEnvironment, ExecutionStatus, PackEnvironment
from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear
from tests.environments.conftest import env_pack
from tests.processes import wait_until

pytestmark = pytest.mark.slow


class Deployment:
    """The cluster, its packs directory and the ATTUNE_ENV* settings its workers share."""

    def __init__(self, running: Cluster, worker_env: dict[str, str]) -> None:
        self.cluster = running
        self.worker_env = worker_env
        self.packs_dir = Path(running.fleet.env["ATTUNE_PACKS_DIR"])

    def cli(self, *args: str, **env: str) -> tuple[int, str, str]:
        done = attune_cli(self.cluster.fleet.environment({**self.worker_env, **env}), *args)
        return done.returncode, done.stdout, done.stderr

    def load(self, pack: str) -> None:
        code, _out, err = self.cli("packs", "load", "--pack-name", pack)
        assert code == 0, err

    def uses(self, ids: list[int]) -> list[ExecutionEnvironment]:
        with self.cluster.database.session_scope() as session:
            query = select(ExecutionEnvironment).where(ExecutionEnvironment.execution_id.in_(ids))
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def statuses(self, pack: str) -> list[str]:
        with self.cluster.database.session_scope() as session:
            query = select(PackEnvironment.status).where(PackEnvironment.pack == pack)
            return list(session.scalars(query))


@pytest.fixture(scope="module")
def deployment(
    postgres_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    wheelhouse: Path,
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("envcluster")
    worker_env = {
        "ATTUNE_ENVS_DIR": str(workdir / "envs"),
        "ATTUNE_ENV_OFFLINE": "1",
        "ATTUNE_ENV_FIND_LINKS": str(wheelhouse),
        "ATTUNE_ENV_INSTALLER": "uv",
    }
    with cluster(postgres_url, redis_url, workdir) as running:
        deployed = Deployment(running, worker_env)
        env_pack(deployed.packs_dir, "warm", "demo-lib==1.0\n# warmed up\n")
        deployed.load("warm")
        fleet = running.fleet
        prefork = fleet.worker("w-envs-a", runtimes=["python"], concurrency=3, env=worker_env)
        threads = fleet.worker(
            "w-envs-b", runtimes=["python"], concurrency=7, env=worker_env, args=["-P", "threads"]
        )
        fleet.wait_registered(running.database, prefork, threads)
        yield deployed
        running.stop_all()
        clear(running.database)


def test_a_worker_builds_the_loaded_packs_environments_at_start(deployment: Deployment) -> None:
    wait_until(lambda: deployment.statuses("warm") == ["ready"], 120, "the warm-up build")

    record = attune.execute("warm.show").wait(60)

    assert record.status is ExecutionStatus.SUCCEEDED, record.error
    assert record.result["version"] == "1.0"
    (use,) = deployment.uses([record.id])
    assert (use.waited, use.built) == (False, False)


def test_ten_concurrent_first_executions_on_two_workers_build_once(
    deployment: Deployment,
) -> None:
    env_pack(deployment.packs_dir, "crowd", "demo-lib==2.0\n# ten at once\n")
    deployment.load("crowd")

    handles = [attune.execute("crowd.show") for _ in range(10)]
    records = [handle.wait(120) for handle in handles]

    assert [record.status for record in records] == [ExecutionStatus.SUCCEEDED] * 10
    assert {record.result["version"] for record in records} == {"2.0"}
    uses = deployment.uses([record.id for record in records])
    assert sum(use.built for use in uses) == 1
    assert sum(use.waited for use in uses) >= 1  # another waited on the lock, then used it
    assert len({use.key for use in uses}) == 1
    assert deployment.statuses("crowd") == ["ready"]


def test_packs_prepare_then_an_offline_worker_runs_without_building(
    deployment: Deployment, tmp_path: Path, wheelhouse: Path
) -> None:
    image_wheels = tmp_path / "image-wheels"
    shutil.copytree(wheelhouse, image_wheels)
    settings = {"ATTUNE_ENV_FIND_LINKS": str(image_wheels)}
    env_pack(deployment.packs_dir, "baked", "demo-lib==1.0\n# baked into an image\n")
    deployment.load("baked")

    code, out, err = deployment.cli("packs", "prepare", "baked", **settings)
    shutil.rmtree(image_wheels)  # the worker host has no packages at all
    offline = deployment.cluster.fleet.worker(
        "w-offline", runtimes=["python"], env={**deployment.worker_env, **settings}
    )
    deployment.cluster.fleet.wait_registered(deployment.cluster.database, offline)
    record = attune.execute("baked.show", worker="w-offline").wait(60)
    _code, shown, _err = deployment.cli("executions", "get", str(record.id))
    _code, listed, _err = deployment.cli("packs", "envs", "baked", "--json")
    offline.stop()

    assert code == 0, err
    assert out.startswith("baked: built ")
    assert record.status is ExecutionStatus.SUCCEEDED, record.error
    assert record.worker == "w-offline"
    (use,) = deployment.uses([record.id])
    assert (use.waited, use.built) == (False, False)
    assert f"environment: {use.key[:16]} on {socket.gethostname()} (was ready)" in shown
    (row,) = json.loads(listed)
    assert (row["pack"], row["status"], row["key"]) == ("baked", "ready", use.key)
    assert row["installer"].startswith("uv ")
    assert row["size_bytes"] > 0


def test_a_failed_build_shows_in_packs_envs_and_executions_get(deployment: Deployment) -> None:
    env_pack(deployment.packs_dir, "broken", "nowhere-lib==9.9\n")
    deployment.load("broken")

    record = attune.execute("broken.show").wait(60)
    _code, shown, _err = deployment.cli("executions", "get", str(record.id), "--json")
    _code, table, _err = deployment.cli("packs", "envs", "broken")

    assert record.status is ExecutionStatus.FAILED
    assert "could not be built on host" in (record.error or "")
    assert "nowhere-lib" in (record.error or "")
    environment = json.loads(shown)["environment"]
    assert (environment["waited"], environment["built"]) == (True, True)
    assert " broken " in table
    assert " failed " in table
    assert "nowhere-lib" in table
