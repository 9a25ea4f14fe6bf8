"""Real ``celery worker`` and ``celery beat`` processes for tests.

:class:`Processes` starts them with the run's PostgreSQL and Redis and liveness time scaled
down (heartbeat 0.2 s, multiplier 3, sweep 0.3 s), waits until a worker is registered, and
pauses, resumes, stops or kills them; :meth:`Processes.close` kills whatever is left, process
groups included. Helpers poll with deadlines instead of sleeping fixed times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery

from attune.executions.queues import worker_queue
from attune.settings import Settings
from attune.store.db import Database
from attune.worker.broker import TRANSPORT
from attune.worker.queues import AMQP, EXPIRES_KEY
from tests.rows import worker_row

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))

FAST_LIVENESS = {
    "ATTUNE_HEARTBEAT_INTERVAL_S": "0.2",
    "ATTUNE_HEARTBEAT_STALENESS_MULTIPLIER": "3",
    "ATTUNE_SWEEP_INTERVAL_S": "0.3",
}
"""Liveness time scaled down: heartbeat every 0.2 s, stale after 0.6 s, sweep every 0.3 s."""

HEARTBEAT_S = 0.2
THRESHOLD_S = 0.6
SWEEP_S = 0.3
START_TIMEOUT_S = 60.0

_T = TypeVar("_T")


def wait_until(
    probe: Callable[[], _T | bool | None],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> _T:
    """Call ``probe`` until it returns something truthy (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def markers(directory: Path, kind: str) -> int:
    """How many ``tests.celery_tasks`` tasks marked ``kind`` (started, finished) there."""
    return len(list(directory.glob(f"{kind}-*")))


def shifted_clock(seconds: float) -> dict[str, str]:
    """Environment that shifts a started process's ``time.time()`` by ``seconds``."""
    return {
        "ATTUNE_TEST_CLOCK_SHIFT_S": str(seconds),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "clockshift"), str(ROOT)]),
    }


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def caller_conf(settings: Settings) -> dict[str, Any]:
    """What ``celeryconfig`` would set for ``settings`` that a test process's Celery app
    needs to publish as the started processes do (it was imported with other variables)."""
    redis = settings.broker_url.startswith("redis://")
    return {
        "broker_url": settings.broker_url,
        "broker_transport": TRANSPORT if redis and settings.redis_transport == "attune" else None,
        EXPIRES_KEY: None if redis else settings.worker_queue_expires_s,
    }


@dataclass
class CeleryProcess:
    """One ``celery`` process a test started; ``name`` is the worker name (or ``beat``)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The main process's pid (the one that registers and heartbeats)."""
        return self.popen.pid

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the main process has not exited."""
        return self.popen.poll() is None

    def pause(self) -> None:
        """SIGSTOP the main process (its pool processes run on)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the main process."""
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """``kill -9`` the main process only, as a crash would."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send ``sig`` (SIGTERM: warm shutdown, SIGQUIT: cold) and wait for the exit status."""
        if self.alive():
            os.kill(self.pid, sig)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            # SIGABRT: faulthandler (PYTHONFAULTHANDLER) writes every thread's stack to the log.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
            self.destroy()
            stacks = self.log.rpartition("Fatal Python error")[2][-6000:]
            raise AssertionError(
                f"{self.name} did not exit within {timeout_s:g} s; its threads then:\n{stacks}"
            ) from None

    def destroy(self) -> None:
        """SIGKILL the whole process group (pool processes and their children too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


@dataclass
class Processes:
    """Starts celery processes against one database and broker; :meth:`close` ends them all."""

    database_url: str
    broker_url: str
    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    started: list[CeleryProcess] = field(default_factory=list)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a started process: no inherited ATTUNE_*, time scaled down."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("ATTUNE_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            ATTUNE_DATABASE_URL=self.database_url,
            ATTUNE_BROKER_URL=self.broker_url,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            PYTHONFAULTHANDLER="1",  # a process that hangs can be made to show its stacks
            **FAST_LIVENESS,
        )
        env.update(self.env)
        env.update(extra or {})
        return env

    def worker(
        self,
        name: str,
        *,
        runtimes: Sequence[str] = ("shell",),
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> CeleryProcess:
        """Start ``celery -A attune worker`` named ``name`` (it does not wait for it)."""
        argv = [
            CELERY,
            "-A",
            "attune",
            "worker",
            "-l",
            "info",
            "-n",
            f"{name}@localhost",
            "-c",
            str(concurrency),
            "--without-mingle",
            "--without-gossip",
            "--include",
            "tests.celery_tasks",
            *args,
        ]
        extra = {"ATTUNE_WORKER_NAME": name, "ATTUNE_WORKER_RUNTIMES": ",".join(runtimes)}
        return self._start(name, argv, {**extra, **(env or {})})

    def beat(self, env: Mapping[str, str] | None = None) -> CeleryProcess:
        """Start ``celery -A attune beat`` (the sweep every 0.3 s)."""
        argv = [CELERY, "-A", "attune", "beat", "-l", "info"]
        return self._start("beat", argv, env or {})

    def wait_registered(
        self, database: Database, *processes: CeleryProcess, timeout_s: float = START_TIMEOUT_S
    ) -> None:
        """Wait until each worker's row is active with its main process's pid."""
        for process in processes:

            def registered(process: CeleryProcess = process) -> bool:
                if not process.alive():
                    raise AssertionError(f"{process.name} exited:\n{process.log[-3000:]}")
                row = worker_row(database, process.name)
                return row is not None and (row.pid, row.status) == (process.pid, "active")

            wait_until(registered, timeout_s, f"worker {process.name} to register")

    def close(self) -> None:
        """Kill every process started here (whole process groups)."""
        for process in self.started:
            process.destroy()
        self.started.clear()

    def queues(self) -> list[str]:
        """The own queues of the workers started here."""
        return [worker_queue(process.name) for process in self.started if process.name != "beat"]

    def client(self) -> Celery:
        """A Celery app that publishes to the same broker, declaring queues as the workers do
        (close it after use)."""
        client = Celery("attune-tests", amqp=AMQP, set_as_current=False)
        client.config_from_object("celeryconfig")
        client.conf.update(caller_conf(Settings.from_env(self.environment())))
        return client

    def send(self, task: str, args: Iterable[Any], queue: str) -> None:
        """Publish one task message to ``queue``."""
        client = self.client()
        try:
            client.send_task(task, args=list(args), queue=queue)
        finally:
            client.close()

    def start_task(
        self, task: str, seconds: float, worker: str, marker_dir: Path, count: int = 1
    ) -> None:
        """Send ``count`` ``tests.celery_tasks`` tasks to ``worker``'s own queue; wait until all
        of them run."""
        for _ in range(count):
            self.send(task, [seconds, str(marker_dir)], worker_queue(worker))
        wait_until(lambda: markers(marker_dir, "started") >= count, 30, f"{count} {task} to start")

    def _start(self, name: str, argv: list[str], extra: Mapping[str, str]) -> CeleryProcess:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.environment(extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = CeleryProcess(name, popen, log_path)
        self.started.append(process)
        return process
