"""Fixtures for the web UI: the app on the run's PostgreSQL with the packs loaded, and sign-in;
for the browser tests, a real ``attune serve`` with a worker, and Chromium: one each per module.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from attune.api import create_app
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.worker.app import resources
from tests.api.conftest import LOOPBACK, scoped_keys, serve
from tests.cluster import cluster, packs_copy
from tests.conftest import clear
from tests.web.browsing import CHROMIUM, CHROMIUM_FLAGS, WAIT_MS, Site

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


@pytest.fixture(scope="module")
def site(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A deployment with worker ``w-web`` (shell), an ``operate`` and a ``read`` key, served."""
    workdir = tmp_path_factory.mktemp("web")
    with cluster(postgres_url, redis_url, workdir) as deployment:
        deployment.start_worker("w-web", ["shell"])
        env = deployment.fleet.environment()
        tokens = scoped_keys(env)
        server = serve(env, workdir)
        with httpx.stream(  # only the status: a stream, once there, never ends
            "GET",
            f"{server.base_url}/api/v1/stream",
            headers={"Authorization": f"Bearer {tokens['dashboard']}"},
            timeout=5,
        ) as probe:
            streams = probe.status_code != 404
        try:
            yield Site(server, deployment, tokens, streams=streams)
        finally:
            server.stop()
            deployment.stop_all()
            clear(deployment.database)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (skipped when missing, except under ``CI=true``)."""
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
        pytest.skip(f"{CHROMIUM} is missing")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser, site: Site, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser context's page on the site; a screenshot of it is saved at the end."""
    context = browser.new_context(base_url=site.server.base_url)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        yield page
    finally:
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        assert (tmp_path / "page.png").stat().st_size > 0
        context.close()
