"""The web UI on the embedded default (SQLite, in-process worker): no-auth banner, run, re-run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from attune.access.keys import Scope, create_key
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.web import executions
from tests.cluster import packs_copy
from tests.processes import wait_until
from tests.web.conftest import csrf_of, served


@pytest.fixture
def embedded(sqlite_database: Database, sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    packs = packs_copy(tmp_path)
    load_packs(sqlite_database, packs)
    settings = Settings.from_env(
        {
            "ATTUNE_DATABASE_URL": sqlite_url,
            "ATTUNE_BROKER_URL": "memory://",
            "ATTUNE_PACKS_DIR": str(packs),
        }
    )
    with served(settings) as client:
        yield client


def _finished(client: TestClient, path: str) -> str:
    pages: list[str] = []

    def done() -> bool:
        pages.append(client.get(path).text)
        return 'data-terminal="yes"' in pages[-1]

    wait_until(done, 30, f"{path} to show a terminal execution")
    return pages[-1]


def test_no_auth_mode_shows_its_banner_and_runs_from_the_form(
    embedded: TestClient, sqlite_database: Database
) -> None:
    # Given the embedded default on loopback with no key: pages open without signing in
    home = embedded.get("/executions")
    assert home.status_code == 200
    assert 'id="no-auth-banner"' in home.text
    csrf = csrf_of(home.text)
    # When core.echo is run from its form
    started = embedded.post("/actions/core.echo", data={"csrf_token": csrf, "message": "hi there"})
    # Then the browser lands on the execution, which the in-process worker runs
    assert re.search(r"/executions/\d+$", str(started.url))
    page = _finished(embedded, started.url.path)
    assert 'class="badge s-succeeded"' in page
    assert re.search(r'id="stdout"[^>]*>hi there\n</pre>', page)
    # And Re-run starts a new execution with the same parameters, listed on the home page
    again = embedded.post(f"{started.url.path}/rerun", data={"csrf_token": csrf})
    assert again.url.path != started.url.path
    assert "hi there" in _finished(embedded, again.url.path)
    listed = embedded.get("/executions?action=core.echo&status=succeeded").text
    assert listed.count('<tr data-id="') == 2
    # Once a key exists, authentication is on and the banner is gone
    with sqlite_database.session_scope() as session:
        create_key(session, "first", Scope.ADMIN)
    assert embedded.get("/executions", follow_redirects=False).status_code == 303


def test_pages_list_actions_and_page_by_cursor(
    embedded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    csrf = csrf_of(embedded.get("/actions").text)
    assert "examples.list_example" in embedded.get("/actions").text
    for _ in range(3):
        embedded.post("/actions/core.noop", data={"csrf_token": csrf})
    assert "No worker has registered" in embedded.get("/workers").text  # the embedded one is not
    rules = embedded.get("/rules").text
    assert re.search(r'data-rule="examples.every_minute".*?— \(disabled\)', rules, re.DOTALL)
    assert "No event yet." in rules
    first = embedded.get("/executions").text
    assert first.count('<tr data-id="') == 3
    assert 'rel="next"' not in first
    monkeypatch.setattr(executions, "PAGE_SIZE", 2)
    paged = embedded.get("/executions?action=core.noop").text
    older = re.search(r'rel="next" href="([^"]+)"', paged)
    assert older is not None
    second = embedded.get(older.group(1).replace("&amp;", "&")).text
    assert second.count('<tr data-id="') == 1
    assert 'value="core.noop"' in second  # the filter is kept across pages
    newer = re.search(r'rel="prev" href="([^"]+)"', second)
    assert newer is not None
    back = embedded.get(newer.group(1).replace("&amp;", "&")).text
    assert back.count('<tr data-id="') == 2
