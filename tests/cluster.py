"""Real attune deployments for end-to-end tests: `celery -A attune worker` processes on
PostgreSQL + Redis, a packs directory of their own, and this process configured as a caller.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from attune.db import Database
from attune.models import Worker, WorkerStatus

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.02)


def packs_copy(target: Path) -> Path:
    """The shipped packs plus the tests' own ``testing`` pack, copied under ``target``."""
    packs_dir = target / "packs"
    shutil.copytree(ROOT / "packs", packs_dir, symlinks=True)
    shutil.copytree(ROOT / "tests" / "packs" / "testing", packs_dir / "testing")
    return packs_dir


def attune_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``attune`` command line as a user would."""
    return subprocess.run(
        [str(BIN / "attune"), *args], env=dict(env), capture_output=True, text=True, check=False
    )


@dataclass
class Cluster:
    """A database, a broker and named worker processes sharing one environment."""

    env: dict[str, str]
    database: Database
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(
        self, name: str, runtimes: str, concurrency: int = 2, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        """Start `celery -A attune worker` as ``name`` and wait until it is registered."""
        env = {**self.env, "ATTUNE_WORKER_NAME": name, "ATTUNE_WORKER_RUNTIMES": runtimes}
        env.update(extra_env)
        process = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "attune",
                "worker",
                "-c",
                str(concurrency),
                "--without-mingle",
                "--without-gossip",
                "-l",
                "warning",
                "-n",
                f"{name}@%h",
            ],
            cwd=ROOT,
            env=env,
        )
        self.workers[name] = process
        until(lambda: self.worker_status(name) == WorkerStatus.ACTIVE, 60, f"worker {name}")
        return process

    def worker_status(self, name: str) -> str | None:
        """The status of worker ``name`` in the worker table."""
        with self.database.session_scope() as session:
            return session.scalar(select(Worker.status).where(Worker.name == name))

    def stop_all(self) -> None:
        """Warm-stop every worker and wait for it."""
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers.clear()


@contextmanager
def cluster(
    postgres_url: str, redis_url: str, workdir: Path, **extra_env: str
) -> Iterator[Cluster]:
    """A cluster on ``postgres_url`` and ``redis_url`` with the packs loaded; this process is
    configured as its caller (attune's settings and the Celery app's broker)."""
    from attune.celery_app import app, resources
    from attune.settings import Settings

    env = {
        **os.environ,
        "ATTUNE_DATABASE_URL": postgres_url,
        "ATTUNE_BROKER_URL": redis_url,
        "ATTUNE_PACKS_DIR": str(packs_copy(workdir)),
        "ATTUNE_SECRET_KEY": Fernet.generate_key().decode(),
        "ATTUNE_KILL_GRACE_S": "1",
        **extra_env,
    }
    loaded = attune_cli(env, "packs", "load")
    assert loaded.returncode == 0, loaded.stderr
    saved = dict(os.environ)
    os.environ.update(env)
    resources.configure(Settings.from_env())
    app.conf.update(broker_url=redis_url)
    database = Database.from_url(postgres_url)
    deployment = Cluster(env=env, database=database)
    try:
        yield deployment
    finally:
        deployment.stop_all()
        database.dispose()
        os.environ.clear()
        os.environ.update(saved)
        resources.configure(Settings.from_env())
