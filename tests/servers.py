"""Private Redis and PostgreSQL servers a test may restart: the shared ones must never be.

Each runs on a free port with its data in a temporary directory of its own and is stopped
and removed by its context manager. :meth:`restart` stops the server the way an operator's
restart does (Redis ``SHUTDOWN``, saving its append-only file; PostgreSQL ``pg_ctl restart
-m fast``, cutting every connection) and starts it again on the same port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.conftest import missing, server_available
from tests.processes import free_port, wait_until

START_TIMEOUT_S = 30.0


@dataclass
class PrivateRedis:
    """A ``redis-server`` of the test's own, persisting to an append-only file."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.directory), "--appendonly", "yes", "--save", ""]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, START_TIMEOUT_S, f"redis on port {self.port}")

    def stop(self) -> None:
        """Shut it down (its data saved) and wait for the process to end."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(START_TIMEOUT_S)
        self.process = None

    def restart(self) -> None:
        """Stop it, then start it again on the same port."""
        self.stop()
        self.start()

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis`, stopped and removed afterwards."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not on PATH")
    directory = Path(tempfile.mkdtemp(prefix="attune-redis-"))
    server = PrivateRedis(free_port(), directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (trust authentication, user ``postgres``)."""

    bin_dir: Path
    port: int
    directory: Path

    @property
    def url(self) -> str:
        """Its ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def initdb(self) -> None:
        """Create the cluster's files."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        """Start it (``pg_ctl start -w``: it returns once the server accepts connections)."""
        data, log = str(self.data), str(self.log)
        self._run("pg_ctl", "-D", data, "-l", log, "-o", self._options(), "-w", "start")
        wait_until(lambda: server_available("127.0.0.1", self.port), START_TIMEOUT_S, "postgres")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, then it starts again."""
        data, log = str(self.data), str(self.log)  # its options are kept from the start
        self._run("pg_ctl", "-D", data, "-l", log, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        """Stop it at once."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.directory / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.directory / "postgres.log"

    def _options(self) -> str:
        settings = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": self.directory,
            "fsync": "off",
        }
        return " ".join(f"-c {name}={value}" for name, value in settings.items())

    def _run(self, program: str, *args: str) -> None:
        argv = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started :class:`PrivatePostgres`, stopped and removed afterwards."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else shutil.which("initdb")
    if initdb is None:
        missing("PostgreSQL's initdb is not in /usr/lib/postgresql/*/bin nor on PATH")
    directory = Path(tempfile.mkdtemp(prefix="attune-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    server = PrivatePostgres(Path(str(initdb)).parent, free_port(), directory)
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
