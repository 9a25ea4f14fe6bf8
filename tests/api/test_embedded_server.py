"""``attune serve`` on the embedded default: one command gives a working system on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import serve
from tests.cluster import attune_cli

pytestmark = pytest.mark.slow


def test_without_keys_the_embedded_server_runs_actions_unauthenticated(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    server = serve(embedded_env, tmp_path)
    try:
        with server.client() as client:
            started = client.post(
                "/api/v1/executions", json={"action": "core.echo", "parameters": {"message": "hi"}}
            )
            assert started.status_code == 201, started.text
            assert started.json()["requested_by"] == "anonymous"
            done = client.get(
                f"/api/v1/executions/{started.json()['id']}/wait", params={"timeout_s": 30}
            ).json()
            assert done["status"] == "succeeded"
            assert done["worker"] is not None
            # Creating the first key switches authentication on, at once.
            created = attune_cli(embedded_env, "apikey", "create", "first", "--scope", "admin")
            assert created.returncode == 0, created.stderr
            assert client.get("/api/v1/executions").status_code == 401
            token = created.stdout.strip()
            listed = client.get("/api/v1/executions", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200
            assert [item["id"] for item in listed.json()["items"]] == [started.json()["id"]]
    finally:
        server.stop()


def test_a_non_loopback_host_is_refused_until_a_key_exists(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    refused = attune_cli(embedded_env, "serve", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 2
    assert "no API key exists" in refused.stderr
    listed = attune_cli(embedded_env, "apikey", "list", "--json")
    assert listed.stdout.strip() == "[]"


def test_the_access_log_is_on_unless_turned_off(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    for args, logged in (((), True), (("--no-access-log",), False)):
        server = serve(embedded_env, tmp_path, *args)
        try:
            with server.client() as client:
                assert client.get("/api/v1/health?probe=1").status_code == 200
        finally:
            server.stop()
        assert ("GET /api/v1/health?probe=1 HTTP/1.1" in server.log.read_text()) is logged, args
