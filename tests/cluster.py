"""A whole attune deployment for end-to-end tests: real workers (:mod:`tests.processes`) on
PostgreSQL + Redis, a packs directory of its own, and this process configured as the caller.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from attune.store.db import Database
from tests.processes import CeleryProcess, Processes, caller_conf

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def packs_copy(target: Path) -> Path:
    """The shipped packs plus the tests' own (``testing``, ``policies``), copied under
    ``target``."""
    packs_dir = target / "packs"
    shutil.copytree(ROOT / "packs", packs_dir, symlinks=True)
    for pack in sorted((ROOT / "tests" / "packs").iterdir()):
        shutil.copytree(pack, packs_dir / pack.name)
    return packs_dir


def attune_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``attune`` command line as a user would."""
    return subprocess.run(
        [str(BIN / "attune"), *args], env=dict(env), capture_output=True, text=True, check=False
    )


def embedded_environment(workdir: Path, **extra: str) -> dict[str, str]:
    """The embedded default in ``workdir``: SQLite migrated, the packs (``testing`` too) loaded."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ATTUNE_")}
    env.update(
        ATTUNE_DATABASE_URL=f"sqlite:///{workdir / 'attune.db'}",
        ATTUNE_PACKS_DIR=str(packs_copy(workdir)),
        ATTUNE_BROKER_URL="memory://",
        **extra,
    )
    migrated = subprocess.run(
        [str(BIN / "alembic"), "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    loaded = attune_cli(env, "packs", "load")
    assert loaded.returncode == 0, loaded.stderr
    return env


@dataclass
class Cluster:
    """Named worker processes sharing one database, broker and packs directory."""

    fleet: Processes
    database: Database

    def start_worker(self, name: str, runtimes: Sequence[str]) -> CeleryProcess:
        """Start `celery -A attune worker -c 2` as ``name`` and wait until it is registered."""
        process = self.fleet.worker(name, runtimes=runtimes, concurrency=2)
        self.fleet.wait_registered(self.database, process)
        return process

    def stop_all(self) -> None:
        """Warm-stop every worker and wait for it. One that does not stop in time fails the
        test, but only once every other process was stopped and the fleet closed: a process
        left behind would go on writing in the run's shared database, failing later tests."""
        late: list[AssertionError] = []
        try:
            for process in self.fleet.started:
                try:
                    process.stop()
                except AssertionError as failure:
                    late.append(failure)
        finally:
            self.fleet.close()
        if late:
            raise late[0]


@contextmanager
def cluster(postgres_url: str, broker_url: str, workdir: Path) -> Iterator[Cluster]:
    """A deployment on ``postgres_url`` and ``broker_url`` with the packs loaded, this process
    configured as its caller (attune's settings and the Celery app's broker)."""
    import redis

    from attune.settings import Settings
    from attune.worker.app import app, resources

    if broker_url.startswith("redis://"):
        # Nothing of an earlier deployment on this Redis database (messages, live output
        # streams of executions whose ids a cleared database hands out again) reaches this one.
        client = redis.Redis.from_url(broker_url)
        client.flushdb()
        client.close()
    fleet = Processes(
        database_url=postgres_url,
        broker_url=broker_url,
        log_dir=workdir,
        env={
            "ATTUNE_PACKS_DIR": str(packs_copy(workdir)),
            "ATTUNE_SECRET_KEY": Fernet.generate_key().decode(),
            "ATTUNE_KILL_GRACE_S": "1",
        },
    )
    caller_env = {
        key: value for key, value in fleet.environment().items() if key.startswith("ATTUNE_")
    }
    loaded = attune_cli(fleet.environment(), "packs", "load")
    assert loaded.returncode == 0, loaded.stderr
    saved = dict(os.environ)
    os.environ.update(caller_env)
    settings = Settings.from_env(caller_env)
    resources.configure(settings)
    saved_conf = {key: app.conf.get(key) for key in caller_conf(settings)}
    reconfigure(app, caller_conf(settings))
    database = Database.from_url(postgres_url)
    deployment = Cluster(fleet=fleet, database=database)
    try:
        yield deployment
    finally:
        deployment.stop_all()
        database.dispose()
        os.environ.clear()
        os.environ.update(saved)
        resources.configure(Settings.from_env())
        reconfigure(app, saved_conf)


def reconfigure(app: Any, conf: Mapping[str, Any]) -> None:
    """Point a Celery app at another broker: it picks its (kombu's, shared) connection pools
    and makes its queue table anew from ``conf`` when next used."""
    app._pool = None
    app.__dict__.pop("amqp", None)  # cached: its producer pool, queue table, router, sender
    app.conf.update(conf)
