"""Browser sessions and CSRF through the app on PostgreSQL: login, cookie, expiry, revocation."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from attune.access.keys import Scope, create_key, revoke_key
from attune.access.sessions import IDLE_S
from attune.api import create_app
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ApiKey, Execution, WebSession
from attune.store.sqltypes import db_ago
from attune.worker.app import resources
from tests.api.conftest import past_credential_bound
from tests.web.conftest import csrf_of, sign_in

pytestmark = pytest.mark.postgres


def _token(database: Database, name: str, scope: Scope) -> str:
    with database.session_scope() as session:
        return create_key(session, name, scope)


def test_login_sets_a_strict_httponly_cookie_backed_by_a_hashed_row(
    web: TestClient, pg_database: Database
) -> None:
    # Given an operate key pasted at /login
    token = _token(pg_database, "alice", Scope.OPERATE)
    answer = web.post("/login", data={"key": token, "next": "/workers"}, follow_redirects=False)
    # Then a 303 goes where the user was headed, with the session cookie
    assert answer.status_code == 303
    assert answer.headers["location"] == "/workers"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("attune_session=")
    for flag in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # served on loopback
    session_id = web.cookies["attune_session"]
    with pg_database.session_scope() as session:
        row = session.scalars(select(WebSession)).one()
    assert row.digest == hashlib.sha256(session_id.encode()).hexdigest()
    assert session_id not in (row.digest, row.csrf_token)
    # And the header shows who and with which scope; no key travels in the page
    page = web.get("/executions").text
    assert 'id="principal">alice<' in page
    assert 'id="scope"' in page
    assert ">operate<" in page
    assert token not in page


def test_a_wrong_key_is_refused_and_pages_send_to_login(
    web: TestClient, pg_database: Database
) -> None:
    refused = web.post("/login", data={"key": "atk_nope"}, follow_redirects=False)
    assert refused.status_code == 401
    assert "not valid" in refused.text
    assert "attune_session" not in web.cookies
    away = web.get("/executions?status=failed", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == "/login?next=%2Fexecutions%3Fstatus%3Dfailed"


def test_the_api_takes_the_cookie_but_unsafe_requests_need_the_csrf_header(
    web: TestClient, pg_database: Database
) -> None:
    csrf = sign_in(web, _token(pg_database, "ops", Scope.OPERATE))
    assert web.get("/api/v1/workers").status_code == 200
    missing = web.post("/api/v1/executions/123/cancel")
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"]
    wrong = web.post("/api/v1/executions/123/cancel", headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    right = web.post("/api/v1/executions/123/cancel", headers={"X-CSRF-Token": csrf})
    assert right.status_code == 404  # authenticated and allowed; there is no such execution


def test_a_forged_form_post_is_refused_and_creates_nothing(
    web: TestClient, pg_database: Database
) -> None:
    csrf = sign_in(web, _token(pg_database, "ops", Scope.OPERATE))
    for fields in ({"message": "x"}, {"message": "x", "csrf_token": csrf[::-1]}):
        forged = web.post("/actions/core.echo", data=fields, follow_redirects=False)
        assert forged.status_code == 403
        assert "CSRF" in forged.text
    cross = web.post(
        "/actions/core.echo",
        data={"message": "x", "csrf_token": csrf},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    with pg_database.session_scope() as session:
        assert session.scalars(select(Execution)).all() == []


def test_a_read_session_sees_no_run_or_cancel_and_may_not_post(
    web: TestClient, pg_database: Database
) -> None:
    csrf = sign_in(web, _token(pg_database, "viewer", Scope.READ))
    page = web.get("/actions/core.echo").text
    assert 'id="run-form"' not in page
    assert "needs <strong>operate</strong>" in page
    denied = web.post("/actions/core.echo", data={"message": "x", "csrf_token": csrf})
    assert denied.status_code == 403
    assert "viewer" in denied.text


def test_revoking_the_key_or_idling_ends_the_session_and_logout_deletes_it(
    web: TestClient, pg_database: Database
) -> None:
    token = _token(pg_database, "ops", Scope.OPERATE)
    sign_in(web, token)
    with pg_database.session_scope() as session:
        revoke_key(session, "ops")
    past_credential_bound(web)  # the session verified at sign-in is trusted no longer
    assert web.get("/executions", follow_redirects=False).status_code == 303
    assert web.get("/api/v1/workers").status_code == 401

    sign_in(web, _token(pg_database, "ops2", Scope.OPERATE))
    with pg_database.session_scope() as session:
        session.execute(update(WebSession).values(last_seen_at=db_ago(IDLE_S + 60)))
    past_credential_bound(web)
    assert web.get("/executions", follow_redirects=False).status_code == 303

    sign_in(web, _token(pg_database, "ops3", Scope.OPERATE))
    with pg_database.session_scope() as session:  # every session past its absolute end
        session.execute(update(WebSession).values(expires_at=db_ago(1)))
    past_credential_bound(web)
    assert web.get("/executions", follow_redirects=False).status_code == 303

    csrf = sign_in(web, _token(pg_database, "ops4", Scope.OPERATE))
    assert web.post("/logout", data={}, follow_redirects=False).status_code == 403
    out = web.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    with pg_database.session_scope() as session:
        ops4 = session.scalar(select(ApiKey.id).where(ApiKey.name == "ops4"))
        assert session.scalars(select(WebSession).where(WebSession.api_key_id == ops4)).all() == []
        assert len(session.scalars(select(WebSession)).all()) == 3  # the ended ones remain
    assert web.get("/executions", follow_redirects=False).status_code == 303


def test_the_cookie_is_secure_off_loopback(
    pg_database: Database, postgres_url: str, redis_url: str
) -> None:
    settings = Settings.from_env(
        {"ATTUNE_DATABASE_URL": postgres_url, "ATTUNE_BROKER_URL": redis_url}
    )
    token = _token(pg_database, "remote", Scope.READ)
    try:
        with TestClient(create_app(settings, loopback=False), base_url="https://attune.lan") as c:
            answer = c.post("/login", data={"key": token}, follow_redirects=False)
            assert answer.status_code == 303
            assert "secure" in answer.headers["set-cookie"].lower()
            assert csrf_of(c.get("/executions").text)
    finally:
        resources.configure(Settings.from_env())
