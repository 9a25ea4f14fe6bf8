"""The action YAML's ``idempotent``, ``retry`` and ``concurrency``: validated at load (every
problem naming file and field), stored on the action, snapshotted into each execution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from attune.errors import PackError
from attune.executions.policies import Backoff, Jitter, OnLimit, Policy, RetryOn
from attune.executions.scheduler import schedule
from attune.packs.loader import load_packs
from attune.packs.reader import read_pack
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Action, Execution, Worker
from attune.store.sqltypes import db_now
from tests.pack_builder import action, write_pack

GOOD = """\
ref: demo.hello
runner_type: shell
entry_point: hello.sh
idempotent: true
retry:
  on: [failed, timeout, abandoned]
  max_attempts: 3
  delay_s: 2
  backoff: exponential
  max_delay_s: 300
  jitter: full
concurrency:
  limit: 2
  by: [host]
  on_limit: queue
  max_waiting: 1000
parameters:
  host: {type: string, required: true}
  token: {type: string, secret: true}
"""


def write(tmp_path: Path, text: str) -> Path:
    pack_dir = write_pack(tmp_path, "demo")
    (pack_dir / "actions" / "hello.yaml").write_text(text, encoding="utf-8")
    return pack_dir


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PackError) as caught:
        read_pack(write(tmp_path, text))
    return list(caught.value.problems)


def test_the_bare_yaml_1_1_on_key_is_read_as_the_word_on(tmp_path: Path) -> None:
    spec = read_pack(write(tmp_path, GOOD)).actions[0]

    policy = Policy.from_json(spec.policy)
    assert policy.idempotent is True
    assert policy.retry is not None
    assert policy.retry.on == (RetryOn.FAILED, RetryOn.TIMEOUT, RetryOn.ABANDONED)
    assert (policy.retry.max_attempts, policy.retry.delay_s) == (3, 2.0)
    assert (policy.retry.backoff, policy.retry.jitter) == (Backoff.EXPONENTIAL, Jitter.FULL)
    assert policy.concurrency is not None
    assert policy.concurrency.by == ("host",)
    assert policy.concurrency.on_limit is OnLimit.QUEUE
    assert policy.concurrency.max_waiting == 1000


def test_an_action_without_policies_stores_none(tmp_path: Path) -> None:
    assert read_pack(write_pack(tmp_path, "demo")).actions[0].policy is None


MALFORMED: dict[str, tuple[str, str]] = {
    "idempotent-string": ("idempotent: 'yes'\n", "idempotent: must be true or false"),
    "retry-not-mapping": ("retry: 3\n", "retry: must be a mapping"),
    "retry-unknown-key": (
        "retry: {on: [failed], max_attempts: 2, delays: 1}\n",
        "retry.delays: unknown key",
    ),
    "on-missing": ("retry: {max_attempts: 2}\n", "retry.on: missing (required)"),
    "on-empty": ("retry: {on: [], max_attempts: 2}\n", "retry.on: must be a non-empty list"),
    "on-unknown": ("retry: {on: [crashed], max_attempts: 2}\n", "retry.on: 'crashed' is not"),
    "on-canceled": ("retry: {on: [canceled], max_attempts: 2}\n", "retry.on: 'canceled' is not"),
    "abandoned-not-idempotent": (
        "retry: {on: [abandoned], max_attempts: 2}\n",
        "retry.on: abandoned needs idempotent: true",
    ),
    "attempts-missing": ("retry: {on: [failed]}\n", "retry.max_attempts: missing (required)"),
    "attempts-one": (
        "retry: {on: [failed], max_attempts: 1}\n",
        "retry.max_attempts: must be a whole number 2 to 10, got 1",
    ),
    "attempts-eleven": (
        "retry: {on: [failed], max_attempts: 11}\n",
        "retry.max_attempts: must be a whole number 2 to 10, got 11",
    ),
    "delay-negative": (
        "retry: {on: [failed], max_attempts: 2, delay_s: -1}\n",
        "retry.delay_s: must be a number 0 to 3600, got -1",
    ),
    "delay-too-long": (
        "retry: {on: [failed], max_attempts: 2, delay_s: 3601}\n",
        "retry.delay_s: must be a number 0 to 3600",
    ),
    "max-delay-too-long": (
        "retry: {on: [failed], max_attempts: 2, max_delay_s: 7200}\n",
        "retry.max_delay_s: must be a number 0 to 3600",
    ),
    "backoff-unknown": (
        "retry: {on: [failed], max_attempts: 2, backoff: linear}\n",
        "retry.backoff: 'linear' is not one of constant, exponential",
    ),
    "jitter-unknown": (
        "retry: {on: [failed], max_attempts: 2, jitter: half}\n",
        "retry.jitter: 'half' is not one of full, none",
    ),
    "concurrency-not-mapping": ("concurrency: 2\n", "concurrency: must be a mapping"),
    "limit-missing": ("concurrency: {by: []}\n", "concurrency.limit: missing (required)"),
    "limit-zero": ("concurrency: {limit: 0}\n", "concurrency.limit: must be a whole number 1"),
    "limit-string": ("concurrency: {limit: '2'}\n", "concurrency.limit: must be a whole number"),
    "by-unknown": (
        "concurrency: {limit: 1, by: [region]}\n",
        "concurrency.by: 'region' is not a parameter of the action",
    ),
    "by-secret": (
        "concurrency: {limit: 1, by: [token]}\n",
        "concurrency.by: 'token' is a secret parameter",
    ),
    "by-not-list": ("concurrency: {limit: 1, by: host}\n", "concurrency.by: must be a list"),
    "on-limit-unknown": (
        "concurrency: {limit: 1, on_limit: drop}\n",
        "concurrency.on_limit: 'drop' is not one of queue, reject",
    ),
    "max-waiting-negative": (
        "concurrency: {limit: 1, max_waiting: -1}\n",
        "concurrency.max_waiting: must be a whole number 0",
    ),
    "concurrency-unknown-key": (
        "concurrency: {limit: 1, per: [host]}\n",
        "concurrency.per: unknown key",
    ),
}

BASE = """\
ref: demo.hello
runner_type: shell
entry_point: hello.sh
parameters:
  host: {type: string}
  token: {type: string, secret: true}
"""


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_policy_is_refused_naming_file_and_field(case: str, tmp_path: Path) -> None:
    text, expected = MALFORMED[case]
    found = problems(tmp_path, BASE + text)

    path = tmp_path / "demo" / "actions" / "hello.yaml"
    assert any(problem.startswith(f"{path}: {expected}") for problem in found), found


def test_a_malformed_policy_writes_nothing(tmp_path: Path, database: Database) -> None:
    write(tmp_path, BASE + "retry: {on: [failed], max_attempts: 1}\n")

    report = load_packs(database, tmp_path, ["demo"])

    assert report.errors
    with database.session_scope() as session:
        assert session.scalars(select(Action)).all() == []


def gated_pack(tmp_path: Path, limit: int) -> None:
    document = action("demo.hello", concurrency={"limit": limit, "by": ["who"]}, retry=_RETRY_TWICE)
    write_pack(tmp_path, "demo", {"hello": document})


_RETRY_TWICE: dict[str, Any] = {"on": ["failed"], "max_attempts": 2}


def test_the_policy_is_snapshotted_when_scheduled_and_a_reload_does_not_change_it(
    tmp_path: Path, database: Database
) -> None:
    # Given an action with a limit of 2 per `who`, and a live worker
    gated_pack(tmp_path, 2)
    load_packs(database, tmp_path, ["demo"])
    with database.session_scope() as session:
        session.add(Worker(name="w", runtimes=["shell"], status="active"))
        session.flush()
        session.execute(update(Worker).values(last_heartbeat=db_now()))
    settings = Settings(database_url=str(database.engine.url))
    first = schedule(database, settings, "demo.hello", {"who": "a"})

    # When the pack is reloaded with another limit, and another request comes
    gated_pack(tmp_path, 5)
    load_packs(database, tmp_path, ["demo"])
    second = schedule(database, settings, "demo.hello", {"who": "a"})
    other_key = schedule(database, settings, "demo.hello", {"who": "b"})

    # Then the first execution keeps the limit it was requested under
    with database.session_scope() as session:
        rows = {
            row.id: row for row in session.scalars(select(Execution).order_by(Execution.id)).all()
        }
    assert rows[first.execution_id].gate_limit == 2
    assert rows[second.execution_id].gate_limit == 5
    assert rows[first.execution_id].gate_key == rows[second.execution_id].gate_key
    assert rows[other_key.execution_id].gate_key != rows[first.execution_id].gate_key
    assert rows[first.execution_id].max_attempts == 2
    assert rows[first.execution_id].attempt == 1
    assert rows[first.execution_id].first_attempt_id == first.execution_id
    assert (
        rows[first.execution_id].policy
        == Policy.from_json(rows[first.execution_id].policy).to_json()
    )
