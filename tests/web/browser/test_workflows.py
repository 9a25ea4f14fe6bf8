"""A workflow run in Chromium, against the package's real ``attune serve`` and worker (fixtures in
conftest.py): its task table fills in from the event stream while the run goes, each child links
back to its run and task, and ``/executions`` shows the children's attempts.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.web.browser.browsing import WAIT_MS, Site, keep_screenshot, sign_in, status_badge

pytestmark = pytest.mark.slow

HOSTS = ["web-1", "web-2", "web-3", "web-4"]
PAUSE_S = 2  # each item's sleep: long enough to see the table between its changes


def follow(page: Page, link: Locator, execution_id: int) -> None:
    """Click ``link`` to the execution's page; a click that a live re-render of the table took
    from under the pointer (no navigation within 5 s) is made again, up to three times."""
    for _ in range(3):
        link.click()
        try:
            page.wait_for_url(f"**/executions/{execution_id}", timeout=5_000)
        except PlaywrightTimeoutError:
            continue
        else:
            return
    page.wait_for_url(f"**/executions/{execution_id}")


def test_a_workflow_runs_task_table_fills_in_while_it_goes(
    open_page: Page, site: Site, tmp_path: Path
) -> None:
    if not site.streams:
        pytest.skip("GET /api/v1/stream answers 404: the event streams are not on this branch")
    # Given the page of a fan-out over four hosts, two at a time, each item sleeping 2 s
    sign_in(open_page, site, "deployer")
    started_at = time.monotonic()
    run_id = site.start("testing.slow_fleet", {"hosts": HOSTS, "pause_s": PAUSE_S})
    open_page.goto(f"/executions/{run_id}")
    open_page.evaluate("() => { window.notReloaded = true; }")
    rows = open_page.locator("#tasks tbody tr")
    patch = rows.filter(has=open_page.locator(".c-task", has_text="patch"))
    # When the first two items run, Then the open page shows them running, the others not yet
    expect(patch.nth(0).locator(".c-status")).to_have_text("running")
    expect(patch.nth(1).locator(".c-status")).to_have_text("running")
    assert patch.count() == 2
    # And the last two appear once the first two are done, on the same page (no reload)
    expect(patch).to_have_count(len(HOSTS), timeout=WAIT_MS)
    expect(patch.nth(0).locator(".c-status")).to_have_text("succeeded")
    assert open_page.evaluate("() => window.notReloaded") is True
    assert time.monotonic() - started_at < 2 * PAUSE_S + 10  # still going: seen live
    # Then the run succeeds with every attempt succeeded, in activation and item order
    expect(status_badge(open_page)).to_have_text("succeeded", timeout=WAIT_MS)
    expect(rows).to_have_count(len(HOSTS) + 1)
    expect(rows.locator(".c-status")).to_have_text(["succeeded"] * (len(HOSTS) + 1))
    expect(rows.locator(".c-task")).to_have_text(["patch"] * len(HOSTS) + ["summary"])
    expect(rows.locator(".c-item")).to_have_text(["0", "1", "2", "3", ""])
    expect(rows.locator(".c-attempt")).to_have_text(["1"] * (len(HOSTS) + 1))
    keep_screenshot(open_page, tmp_path / "tasks.png")
    # When an item's execution is followed from the table
    child = int(patch.nth(2).locator(".c-execution").inner_text())
    follow(open_page, patch.nth(2).locator(".c-execution").get_by_role("link"), child)
    # Then its page names its run and task, and leads back to the run
    expect(open_page.locator("#parent")).to_have_text(f"{run_id}, task patch item 2")
    expect(status_badge(open_page)).to_have_text("succeeded")
    follow(open_page, open_page.locator("#parent").get_by_role("link", name=str(run_id)), run_id)
    expect(rows).to_have_count(len(HOSTS) + 1)
    # And /executions shows the child's attempt among those its retry allows, none for the run
    open_page.goto("/executions")
    expect(open_page.locator(f'tr[data-id="{child}"] .c-attempt')).to_have_text("1/2")
    expect(open_page.locator(f'tr[data-id="{run_id}"] .c-attempt')).to_have_text("")
    # And a row the stream adds gets its attempt filled in as well, without a reload
    open_page.evaluate("() => { window.notReloaded = true; }")
    retried = site.start("policies.flaky", {"cmd": "true"})
    expect(open_page.locator(f'tr[data-id="{retried}"] .c-attempt')).to_have_text("1/3")
    assert open_page.evaluate("() => window.notReloaded") is True
