"""The executions list's fast lane answers as the route does, and PostgreSQL's page JSON is the
one pydantic writes (on the app on PostgreSQL; no worker needed)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from attune.access.keys import Scope
from attune.executions import listing
from attune.store.asyncreader import AsyncReader
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from tests.api.conftest import new_key

pytestmark = pytest.mark.postgres

_FILL = """
INSERT INTO execution (action_ref, parameters, status, worker, exit_code, error, requested_by,
                       stdout, stderr, stdout_truncated, stderr_truncated, requested_at,
                       started_at, finished_at, duration_ms)
SELECT (ARRAY['core.echo', 'core.sleep'])[1 + n % 2], '{}'::jsonb,
       (ARRAY['succeeded', 'failed', 'running'])[1 + n % 3],
       CASE WHEN n % 4 = 0 THEN NULL ELSE 'w' || n END,
       CASE WHEN n % 3 = 2 THEN NULL ELSE n % 3 END,
       CASE WHEN n % 3 = 1 THEN E'it said "no" \\ to \u00e9t\u00e9\n\ttwice' END,
       CASE WHEN n % 2 = 0 THEN 'ci-key' END,
       '', '', false, false,
       -- whole seconds, milliseconds and microseconds, as pydantic writes each differently
       timestamptz '2026-03-01 12:00:00+00' + make_interval(secs => n * 1.5),
       CASE WHEN n % 3 <> 0
            THEN timestamptz '2026-03-01 12:00:00.000123+00' + n * interval '1 s' END,
       CASE WHEN n % 3 = 1 THEN timestamptz '2026-03-01 12:00:00.5+03' END,
       CASE WHEN n % 3 = 1 THEN n END
FROM generate_series(1, 12) AS n
"""


def _fill(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text(_FILL))


def test_postgresql_writes_the_page_json_pydantic_writes(pg_database: Database) -> None:
    # Given executions with every kind of value a summary holds (nulls, escapes, timestamps
    # with no, three and six fractional digits)
    _fill(pg_database)
    failed = listing.ExecutionFilter(statuses=(ExecutionStatus.FAILED,), requested_by="ci-key")

    async def both(where: listing.ExecutionFilter, before_id: int | None) -> None:
        reader = AsyncReader(pg_database)
        try:
            by_database = await listing.page_json(
                pg_database, reader, where, limit=4, before_id=before_id
            )
        finally:
            await reader.close()
        by_pydantic = await listing.page_json(
            pg_database, None, where, limit=4, before_id=before_id
        )
        # Then the two pages hold the same values, written the same way (the strings equal)
        assert json.loads(by_database[0]) == json.loads(by_pydantic[0]) != []
        assert by_database[1] == by_pydantic[1]

    # When the database writes a page's JSON and when pydantic writes it from the rows
    for where, before_id in ((listing.ExecutionFilter(), None), (listing.ExecutionFilter(), 9)):
        asyncio.run(both(where, before_id))
    asyncio.run(both(failed, None))
    # (filters of every kind of value: moments, a pack's LIKE pattern, a worker, a parent)
    moments = listing.ExecutionFilter(
        requested_after=datetime(2026, 3, 1, 12, 0, 3, tzinfo=UTC),
        requested_before=datetime(
            2026, 3, 1, 13, 0, 12, 500000, tzinfo=timezone(timedelta(hours=1))
        ),
    )
    for where in (moments, listing.ExecutionFilter(pack="core", worker="w3", parent_id=None)):
        asyncio.run(both(where, None))


def test_the_lane_answers_each_query_as_the_route_does(
    pg_app: TestClient, pg_database: Database
) -> None:
    # Given a page of executions and its cursor
    _fill(pg_database)
    first = pg_app.get("/api/v1/executions?limit=3", headers=new_key(pg_database, "a", Scope.READ))
    cursor = first.json()["next_cursor"]
    queries = [
        "",
        "limit=1",
        "limit=3",
        "limit=200",
        f"limit=3&cursor={cursor}",
        f"cursor={cursor}",
        "cursor=",
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=03",
        "limit=2&limit=3",
        "cursor=bogus",
        "status=failed&limit=2",
        "limit=2&other=1",
    ]
    for n, query in enumerate(queries):
        # When a key asks first (not yet verified: the route answers, and verifies it)
        # and then again (verified: the lane answers the plain queries)
        key = new_key(pg_database, f"reader-{n}", Scope.READ)
        by_route = pg_app.get(f"/api/v1/executions?{query}", headers=key)
        again = pg_app.get(f"/api/v1/executions?{query}", headers=key)
        # Then both answers are the same: status, type, length and body
        assert again.status_code == by_route.status_code, query
        for header in ("content-type", "content-length"):
            assert again.headers[header] == by_route.headers[header], (query, header)
        assert again.json() == by_route.json(), query
    unknown = pg_app.get("/api/v1/executions", headers={"Authorization": "Bearer atk_x"})
    assert unknown.status_code == 401


def test_the_lane_refuses_what_the_guard_refuses(pg_app: TestClient, pg_database: Database) -> None:
    # Given a reader whose key the server has verified (the lane may answer its pages)
    key = new_key(pg_database, "reader", Scope.READ)
    assert pg_app.get("/api/v1/executions", headers=key).status_code == 200
    # When it asks for a plain page under a Host name a loopback server does not answer to
    refused = pg_app.get("/api/v1/executions", headers={**key, "Host": "attacker.example"})
    # Then the Guard's refusal is the answer, as on every other route
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert "loopback host names" in refused.json()["detail"]
    assert pg_app.get("/api/v1/executions", headers=key).status_code == 200
