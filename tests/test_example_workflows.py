"""The example workflows of the `examples` pack, run as a user runs them: `attune run` on the
embedded default (SQLite, an in-process worker that serves the `workflow` runtime too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster import attune_cli, embedded_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return embedded_environment(tmp_path_factory.mktemp("workflows"))


def run_json(env: dict[str, str], *args: str) -> dict[str, object]:
    done = attune_cli(env, "run", *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    record: dict[str, object] = json.loads(done.stdout)
    return record


def tasks(env: dict[str, str], execution_id: object) -> list[dict[str, object]]:
    done = attune_cli(env, "executions", "tasks", str(execution_id), "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_release_branches_joins_and_tolerates_a_lint_failure(embedded_env: dict[str, str]) -> None:
    clean = run_json(embedded_env, "examples.release", "version=1.4")
    linted = run_json(embedded_env, "examples.release", "version=1.5", "lint_exit_code=3")

    assert clean["status"] == "succeeded"
    assert clean["result"] == {"words": 3, "lint_ok": True, "published": True}
    assert [row["task"] for row in tasks(embedded_env, clean["id"])] == [
        "measure",
        "test",
        "lint",
        "publish",
    ]
    assert linted["status"] == "succeeded"
    assert linted["result"]["lint_ok"] is False  # type: ignore[index]
    statuses = {row["task"]: row["status"] for row in tasks(embedded_env, linted["id"])}
    assert statuses == {
        "measure": "succeeded",
        "test": "succeeded",
        "lint": "failed",
        "publish": "succeeded",
    }
    published = attune_cli(embedded_env, "executions", "list", "--parent", str(linted["id"]))
    assert "core.echo" in published.stdout


def test_patch_fleet_fans_out_in_item_order_at_most_three_at_once(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    hosts = [f"host-{n}" for n in range(7)]

    record = run_json(embedded_env, "examples.patch_fleet", f"hosts={json.dumps(hosts)}")

    assert record["status"] == "succeeded", record
    rows = tasks(embedded_env, record["id"])
    summary = next(row for row in rows if row["task"] == "summary")
    assert record["result"] == {"patched": hosts, "summary": summary["execution_id"]}
    patched = [row for row in rows if row["task"] == "patch"]
    assert [row["item"] for row in patched] == list(range(7))
    assert {row["status"] for row in rows} == {"succeeded"}
    children = json.loads(
        attune_cli(
            embedded_env, "executions", "list", "--parent", str(record["id"]), "--json"
        ).stdout
    )
    echoes = sorted(
        (child for child in children if child["stdout"].startswith("patched")),
        key=lambda child: child["id"],
    )
    assert [child["stdout"] for child in echoes] == [
        f"patched {host} ({n + 1} of 7)\n" for n, host in enumerate(hosts)
    ]
    # Never more than three at once: each item after the third started once one had ended.
    for later in echoes[3:]:
        earlier_ends = [child["finished_at"] for child in echoes if child["id"] < later["id"]]
        assert sum(end <= later["started_at"] for end in earlier_ends) >= echoes.index(later) - 2
