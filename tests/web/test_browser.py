"""The web UI in Debian's Chromium (Python Playwright, never ``playwright install``), against a
real ``attune serve`` on PostgreSQL + Redis with real Celery workers. One browser per module;
each test has its own context (cookies) and saves a PNG of its page under its tmp dir.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.api.conftest import Server, api_keys, serve
from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear

pytestmark = pytest.mark.slow
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


@pytest.fixture(scope="module")
def site(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("web")
    with cluster(postgres_url, redis_url, workdir) as deployment:
        deployment.start_worker("w-web", ["shell"])
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
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


def test_run_from_its_form_and_land_on_its_page(open_page: Page, site: Site) -> None:
    sign_in(open_page, site, "deployer")
    assert open_page.locator("#scope").inner_text() == "operate"
    run_from_form(open_page, "core.echo", message="hello from chromium")
    expect(status_badge(open_page)).to_have_text("succeeded", timeout=WAIT_MS)
    expect(open_page.locator("#stdout")).to_have_text("hello from chromium\n")
    expect(open_page.locator("#worker")).to_have_text("w-web")


def test_a_failing_execution_shows_its_colour_and_error(open_page: Page, site: Site) -> None:
    sign_in(open_page, site, "deployer")
    run_from_form(open_page, "core.local", cmd="echo broken >&2; exit 3")
    expect(status_badge(open_page)).to_have_text("failed", timeout=WAIT_MS)
    expect(open_page.locator("#exit-code")).to_have_text("3")
    expect(open_page.locator("#error")).to_be_visible()
    expect(open_page.locator("#stderr")).to_have_text("broken\n")
    colours = open_page.evaluate(
        """() => ["succeeded", "failed", "timeout", "canceled", "abandoned"].map((status) => {
            const span = document.createElement("span");
            span.className = "badge s-" + status;
            document.body.append(span);
            return getComputedStyle(span).backgroundColor;
        })"""
    )
    assert len(set(colours)) == 5, colours  # each terminal status its own colour


def test_a_secret_is_never_shown(open_page: Page, site: Site) -> None:
    secret = "hunter2-very-secret"
    sign_in(open_page, site, "deployer")
    open_page.goto("/actions/testing.secret_echo")
    assert open_page.locator("#p-token").get_attribute("type") == "password"
    execution_id = run_from_form(open_page, "testing.secret_echo", token=secret, note="visible")
    expect(status_badge(open_page)).to_have_text("succeeded", timeout=WAIT_MS)
    assert secret not in open_page.content()
    assert "visible" in open_page.locator("#parameters").inner_text()
    open_page.goto(f"/executions/{execution_id}/rerun")
    assert secret not in open_page.content()
    assert open_page.locator("#p-token").input_value() == ""


def test_cancel_from_the_page(open_page: Page, site: Site) -> None:
    sign_in(open_page, site, "deployer")
    run_from_form(open_page, "core.sleep", seconds="120")
    expect(status_badge(open_page)).to_have_text("running", timeout=WAIT_MS)
    open_page.get_by_role("button", name="Cancel").click()
    expect(status_badge(open_page)).to_have_text("canceled", timeout=WAIT_MS)
    expect(open_page.get_by_role("button", name="Cancel")).to_have_count(0)


def test_a_killed_worker_is_stale_before_the_sweep_and_inactive_after(
    open_page: Page, site: Site
) -> None:
    doomed = site.deployment.start_worker("w-doomed", ["shell"])
    sign_in(open_page, site, "dashboard")
    open_page.goto("/workers")
    row = open_page.locator('tr[data-worker="w-doomed"]')
    expect(row.locator(".c-status")).to_have_text("active")
    expect(row.locator("td").nth(3)).to_contain_text("attune.shell")  # its queues
    doomed.destroy()  # killed: no goodbye, the row stays active
    time.sleep(1.0)  # the heartbeat ages past its 0.6 s threshold (no sweep runs here)
    open_page.reload()
    expect(row.locator(".c-stale")).to_have_text("stale")
    expect(row.locator(".c-status")).to_have_text("active")
    swept = attune_cli(site.deployment.fleet.environment(), "workers", "sweep")
    assert swept.returncode == 0, swept.stderr
    open_page.reload()
    expect(row.locator(".c-status")).to_have_text("inactive")
    expect(row.locator(".c-stale")).to_have_text("no")


def test_a_read_key_sees_no_cancel_and_a_forged_post_is_refused(
    open_page: Page, site: Site
) -> None:
    operator = {"Authorization": f"Bearer {site.tokens['deployer']}"}
    started = httpx.post(
        f"{site.server.base_url}/api/v1/executions",
        json={"action": "core.sleep", "parameters": {"seconds": 30}},
        headers=operator,
    )
    assert started.status_code == 201, started.text
    execution_id = started.json()["id"]
    sign_in(open_page, site, "dashboard")
    assert open_page.locator("#scope").inner_text() == "read"
    open_page.goto(f"/executions/{execution_id}")
    expect(open_page.locator("#execution")).to_be_visible()
    expect(open_page.get_by_role("button", name="Cancel")).to_have_count(0)
    # A post without the session's CSRF token, from the page itself, is refused
    refused = open_page.evaluate(
        f"""() => fetch("/executions/{execution_id}/cancel", {{method: "POST",
            headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
            body: "csrf_token=forged"}}).then((answer) => answer.status)"""
    )
    assert refused == 403
    # A form on another origin posting here is refused too (Origin check; no token either)
    evil = "http://evil.example/"
    open_page.route(
        evil,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{site.server.base_url}/actions/core.echo">'
            '<input name="message" value="pwned"><button>go</button></form>',
        ),
    )
    open_page.goto(evil)
    with open_page.expect_response(re.compile(r"/actions/core\.echo$")) as answer:
        open_page.get_by_role("button", name="go").click()
    assert answer.value.status == 403
    listed = httpx.get(
        f"{site.server.base_url}/api/v1/executions",
        params={"action": "core.echo"},
        headers=operator,
    ).json()
    assert all(item["requested_by"] != "dashboard" for item in listed["items"])
    assert httpx.get(
        f"{site.server.base_url}/api/v1/executions/{execution_id}", headers=operator
    ).json()["status"] in ("scheduled", "running")
    httpx.post(f"{site.server.base_url}/api/v1/executions/{execution_id}/cancel", headers=operator)


def test_live_rows_and_output_follow_the_streams(open_page: Page, site: Site) -> None:
    if not site.streams:
        pytest.skip("GET /api/v1/stream answers 404: the event streams are not on this branch")
    sign_in(open_page, site, "deployer")
    operator = {"Authorization": f"Bearer {site.tokens['deployer']}"}
    started_at = time.monotonic()
    started = httpx.post(
        f"{site.server.base_url}/api/v1/executions",
        json={"action": "core.local", "parameters": {"cmd": "sleep 1; echo live line"}},
        headers=operator,
    )
    execution_id = started.json()["id"]
    row = open_page.locator(f'tr[data-id="{execution_id}"]')
    expect(row).to_be_visible()
    appeared_s = time.monotonic() - started_at
    # The moment the row's badge turns terminal, on the browser's clock (the same host's)
    open_page.evaluate(
        """(id) => new MutationObserver((changes, observer) => {
            const cell = document.querySelector(`tr[data-id="${id}"] .c-status`);
            if (cell && cell.textContent.trim() === "succeeded") {
                window.shownAt = Date.now();
                observer.disconnect();
            }
        }).observe(document.getElementById("executions"), {subtree: true, childList: true})""",
        execution_id,
    )
    expect(row.locator(".c-status")).to_have_text("succeeded", timeout=WAIT_MS)
    finished = httpx.get(
        f"{site.server.base_url}/api/v1/executions/{execution_id}", headers=operator
    ).json()["finished_at"]
    finished_ms = datetime.fromisoformat(finished).timestamp() * 1000
    lag_ms = open_page.evaluate("() => window.shownAt") - finished_ms
    print(
        f"\nlive list: a new execution appeared {appeared_s * 1000:.0f} ms after its POST;"
        f" its end reached the page {lag_ms:.0f} ms after finished_at"
    )
    follow = httpx.post(
        f"{site.server.base_url}/api/v1/executions",
        json={"action": "core.local", "parameters": {"cmd": "echo first; sleep 2; echo second"}},
        headers=operator,
    ).json()["id"]
    open_page.goto(f"/executions/{follow}")
    expect(open_page.locator("#stdout")).to_contain_text("first")
    expect(status_badge(open_page)).not_to_have_text("succeeded")
    expect(status_badge(open_page)).to_have_text("succeeded", timeout=WAIT_MS)
    expect(open_page.locator("#stdout")).to_have_text("first\nsecond\n")
