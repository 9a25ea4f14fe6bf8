"""Webhooks through a real ``attune serve`` (uvicorn): on PostgreSQL + Redis with a real worker,
and on the embedded default. Every refusal writes no row; a signed delivery runs its rule's
action once; a repeated delivery id fires nothing more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from attune.rules.webhooks import sign
from attune.store.db import Database
from attune.store.models import Enforcement, Execution, TriggerEvent
from tests.api.conftest import Server, api_keys, serve
from tests.cluster import attune_cli, cluster
from tests.conftest import clear
from tests.pack_builder import rule, write_rules
from tests.processes import free_port

pytestmark = pytest.mark.slow

SECRET = "s3cret-of-the-deploy-hook"
SCHEMA = {"type": "object", "required": ["ref"], "properties": {"ref": {"type": "string"}}}
RULES = {
    "signed": rule(
        "demo.on_deploy",
        trigger={
            "type": "core.webhook",
            "params": {
                "path": "ci/deploys",
                "secret_env": "DEPLOY_HOOK_SECRET",
                "payload_schema": SCHEMA,
                "max_bytes": 4096,
            },
        },
        criteria={"trigger.body.ref": {"op": "equals", "value": "main"}},
        action={"ref": "demo.hello", "parameters": {"who": "{{ trigger.body.ref }}"}},
    ),
    "open": rule(
        "demo.on_ping",
        trigger={"type": "core.webhook", "params": {"path": "ping"}},
        action={"ref": "demo.hello"},
    ),
    "unset": rule(
        "demo.on_unset",
        trigger={"type": "core.webhook", "params": {"path": "unset", "secret_env": "NOT_SET_HERE"}},
        action={"ref": "demo.hello"},
    ),
}


def with_hooks(env: dict[str, str]) -> dict[str, str]:
    """Write pack ``demo`` with the hook rules into the deployment's packs and load it; the
    server's environment, with the signed hook's secret."""
    write_rules(Path(env["ATTUNE_PACKS_DIR"]), RULES)
    loaded = attune_cli(env, "packs", "load", "--pack-name", "demo")
    assert loaded.returncode == 0, loaded.stderr
    return {**env, "DEPLOY_HOOK_SECRET": SECRET}


def deliver(
    client: httpx.Client,
    path: str,
    body: object,
    *,
    delivery: str | None = None,
    secret: str = SECRET,
    **headers: str,
) -> httpx.Response:
    """POST ``body`` (JSON) to hook ``path``, signed with ``secret``."""
    content = json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, content)}
    if delivery is not None:
        sent["X-Attune-Delivery"] = delivery
    return client.post(f"/api/v1/webhooks/{path}", content=content, headers={**sent, **headers})


def rows(database: Database) -> tuple[int, int, int]:
    """How many events, enforcements and executions are stored."""
    with database.session_scope() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model))
            for model in (TriggerEvent, Enforcement, Execution)
        )


def refused(
    database: Database, response: httpx.Response, status: int, before: tuple[int, int, int]
) -> None:
    """``response`` is a problem document of ``status``, and nothing was written."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert rows(database) == before


def fires_once(database: Database, client: httpx.Client, operator: httpx.Client) -> None:
    """A signed delivery runs ``demo.hello`` once; its repeat answers 200 and runs nothing."""
    first = deliver(client, "ci/deploys", {"ref": "main"}, delivery="d-1")
    assert first.status_code == 202, first.text
    [enforced] = first.json()["enforcements"]
    assert enforced["rule"] == "demo.on_deploy"
    assert enforced["status"] == "scheduled"
    execution = f"/api/v1/executions/{enforced['execution_id']}"
    done = operator.get(f"{execution}/wait", params={"timeout_s": 60}).json()
    assert done["status"] == "succeeded", done
    assert done["action_ref"] == "demo.hello"
    assert done["parameters"] == {"who": "main", "times": 1}
    counted = rows(database)

    again = deliver(client, "ci/deploys", {"ref": "main"}, delivery="d-1")

    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert rows(database) == counted
    with database.session_scope() as session:
        event = session.get_one(TriggerEvent, first.json()["event_id"])
        assert event.source == "webhook"
        assert event.payload["body"] == {"ref": "main"}
        assert event.payload["path"] == "ci/deploys"
        assert event.payload["delivery_id"] == "d-1"
        assert "x-hub-signature-256" not in event.payload["headers"]
        assert event.payload["headers"]["content-type"] == "application/json"
        runs = session.scalars(
            select(Enforcement.execution_id).where(
                Enforcement.rule_ref == "demo.on_deploy", Enforcement.execution_id.is_not(None)
            )
        )
        assert list(runs) == [enforced["execution_id"]]


@dataclass
class Hooks:
    """The served API with the hook rules loaded, and what checks it."""

    server: Server
    database: Database
    client: httpx.Client
    operator: httpx.Client
    reader: httpx.Client
    metrics_url: str


@pytest.fixture(scope="module")
def hooks(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hooks]:
    workdir = tmp_path_factory.mktemp("hooks")
    with cluster(postgres_url, redis_url, workdir) as deployment:
        env = with_hooks(deployment.fleet.environment())
        deployment.start_worker("w-hooks", ["shell"])
        tokens = api_keys(env, ci="operate", dashboard="read")
        metrics_port = free_port()
        server = serve({**env, "ATTUNE_METRICS_PORT": str(metrics_port)}, workdir)
        client = server.client()
        operator = server.client({"Authorization": f"Bearer {tokens['ci']}"})
        reader = server.client({"Authorization": f"Bearer {tokens['dashboard']}"})
        try:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            yield Hooks(server, deployment.database, client, operator, reader, metrics_url)
        finally:
            for each in (client, operator, reader):
                each.close()
            server.stop()
            deployment.stop_all()
            clear(deployment.database)


def test_each_refusal_has_its_status_in_order_and_writes_no_row(hooks: Hooks) -> None:
    database, client = hooks.database, hooks.client
    before = rows(database)
    big = {"ref": "x" * 5000}
    # 404 comes first: an unknown path, whatever else is wrong with the request
    refused(database, deliver(client, "nowhere", big, secret="wrong"), 404, before)
    refused(database, client.get("/api/v1/webhooks/nowhere"), 404, before)
    not_post = client.get("/api/v1/webhooks/ci/deploys")
    refused(database, not_post, 405, before)
    assert not_post.headers["allow"] == "POST"
    as_text = deliver(client, "ci/deploys", big, secret="wrong", **{"Content-Type": "text/plain"})
    refused(database, as_text, 415, before)
    chunked = client.post(
        "/api/v1/webhooks/ci/deploys",
        content=iter([b'{"ref": "main"}']),
        headers={"Content-Type": "application/json"},
    )
    refused(database, chunked, 411, before)
    refused(database, deliver(client, "ci/deploys", big, secret="wrong"), 413, before)
    refused(database, deliver(client, "ci/deploys", {"ref": "main"}, secret="wrong"), 401, before)
    unsigned = client.post("/api/v1/webhooks/ci/deploys", json={"ref": "main"})
    refused(database, unsigned, 401, before)
    content = b'{"ref": '
    not_json = client.post(
        "/api/v1/webhooks/ci/deploys",
        content=content,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(SECRET, content)},
    )
    refused(database, not_json, 400, before)
    invalid = deliver(client, "ci/deploys", {"ref": 7})
    refused(database, invalid, 422, before)
    assert invalid.json()["errors"] == [
        {"pointer": "/body/ref", "message": "ref: 7 is not of type 'string'"}
    ]
    refused(database, deliver(client, "unset", {}), 503, before)
    counted = httpx.get(hooks.metrics_url).text  # a log line and a count for each refusal
    for code, times in ((404, 2), (405, 1), (415, 1), (411, 1), (413, 1), (401, 2), (422, 1)):
        assert f'attune_webhook_requests_total{{code="{code}"}} {times:.1f}' in counted


def test_a_hook_without_a_secret_asks_for_an_operate_key(hooks: Hooks) -> None:
    before = rows(hooks.database)
    refused(hooks.database, hooks.client.post("/api/v1/webhooks/ping", json={}), 401, before)
    refused(hooks.database, hooks.reader.post("/api/v1/webhooks/ping", json={}), 403, before)

    pinged = hooks.operator.post("/api/v1/webhooks/ping", json={"hello": 1})

    assert pinged.status_code == 202, pinged.text
    assert [e["rule"] for e in pinged.json()["enforcements"]] == ["demo.on_ping"]


def test_a_signed_delivery_runs_its_action_once_and_a_repeat_fires_nothing(hooks: Hooks) -> None:
    fires_once(hooks.database, hooks.client, hooks.operator)
    other_branch = deliver(hooks.client, "ci/deploys", {"ref": "dev"}, delivery="d-2")
    assert other_branch.status_code == 202
    [enforced] = other_branch.json()["enforcements"]
    assert (enforced["status"], enforced["execution_id"]) == ("no_match", None)


def test_on_the_embedded_default_a_delivery_runs_once(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    env = with_hooks(embedded_env)
    database = Database.from_url(env["ATTUNE_DATABASE_URL"])
    server = serve(env, tmp_path)
    try:
        with server.client() as client:
            before = rows(database)
            refused(database, deliver(client, "ci/deploys", {"ref": 1}, secret="no"), 401, before)
            refused(database, deliver(client, "ci/deploys", {"ref": 1}), 422, before)
            fires_once(database, client, client)
    finally:
        server.stop()
        database.dispose()
