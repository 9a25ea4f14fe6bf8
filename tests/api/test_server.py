"""The HTTP API served by a real ``attune serve`` (uvicorn) on PostgreSQL + Redis, real workers."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from attune.api.credentials import CREDENTIAL_CACHE_S
from attune.store.models import Execution
from tests.api.conftest import Server, api_keys, serve
from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear
from tests.processes import wait_until

pytestmark = pytest.mark.slow


@dataclass
class Api:
    """The served API, the deployment behind it, and clients with keys of each scope."""

    server: Server
    deployment: Cluster
    operator: httpx.Client
    reader: httpx.Client


@pytest.fixture(scope="module")
def api(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api")
    with cluster(postgres_url, redis_url, workdir) as deployment:
        deployment.start_worker("w-api", ["shell"])
        env = deployment.fleet.environment()
        tokens = api_keys(env, deployer="operate", dashboard="read")
        server = serve(env, workdir)
        operator = server.client({"Authorization": f"Bearer {tokens['deployer']}"})
        reader = server.client({"Authorization": f"Bearer {tokens['dashboard']}"})
        try:
            yield Api(server, deployment, operator, reader)
        finally:
            operator.close()
            reader.close()
            server.stop()
            deployment.stop_all()
            clear(deployment.database)


def run(api: Api, action: str, **parameters: object) -> dict[str, object]:
    response = api.operator.post(
        "/api/v1/executions", json={"action": action, "parameters": parameters}
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/executions/{response.json()['id']}"
    return response.json()  # type: ignore[no-any-return]


def test_post_then_wait_runs_the_action_on_a_worker(api: Api) -> None:
    started = run(api, "core.echo", message="over http")
    assert started["status"] == "scheduled"
    assert started["requested_by"] == "deployer"
    done = api.reader.get(f"/api/v1/executions/{started['id']}/wait", params={"timeout_s": 30})
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "succeeded"
    assert body["worker"] == "w-api"
    assert body["stdout_size"] == len("over http\n")
    assert "stdout" not in body
    stdout = api.reader.get(f"/api/v1/executions/{started['id']}/output/stdout")
    assert stdout.text == "over http\n"
    assert stdout.headers["x-output-complete"] == "true"
    part = api.reader.get(
        f"/api/v1/executions/{started['id']}/output/stdout", params={"offset": 5, "limit": 4}
    )
    assert part.text == "http"
    assert part.headers["x-output-size"] == "10"


def test_bad_requests_get_their_documented_status_and_enqueue_nothing(api: Api) -> None:
    with api.deployment.database.session_scope() as session:
        before = session.scalars(select(Execution.id)).all()
    unknown = api.operator.post("/api/v1/executions", json={"action": "core.nope"})
    assert unknown.status_code == 404
    invalid = api.operator.post(
        "/api/v1/executions", json={"action": "core.sleep", "parameters": {"seconds": "soon"}}
    )
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert [error["pointer"] for error in invalid.json()["errors"]] == ["/parameters/seconds"]
    extra = api.operator.post("/api/v1/executions", json={"action": "core.echo", "x": 1})
    assert extra.status_code == 422
    with api.deployment.database.session_scope() as session:
        assert session.scalars(select(Execution.id)).all() == before


def test_cancel_a_running_execution_then_a_second_cancel_conflicts(api: Api) -> None:
    started = run(api, "core.sleep", seconds=30)
    execution = f"/api/v1/executions/{started['id']}"
    wait_until(
        lambda: api.reader.get(execution).json()["status"] == "running", 30, "the sleep to run"
    )
    canceled = api.operator.post(f"{execution}/cancel")
    assert canceled.status_code == 202
    assert canceled.json()["status"] == "canceling"
    final = api.reader.get(f"{execution}/wait", params={"timeout_s": 30}).json()
    assert final["status"] == "canceled"
    again = api.operator.post(f"{execution}/cancel")
    assert again.status_code == 409
    assert api.reader.post(f"{execution}/cancel").status_code == 403


def test_rerun_repeats_the_parameters_with_overrides(api: Api) -> None:
    first = run(api, "core.echo", message="once")
    api.reader.get(f"/api/v1/executions/{first['id']}/wait", params={"timeout_s": 30})
    again = api.operator.post(
        f"/api/v1/executions/{first['id']}/rerun", json={"parameters": {"message": "twice"}}
    )
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
    assert again.json()["parameters"] == {"message": "twice"}


def test_the_list_pages_by_cursor_without_gaps_or_repeats(api: Api) -> None:
    ids = [run(api, "core.noop")["id"] for _ in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"action": "core.noop", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.reader.get("/api/v1/executions", params=params).json()
        seen += [item["id"] for item in page["items"]]
        assert all("stdout" not in item and "result" not in item for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert seen[:5] == sorted(ids, reverse=True)
    other = api.reader.get(
        "/api/v1/executions", params={"action": "core.echo", "cursor": cursor or _cursor(ids[0])}
    )
    assert other.status_code == 400
    assert api.reader.get("/api/v1/executions", params={"cursor": "bogus"}).status_code == 400
    by = api.reader.get("/api/v1/executions", params={"requested_by": "nobody"}).json()
    assert by["items"] == []


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{last_id}.000000000000".encode()).decode()


def test_catalog_and_workers(api: Api) -> None:
    action = api.reader.get("/api/v1/actions/core.sleep").json()
    assert action["parameters_schema"]["properties"]["seconds"]["type"] in ("integer", "number")
    packs = {pack["ref"]: pack for pack in api.reader.get("/api/v1/packs").json()}
    assert "core.echo" in packs["core"]["actions"]
    assert api.reader.get("/api/v1/packs/nope").status_code == 404
    workers = api.reader.get("/api/v1/workers").json()
    assert [(w["name"], w["status"], w["stale"]) for w in workers["items"]] == [
        ("w-api", "active", False)
    ]
    assert set(workers["sweeper"]) == {
        "last_sweep_at",
        "last_sweep_age_s",
        "sweep_interval_s",
        "overdue",
    }
    assert api.reader.get("/api/v1/workers/w-api").json()["heartbeat_age_s"] < 5
    assert api.reader.get("/api/v1/workers/ghost").status_code == 404
    health = api.server.client().get("/api/v1/health").json()
    assert health == {"db": True, "broker": True}
    spec = api.server.client().get("/api/v1/openapi.json").json()
    assert "/api/v1/executions/{execution_id}/cancel" in spec["paths"]


def test_an_idempotency_key_starts_one_execution(api: Api) -> None:
    body = {"action": "core.echo", "parameters": {"message": "once only"}}
    headers = {"Idempotency-Key": "deploy-42"}
    first = api.operator.post("/api/v1/executions", json=body, headers=headers)
    second = api.operator.post("/api/v1/executions", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["location"] == first.headers["location"]
    changed = {**body, "parameters": {"message": "another"}}
    assert api.operator.post("/api/v1/executions", json=changed, headers=headers).status_code == 409
    with api.deployment.database.session_scope() as session:
        runs = session.scalars(
            select(Execution.id).where(Execution.parameters["message"].as_string() == "once only")
        ).all()
    assert runs == [first.json()["id"]]


def test_a_revoked_key_is_refused_within_the_credential_bound(api: Api) -> None:
    # Given a key the server has just verified (on the list's fast lane and on a route)
    env = api.deployment.fleet.environment()
    token = api_keys(env, shortlived="read")["shortlived"]
    with api.server.client({"Authorization": f"Bearer {token}"}) as client:
        for path in ("/api/v1/executions", "/api/v1/workers"):
            assert client.get(path).status_code == 200
        # When it is revoked (by the CLI, another process)
        revoked = attune_cli(env, "apikey", "revoke", "shortlived")
        assert revoked.returncode == 0, revoked.stderr
        since = time.monotonic()
        # Then both refuse it within the bound (plus a request's time)
        for path in ("/api/v1/executions", "/api/v1/workers"):
            wait_until(lambda p=path: client.get(p).status_code == 401, 5, f"{path} to refuse")
        assert time.monotonic() - since <= CREDENTIAL_CACHE_S + 0.5
