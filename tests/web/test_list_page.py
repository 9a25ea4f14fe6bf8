"""The executions page through the app on PostgreSQL: rows as they are now, however often the
page is rendered (its rows are rendered once per distinct row)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from attune.access.keys import Scope, create_key
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE
from tests.web.conftest import sign_in

pytestmark = pytest.mark.postgres

_E = EXECUTION_TABLE.c


def _row_of(page: str, execution_id: int) -> str:
    start = page.index(f'<tr data-id="{execution_id}">')
    return page[start : page.index("</tr>", start)]


def test_a_changed_execution_is_shown_as_it_is_now(web: TestClient, pg_database: Database) -> None:
    # Given a signed-in viewer and a running execution the page has shown
    with pg_database.session_scope() as session:
        token = create_key(session, "viewer", Scope.READ)
    sign_in(web, token)
    with pg_database.engine.begin() as connection:
        execution_id = connection.execute(
            insert(EXECUTION_TABLE)
            .values(action_ref="core.echo", parameters={}, status="running", worker="w1")
            .returning(_E.id)
        ).scalar_one()
    before = _row_of(web.get("/executions").text, execution_id)
    assert 'data-status="running"' in before
    assert web.get("/executions").text.count(before) == 1  # the same row, rendered again
    # When it ends
    with pg_database.engine.begin() as connection:
        connection.execute(
            update(EXECUTION_TABLE)
            .where(_E.id == execution_id)
            .values(status="failed", exit_code=3, duration_ms=1500)
        )
    # Then the page shows its new status, exit code and duration, not the row it showed before
    after = _row_of(web.get("/executions").text, execution_id)
    assert 'data-status="failed"' in after
    assert 'data-status="running"' not in after
    assert '<td class="c-exit">3</td>' in after
    assert '<td class="c-duration">1.5 s</td>' in after
