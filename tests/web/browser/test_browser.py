"""The web UI in Debian's Chromium (Python Playwright, never ``playwright install``), against a
real ``attune serve`` on PostgreSQL + Redis with real Celery workers. One browser and one server
for the package (fixtures in conftest.py); each test has its own context (cookies) and saves a
PNG of its page under its tmp dir.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.cluster import attune_cli
from tests.pack_builder import rule, write_yaml
from tests.processes import wait_until
from tests.web.browser.browsing import (
    WAIT_MS,
    Site,
    keep_screenshot,
    run_from_form,
    sign_in,
    status_badge,
)

pytestmark = pytest.mark.slow


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
    execution_id = site.start("core.sleep", {"seconds": 30})
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
    # The moment each row's badge turns succeeded, on the browser's clock (the same host's),
    # watched from before the execution starts: a slow first paint cannot hide its end.
    open_page.evaluate(
        """() => { window.shownAt = {}; new MutationObserver(() => {
            for (const cell of document.querySelectorAll("tr[data-id] .c-status")) {
                const id = cell.closest("tr").dataset.id;
                if (cell.textContent.trim() === "succeeded" && !(id in window.shownAt)) {
                    window.shownAt[id] = Date.now();
                }
            }
        }).observe(document.getElementById("executions"),
                   {subtree: true, childList: true, characterData: true}); }"""
    )
    started_at = time.monotonic()
    execution_id = site.start("core.local", {"cmd": "sleep 1; echo live line"})
    row = open_page.locator(f'tr[data-id="{execution_id}"]')
    expect(row).to_be_visible()
    appeared_s = time.monotonic() - started_at
    expect(row.locator(".c-status")).to_have_text("succeeded", timeout=WAIT_MS)
    finished = httpx.get(
        f"{site.server.base_url}/api/v1/executions/{execution_id}", headers=operator
    ).json()["finished_at"]
    finished_ms = datetime.fromisoformat(finished).timestamp() * 1000
    lag_ms = open_page.evaluate("(id) => window.shownAt[id]", str(execution_id)) - finished_ms
    print(
        f"\nlive list: a new execution appeared {appeared_s * 1000:.0f} ms after its POST;"
        f" its end reached the page {lag_ms:.0f} ms after finished_at"
    )
    follow = site.start("core.local", {"cmd": "echo first; sleep 2; echo second"})
    open_page.goto(f"/executions/{follow}")
    expect(open_page.locator("#stdout")).to_contain_text("first")
    expect(status_badge(open_page)).not_to_have_text("succeeded")
    expect(status_badge(open_page)).to_have_text("succeeded", timeout=WAIT_MS)
    expect(open_page.locator("#stdout")).to_have_text("first\nsecond\n")


def test_the_attempts_chain_links_each_retry(open_page: Page, site: Site, tmp_path: Path) -> None:
    # Given policies.flaky (retried on failed, 3 attempts) failing on its first run only
    marker = tmp_path / "tried"
    command = f"[ -e {marker} ] || {{ touch {marker}; exit 1; }}; echo second try"
    sign_in(open_page, site, "deployer")
    first = run_from_form(open_page, "policies.flaky", cmd=command)
    expect(status_badge(open_page)).to_have_text("failed", timeout=WAIT_MS)
    # Then its page, once terminal, lists both attempts, the second a retry of the first
    rows = open_page.locator("#attempts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".c-attempt")).to_have_text("1/3")
    expect(rows.nth(0).locator(".c-status")).to_have_text("failed")
    expect(rows.nth(0).locator('[aria-current="page"]')).to_have_text(str(first))
    expect(rows.nth(1).locator(".c-attempt")).to_have_text("2/3")
    expect(rows.nth(1).locator(".c-retry-of")).to_have_text(str(first))
    # When the second attempt is followed from the chain
    rows.nth(1).locator("td").nth(1).get_by_role("link").click()
    open_page.wait_for_url(re.compile(r"/executions/\d+$"))
    second = int(open_page.url.rsplit("/", 1)[1])
    assert second != first
    expect(status_badge(open_page)).to_have_text("succeeded", timeout=WAIT_MS)
    expect(open_page.locator("#stdout")).to_have_text("second try\n")
    expect(open_page.locator("#attempt")).to_have_text(f"2/3, retry of {first}")
    expect(rows).to_have_count(2)  # it succeeded: no third attempt
    expect(rows.nth(1).locator(".c-status")).to_have_text("succeeded")
    # And its "retry of" link leads back to the first attempt
    open_page.locator("#attempt").get_by_role("link", name=str(first)).click()
    open_page.wait_for_url(f"**/executions/{first}")
    expect(open_page.locator("#attempts [aria-current=page]")).to_have_text(str(first))


def test_rules_show_their_next_tick_last_events_and_why_nothing_ran(
    open_page: Page, site: Site, tmp_path: Path
) -> None:
    # Given two 1 s timer rules, one echoing its tick, one whose criteria never hold
    env = site.deployment.fleet.environment()
    rules_dir = Path(env["ATTUNE_PACKS_DIR"]) / "testing" / "rules"
    rules_dir.mkdir(exist_ok=True)
    every_second = {"type": "core.intervaltimer", "params": {"interval": 1}}
    echo = {"ref": "core.echo", "parameters": {"message": "tick {{ event.scheduled_at }}"}}
    never = {"trigger.lag_ms": {"op": "lt", "value": -1}}
    for name, changes in (
        ("tick", {"action": echo}),
        ("quiet", {"criteria": never, "action": {"ref": "core.noop"}}),
    ):
        document = rule(f"testing.{name}", description=name, trigger=every_second, **changes)
        write_yaml(rules_dir / f"{name}.yaml", document)
    loaded = attune_cli(env, "packs", "load")
    assert loaded.returncode == 0, loaded.stderr
    # When a real beat runs their timers (its sweep put off: the worker tests want none)
    beat = site.deployment.fleet.beat(env={"ATTUNE_SWEEP_INTERVAL_S": "3600"})
    try:
        sign_in(open_page, site, "dashboard")
        open_page.get_by_role("link", name="Rules", exact=True).click()
        tick = open_page.locator('section[data-rule="testing.tick"]')
        quiet = open_page.locator('section[data-rule="testing.quiet"]')

        def shown() -> bool:
            open_page.reload()
            ran = tick.locator(".c-execution .s-succeeded").count() > 0
            return ran and quiet.locator(".v-no_match").count() > 0

        wait_until(shown, 60, "a tick to run its echo and another to match nothing", 0.5)
    finally:
        beat.kill()
    # Then each rule shows its trigger, its next tick (after the last one shown) and verdicts
    expect(tick.locator(".c-trigger")).to_contain_text('core.intervaltimer {"interval": 1}')
    next_at = datetime.fromisoformat(str(tick.locator(".c-next time").get_attribute("datetime")))
    last_at = tick.locator("tbody tr").first.locator(".c-scheduled time").get_attribute("datetime")
    assert next_at.microsecond == 0
    assert next_at >= datetime.fromisoformat(str(last_at))
    expect(quiet.locator(".c-reason").first).to_have_text("trigger.lag_ms lt: no match")
    expect(quiet.locator(".c-execution").first).to_be_empty()
    disabled = open_page.locator('section[data-rule="examples.every_minute"] .c-next')
    expect(disabled).to_have_text("— (disabled)")
    keep_screenshot(open_page, tmp_path / "rules.png")
    # And a scheduled verdict links to the execution it started
    tick.locator(".c-execution .s-succeeded").first.locator("xpath=..").get_by_role("link").click()
    expect(status_badge(open_page)).to_have_text("succeeded")
    expect(open_page.locator("#stdout")).to_contain_text("tick ")
