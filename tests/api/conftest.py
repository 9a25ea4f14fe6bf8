"""Fixtures for the HTTP API: the app on the run's databases, keys, and a real uvicorn server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from attune.access.keys import Scope, create_key
from attune.api import create_app
from attune.api.auth import Access
from attune.api.credentials import CREDENTIAL_CACHE_S
from attune.settings import Settings
from attune.store.db import Database
from attune.worker.app import resources
from tests.cluster import BIN, attune_cli, embedded_environment
from tests.processes import free_port, wait_until

LOOPBACK = "http://127.0.0.1"


@pytest.fixture
def pg_app(pg_database: Database, postgres_url: str, redis_url: str) -> Iterator[TestClient]:
    """The API app on the run's PostgreSQL and Redis, as served on loopback (auth required)."""
    settings = Settings.from_env(
        {"ATTUNE_DATABASE_URL": postgres_url, "ATTUNE_BROKER_URL": redis_url}
    )
    try:
        with TestClient(create_app(settings, loopback=True), base_url=LOOPBACK) as client:
            yield client
    finally:
        resources.configure(Settings.from_env())


def past_credential_bound(client: TestClient) -> None:
    """Move the app's clock of verified keys and sessions past their bound, as the second
    after a revocation would (no sleep)."""
    access: Access = client.app.state.access  # type: ignore[attr-defined]
    for cache in (access.keys, access.sessions):
        now = cache.clock()
        cache.clock = lambda now=now: now + CREDENTIAL_CACHE_S


def new_key(database: Database, name: str, scope: Scope) -> dict[str, str]:
    """Create key ``name`` with ``scope``; the headers that present it."""
    with database.session_scope() as session:
        token = create_key(session, name, scope)
    return {"Authorization": f"Bearer {token}"}


def api_keys(env: Mapping[str, str], **scopes: str) -> dict[str, str]:
    """Create a key per ``name=scope`` with the CLI, as an operator would; the tokens by name."""
    tokens = {}
    for name, scope in scopes.items():
        created = attune_cli(env, "apikey", "create", name, "--scope", scope)
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip()
    return tokens


@dataclass
class Server:
    """A running ``attune serve`` process and a client for it."""

    process: subprocess.Popen[str]
    base_url: str
    log: Path

    def client(self, headers: Mapping[str, str] | None = None) -> httpx.Client:
        """An HTTP client of this server."""
        return httpx.Client(base_url=self.base_url, headers=dict(headers or {}), timeout=30)

    def stop(self) -> None:
        """Stop the server and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(env: Mapping[str, str], workdir: Path, *args: str) -> Server:
    """Start ``attune serve`` on a free port and wait until ``/api/v1/health`` answers."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "attune"), "serve", "--port", str(port), *args],
            env={**os.environ, **env},
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"attune serve exited: {log.read_text()}")
        try:
            return httpx.get(f"{server.base_url}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 60, "attune serve to answer")
    return server


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    """A migrated SQLite database with the packs loaded, on the embedded default (memory://)."""
    return embedded_environment(tmp_path)
