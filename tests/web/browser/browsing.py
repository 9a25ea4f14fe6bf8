"""Driving the web UI in Debian's Chromium (Python Playwright, never ``playwright install``):
the flags it runs with, the served site the browser tests share, and the steps they repeat."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page

from tests.api.conftest import Server
from tests.cluster import Cluster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


@dataclass
class Site:
    """The served UI, the deployment behind it, and a key of each scope."""

    server: Server
    deployment: Cluster
    tokens: dict[str, str]
    streams: bool  # the API's event streams exist (GET /api/v1/stream is not a 404)

    def start(self, action: str, parameters: dict[str, Any], who: str = "deployer") -> int:
        """Start ``action`` through the API with ``who``'s key; the new execution's id."""
        started = httpx.post(
            f"{self.server.base_url}/api/v1/executions",
            json={"action": action, "parameters": parameters},
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )
        assert started.status_code == 201, started.text
        return int(started.json()["id"])


def keep_screenshot(page: Page, path: Path) -> None:
    """Save what ``page`` shows to ``path`` for whoever reads the run afterwards: a record, not a
    check, so a capture that headless Chromium cannot finish within 10 s is reported and skipped
    (a full-page capture of a page that a live stream repaints has hung for 30 s under CI load)."""
    try:
        page.screenshot(path=str(path), timeout=10_000, animations="disabled")
    except PlaywrightError as error:
        print(f"screenshot {path.name} not kept: {error.message.splitlines()[0]}")


def sign_in(page: Page, site: Site, who: str) -> None:
    """Sign in through the login form with ``who``'s key."""
    page.goto("/login")
    page.get_by_label("API key").fill(site.tokens[who])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/executions")


def run_from_form(page: Page, ref: str, **fields: str) -> int:
    """Fill ``ref``'s run form, submit it; the new execution's id (its page is open)."""
    page.goto(f"/actions/{ref}")
    for name, value in fields.items():
        page.locator(f"#p-{name}").fill(value)
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/executions/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def status_badge(page: Page) -> Locator:
    """The status badge in an execution page's heading."""
    return page.locator("h1 .badge")
