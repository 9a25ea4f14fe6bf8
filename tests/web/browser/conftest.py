"""Fixtures of the browser tests: a real ``attune serve`` with a worker, and Chromium, one each
for this package (its modules share them); a fresh browser context for each test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.conftest import api_keys, serve
from tests.cluster import cluster
from tests.conftest import clear
from tests.web.browser.browsing import CHROMIUM, CHROMIUM_FLAGS, WAIT_MS, Site, keep_screenshot


@pytest.fixture(scope="package")
def site(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A deployment with worker ``w-web`` (shell, workflow), an ``operate`` and a ``read`` key,
    served."""
    workdir = tmp_path_factory.mktemp("web")
    with cluster(postgres_url, redis_url, workdir) as deployment:
        deployment.start_worker("w-web", ["shell", "workflow"])
        env = deployment.fleet.environment()
        tokens = api_keys(env, deployer="operate", dashboard="read")
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


@pytest.fixture(scope="package")
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
        keep_screenshot(page, tmp_path / "page.png")
        context.close()
