"""Fixtures for the web UI: the app on the run's PostgreSQL with the packs loaded, and sign-in
(the browser tests' fixtures are in ``browser/conftest.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from attune.api import create_app
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.worker.app import resources
from tests.api.conftest import LOOPBACK
from tests.cluster import packs_copy

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def web(
    pg_database: Database, postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[TestClient]:
    """The app on PostgreSQL and Redis as served on loopback (auth required), no worker, with
    the packs and the tests' ``testing`` pack loaded."""
    load_packs(pg_database, packs_copy(tmp_path))
    settings = Settings.from_env(
        {
            "ATTUNE_DATABASE_URL": postgres_url,
            "ATTUNE_BROKER_URL": redis_url,
            "ATTUNE_SECRET_KEY": Fernet.generate_key().decode(),
        }
    )
    with served(settings) as client:
        yield client


@contextmanager
def served(settings: Settings) -> Iterator[TestClient]:
    """The app on ``settings`` as served on loopback; the environment's settings again after."""
    try:
        with TestClient(create_app(settings, loopback=True), base_url=LOOPBACK) as client:
            yield client
    finally:
        resources.configure(Settings.from_env())


def sign_in(client: TestClient, token: str) -> str:
    """Sign ``client`` in with the API key ``token``; the session's CSRF token."""
    answer = client.post("/login", data={"key": token, "next": "/executions"})
    assert answer.status_code == 200, answer.text  # followed the 303 to /executions
    return csrf_of(answer.text)


def csrf_of(page: str) -> str:
    """The CSRF token a page carries."""
    found = _CSRF.search(page)
    assert found is not None, page[:500]
    return found.group(1)
