"""Authentication and the request guard, through the app on PostgreSQL (no worker needed)."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from attune.access.keys import Scope, create_key, list_keys, revoke_key
from attune.errors import ApiKeyError
from attune.store.db import Database
from attune.store.models import ApiKey, Execution
from tests.api.conftest import new_key, past_credential_bound

pytestmark = pytest.mark.postgres


def test_without_a_key_every_route_but_health_answers_401(pg_app: TestClient) -> None:
    # Given no key is presented (PostgreSQL is never the no-auth embedded default)
    # When routes of each scope are asked
    # Then each answers 401 with a Bearer challenge, and health answers
    for method, path in [
        ("GET", "/api/v1/executions"),
        ("GET", "/api/v1/workers"),
        ("POST", "/api/v1/executions/1/cancel"),
    ]:
        response = pg_app.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401
    assert pg_app.get("/api/v1/health").status_code == 200


def test_a_read_key_reads_but_may_not_operate(pg_app: TestClient, pg_database: Database) -> None:
    headers = new_key(pg_database, "viewer", Scope.READ)
    assert pg_app.get("/api/v1/executions", headers=headers).status_code == 200
    with pg_database.session_scope() as session:
        assert [key.last_used_at is not None for key in list_keys(session)] == [True]
    denied = pg_app.post(
        "/api/v1/executions", headers=headers, json={"action": "core.echo", "parameters": {}}
    )
    assert denied.status_code == 403
    assert "viewer" in denied.json()["detail"]


def test_a_wrong_revoked_or_expired_key_is_refused(
    pg_app: TestClient, pg_database: Database
) -> None:
    good = new_key(pg_database, "ops", Scope.OPERATE)
    assert pg_app.get("/api/v1/workers", headers=good).status_code == 200
    forged = {"Authorization": good["Authorization"][:-2] + "xx"}
    assert pg_app.get("/api/v1/workers", headers=forged).status_code == 401
    with pg_database.session_scope() as session:
        revoke_key(session, "ops")
    # verified a moment ago: trusted for at most the bound, then asked again and refused
    assert pg_app.get("/api/v1/workers", headers=good).status_code == 200
    past_credential_bound(pg_app)
    assert pg_app.get("/api/v1/workers", headers=good).status_code == 401
    with pg_database.session_scope() as session:
        token = create_key(session, "brief", Scope.READ, expires_days=1)
        session.execute(ApiKey.__table__.update().values(expires_at=ApiKey.created_at))
    assert (
        pg_app.get("/api/v1/workers", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


def test_a_key_is_stored_only_as_its_sha256(pg_database: Database) -> None:
    with pg_database.session_scope() as session:
        token = create_key(session, "ci", Scope.ADMIN)
    with pg_database.session_scope() as session:
        rows = [dict(row._mapping) for row in session.execute(select(ApiKey.__table__))]
    assert token.startswith("atk_")
    assert rows[0]["digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(rows, default=str)
    assert token[4:] not in json.dumps(rows, default=str)


def test_a_key_name_is_unique_and_revoking_twice_is_an_error(pg_database: Database) -> None:
    with pg_database.session_scope() as session:
        create_key(session, "ci", Scope.READ)
    with pg_database.session_scope() as session, pytest.raises(ApiKeyError, match="already exists"):
        create_key(session, "ci", Scope.ADMIN)
    with pg_database.session_scope() as session:
        revoke_key(session, "ci")
    with pg_database.session_scope() as session, pytest.raises(ApiKeyError, match="no such key"):
        revoke_key(session, "ci")


def test_the_query_string_never_authenticates(pg_app: TestClient, pg_database: Database) -> None:
    token = new_key(pg_database, "ops", Scope.OPERATE)["Authorization"].removeprefix("Bearer ")
    for name in ("api_key", "token", "access_token"):
        assert pg_app.get(f"/api/v1/workers?{name}={token}").status_code == 401


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Host": "evil.example"}, None, 400),
        ({"Origin": "http://evil.example"}, b"{}", 403),
        ({"Sec-Fetch-Site": "cross-site"}, b"{}", 403),
        ({"Content-Type": "text/plain"}, b"action=core.echo", 415),
        ({"Content-Type": "application/json"}, b"{" + b" " * (1024 * 1024) + b"}", 413),
    ],
)
def test_the_guard_refuses_before_anything_runs(
    pg_app: TestClient,
    pg_database: Database,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
) -> None:
    auth = new_key(pg_database, "ops", Scope.OPERATE)
    response = pg_app.post("/api/v1/executions", headers={**auth, **headers}, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    with pg_database.session_scope() as session:
        assert session.scalars(select(Execution.id)).all() == []
