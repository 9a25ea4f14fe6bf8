"""Benchmark: ``GET /api/v1/executions?limit=50`` on a table of 1,000,000 executions.

Run by ``make bench``. It creates its own database ``attune_bench_api_<pid>``, migrates it,
fills it with ``INSERT … SELECT generate_series`` and drops it afterwards. It serves the API
with a real ``attune serve`` (uvicorn) and asks with a keep-alive httpx client and an API key,
beside the bare SQL query the route runs (psycopg, same page), in one run:

- first page and a deep cursor (the middle of the table), each ≤ 2 × its bare query (issue 16),
  the served and the bare calls alternating so that both see the same load;
- the deep page ÷ the first: a keyset page costs the same wherever it is.

The served side is timed with a keep-alive client of the standard library (``http.client``),
as lean a caller as psycopg is on the bare side; the same pages through httpx are printed
beside, for reference: httpx spends about 0.2 ms of Python per request on this machine,
which is the client's cost, not the server's. The bare query is the page's rows as a caller
would select them (no JSON), so the server's JSON writing counts against it.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from attune.access.keys import Scope, create_key
from attune.store.db import Database

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("ATTUNE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
ROWS = 1_000_000
ROUNDS = 300
PAGE = 50
_FILL = """
INSERT INTO execution (action_ref, parameters, status, worker, exit_code, stdout, stderr,
                       stdout_truncated, stderr_truncated, requested_at, started_at, finished_at,
                       duration_ms)
SELECT (ARRAY['core.echo', 'core.sleep', 'examples.list_example'])[1 + n % 3],
       '{}'::jsonb,
       (ARRAY['succeeded', 'succeeded', 'succeeded', 'failed', 'timeout', 'canceled'])[1 + n % 6],
       'w' || (n % 20), 0, 'output ' || n, '', false, false,
       now() - make_interval(secs => :rows - n), now(), now(), 5
FROM generate_series(1, :rows) AS n
"""
_BARE = (
    "SELECT id, action_ref, status, worker, exit_code, error, requested_by, requested_at,"
    " started_at, finished_at, duration_ms FROM execution WHERE id < %s"
    " ORDER BY id DESC LIMIT %s"
)


def main() -> int:
    """Create and fill the database, serve it, time both paths, print ratios, drop it."""
    with filled_database("api") as (url, token), served(url, token) as client:
        print(f"load before: {load()}")
        bench_list(url, client)
        print(f"load after:  {load()}")
    return 0


def load() -> str:
    """The machine's load averages (1, 5, 15 min): the benchmark shares 2 cores."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def filled_database(purpose: str, rows: int = ROWS) -> Iterator[tuple[str, str]]:
    """A new database of ``rows`` executions and a read key: its URL and the key's token;
    dropped afterwards."""
    name = f"attune_bench_{purpose}_{os.getpid()}"
    admin = create_engine(f"{ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_URL}/{name}"
    database = Database.from_url(url)
    try:
        with database.engine.begin() as connection:
            config = Config(str(ROOT / "alembic.ini"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            started = time.perf_counter()
            connection.execute(text(_FILL), {"rows": rows})
            connection.execute(text("ANALYZE execution"))
        print(f"filled {rows:,} executions in {time.perf_counter() - started:.1f} s")
        with database.session_scope() as session:
            token = create_key(session, "bench", Scope.READ)
        yield url, token
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def served(url: str, token: str) -> Iterator[httpx.Client]:
    """A real ``attune serve`` on ``url`` and a keep-alive client presenting ``token``."""
    port = 18765 + os.getpid() % 1000
    env = {
        **os.environ,
        "ATTUNE_DATABASE_URL": url,
        "ATTUNE_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("attune")), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        )
        _wait_for(client)
        yield client
    finally:
        server.terminate()
        server.wait(timeout=30)


class LeanClient:
    """A keep-alive HTTP/1.1 client of the standard library, presenting ``client``'s headers
    and cookies."""

    def __init__(self, client: httpx.Client) -> None:
        self.connection = http.client.HTTPConnection(client.base_url.host, client.base_url.port)
        self.headers = dict(client.headers)
        if client.cookies:
            self.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())

    def get(self, path: str, params: dict[str, object]) -> bytes:
        """The body of ``GET path?params``; raises unless the status is 200."""
        self.connection.request("GET", f"{path}?{urlencode(params)}", headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
        return body


def bench_list(url: str, client: httpx.Client) -> None:
    """Median of the first page and of a deep page, served and bare."""
    middle = ROWS // 2
    cursor = _cursor_for(client, middle)
    lean = LeanClient(client)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as bare:
        for label, params, before in (
            ("first page", {"limit": PAGE}, 2**62),
            ("deep page", {"limit": PAGE, "cursor": cursor}, middle),
        ):
            for how, get in (
                ("", lambda p=params: lean.get("/api/v1/executions", p)),
                (" (httpx)", lambda p=params: _ok(client.get("/api/v1/executions", params=p))),
            ):
                served, plain = timed_pair(
                    get, lambda b=before: bare.execute(_BARE, (b, PAGE + 1)).fetchall()
                )
                goal = "   (client's cost included)" if how else " (goal <= 2)"
                print(
                    f"  {label + how:<18}  served {served * 1000:7.3f} ms   bare SQL"
                    f" {plain * 1000:7.3f} ms   ratio {served / plain:5.2f}x{goal}"
                )


def _cursor_for(client: httpx.Client, last_id: int) -> str:
    """The cursor the server gives for a page ending just above ``last_id``."""
    page = client.get("/api/v1/executions", params={"limit": 1, "cursor": _raw(last_id + 2)})
    cursor = page.json()["next_cursor"]
    assert cursor is not None
    return str(cursor)


def _raw(last_id: int) -> str:
    """A cursor for the unfiltered listing (as the server encodes it)."""
    import base64

    from attune.executions.listing import ExecutionFilter

    fingerprint = ExecutionFilter().fingerprint()
    return base64.urlsafe_b64encode(f"{last_id}.{fingerprint}".encode()).decode()


def _ok(response: httpx.Response) -> None:
    response.raise_for_status()


def _wait_for(client: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get("/api/v1/health").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("attune serve did not answer")


def timed_pair(first: Callable[[], object], second: Callable[[], object]) -> tuple[float, float]:
    """The median times of ``first`` and ``second`` over :data:`ROUNDS` runs each, after a
    warm-up, the two alternating so that both see the same load of the (shared) machine."""
    for _ in range(30):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(ROUNDS):
        for call, kept in zip((first, second), times, strict=True):
            started = time.perf_counter()
            call()
            kept.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


if __name__ == "__main__":
    raise SystemExit(main())
