"""Executions end to end on PostgreSQL + Redis, and + RabbitMQ, with real `celery -A attune
worker` processes.

Two workers: ``w-shell`` serves the shell runtime, ``w-python`` the python runtime; nothing
serves native.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

import attune
from attune.errors import ActionNotFoundError, NoWorkerAvailableError, ParameterError
from attune.store.models import Execution, ExecutionStatus, Worker
from tests.brokers import Broker
from tests.cluster import Cluster, cluster
from tests.conftest import clear
from tests.processes import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(
    postgres_url: str, broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    broker.reset()
    with cluster(postgres_url, broker.url, tmp_path_factory.mktemp("cluster")) as running:
        running.start_worker("w-shell", ["shell"])
        running.start_worker("w-python", ["python"])
        yield running
        queues = running.fleet.queues()
        running.stop_all()
        clear(running.database)
    broker.reset(queues)


def execution_count(deployment: Cluster) -> int:
    with deployment.database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Execution)) or 0


def test_echo_round_trip(deployment: Cluster) -> None:
    record = attune.execute("core.echo", {"message": "hello attune"}).wait(30)

    assert record.status is ExecutionStatus.SUCCEEDED
    assert record.stdout == "hello attune\n"
    assert record.result is None
    assert record.exit_code == 0
    assert record.worker == "w-shell"
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.requested_at <= record.started_at <= record.finished_at
    assert attune.get_execution(record.id) == record


def test_the_waiter_gets_the_record_from_the_notification_or_reads_it_when_too_big(
    deployment: Cluster,
) -> None:
    # Given executions whose records fit a notification payload, and one whose does not
    small = attune.execute("core.local", {"cmd": "echo small"})
    big = attune.execute("core.local", {"cmd": "head -c 9000 /dev/zero | tr '\\0' x"})

    # When their callers wait
    records = [small.wait(30), big.wait(30)]

    # Then each record is the stored one
    assert [len(record.stdout) for record in records] == [6, 9000]
    for record in records:
        assert record.status is ExecutionStatus.SUCCEEDED
        assert attune.get_execution(record.id) == record


def test_json_and_jsonl_results_are_stored_once(deployment: Cluster) -> None:
    listing = attune.execute("examples.list_example", {"count": 3}).wait(30)
    stats = attune.execute("examples.text_stats", {"text": "a b a"}).wait(30)

    assert listing.status is ExecutionStatus.SUCCEEDED
    assert [item["id"] for item in listing.result] == [1, 2, 3]
    assert listing.stdout == ""
    assert stats.status is ExecutionStatus.SUCCEEDED
    assert stats.worker == "w-python"
    assert isinstance(stats.result, dict)
    assert stats.stdout == ""


def test_a_failing_action_records_its_exit_code(deployment: Cluster) -> None:
    record = attune.execute("core.noop", {"exit_code": 3}).wait(30)

    assert record.status is ExecutionStatus.FAILED
    assert record.exit_code == 3
    assert record.error is not None
    assert "3" in record.error


def test_a_timeout_ends_the_execution(deployment: Cluster) -> None:
    started = time.monotonic()
    record = attune.execute("core.sleep", {"seconds": 30}, timeout_s=0.5).wait(30)

    assert record.status is ExecutionStatus.TIMEOUT
    assert "timed out" in (record.error or "")
    assert time.monotonic() - started < 10


def test_cancel_of_a_running_execution_kills_its_process_group(
    deployment: Cluster, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    handle = attune.execute("core.local", {"cmd": f"sleep 60 & echo $! > {pid_file}; wait"})
    wait_until(pid_file.exists, 30, "the action writing its pid")
    wait_until(lambda: pid_file.read_text().strip(), 5, "the pid file filled")
    grandchild = int(pid_file.read_text())

    assert handle.cancel() is ExecutionStatus.CANCELING
    record = handle.wait(30)

    assert record.status is ExecutionStatus.CANCELED
    wait_until(lambda: not os.path.exists(f"/proc/{grandchild}"), 10, "the grandchild dying")


def test_cancel_of_a_scheduled_execution_means_it_never_runs(
    deployment: Cluster, tmp_path: Path
) -> None:
    from attune.executions.routing import Routed
    from attune.executions.scheduler import schedule
    from attune.worker.app import resources
    from attune.worker.tasks import execute_action

    marker = tmp_path / "ran"
    routed = schedule(
        resources.database, resources.settings, "core.local", {"cmd": f"touch {marker}"}
    )
    assert isinstance(routed, Routed)
    handle = attune.ExecutionHandle(routed.execution_id)

    assert handle.cancel() is ExecutionStatus.CANCELED
    execute_action.apply_async((routed.execution_id,), queue=routed.queue)
    time.sleep(1)  # give the worker its chance to (wrongly) run it

    assert handle.status() is ExecutionStatus.CANCELED
    assert not marker.exists()


def test_worker_name_routes_to_that_worker(deployment: Cluster) -> None:
    record = attune.execute("core.echo", {"message": "x"}, worker="w-shell").wait(30)

    assert record.worker == "w-shell"
    assert record.status is ExecutionStatus.SUCCEEDED


def test_a_runtime_no_live_worker_serves_fails_fast(deployment: Cluster) -> None:
    with pytest.raises(NoWorkerAvailableError) as caught:
        attune.execute("examples.native_greet", {})

    record = attune.get_execution(caught.value.execution_id)
    assert record.status is ExecutionStatus.FAILED
    assert "native" in (record.error or "")

    with pytest.raises(NoWorkerAvailableError, match="does not serve"):
        attune.execute("core.echo", {"message": "x"}, worker="w-python")


def test_invalid_parameters_and_unknown_refs_enqueue_nothing(
    deployment: Cluster, broker: Broker
) -> None:
    before = execution_count(deployment), broker.message_count("attune.shell")

    with pytest.raises(ParameterError) as caught:
        attune.execute("core.noop", {"exit_code": 999, "bogus": 1})
    with pytest.raises(ActionNotFoundError):
        attune.execute("core.nope", {})

    assert "exit_code" in str(caught.value)
    assert "bogus" in str(caught.value)
    assert (execution_count(deployment), broker.message_count("attune.shell")) == before


def test_task_events_reach_a_monitor_soon_after_the_execution(deployment: Cluster) -> None:
    # Given a monitor capturing the workers' task events (as Flower or `celery events` would)
    events: dict[str, set[str]] = {}

    def on_event(event: dict[str, str]) -> None:
        events.setdefault(event.get("uuid", ""), set()).add(event["type"])

    with attune.app.connection_for_read() as connection:
        receiver = attune.app.events.Receiver(connection, handlers={"*": on_event})
        monitor = threading.Thread(target=receiver.capture, kwargs={"wakeup": False}, daemon=True)
        monitor.start()
        time.sleep(0.5)  # the fanout subscription is in place

        # When an execution runs
        record = attune.execute("core.echo", {"message": "watched"}).wait(30)

        # Then its task's received, started and succeeded events arrive within a second
        wanted = {"task-received", "task-started", "task-succeeded"}
        wait_until(lambda: any(wanted <= types for types in events.values()), 1.0, "task events")
        receiver.should_stop = True
    assert record.status is ExecutionStatus.SUCCEEDED


def test_a_message_delivered_twice_runs_once(deployment: Cluster, tmp_path: Path) -> None:
    from attune.worker.tasks import execute_action

    runs = tmp_path / "runs"
    handle = attune.execute("core.local", {"cmd": f"echo ran >> {runs}"})
    record = handle.wait(30)
    execute_action.apply_async((handle.id,), queue="attune.shell")
    execute_action.apply_async((handle.id,), queue="attune.worker.w-shell")
    time.sleep(1)

    assert record.status is ExecutionStatus.SUCCEEDED
    assert runs.read_text() == "ran\n"


def test_secrets_are_masked_absent_from_the_broker_and_reach_the_action(
    deployment: Cluster, broker: Broker
) -> None:
    secret = "s3cr3t-value-7"
    with broker.published() as seen:
        record = attune.execute("testing.secret_echo", {"token": secret}).wait(30)

    assert record.status is ExecutionStatus.SUCCEEDED
    assert record.parameters == {"token": "********", "note": "plain"}
    assert record.stdout == "note=plain token=********\n"
    assert any(b"execute_action" in message for message in seen)
    assert not any(secret.encode() in message for message in seen)
    with deployment.database.session_scope() as session:
        stored = session.scalar(select(Execution.secrets).where(Execution.id == record.id))
    assert stored is not None
    assert secret not in stored


def test_500_executions_from_4_threads_each_end_once(deployment: Cluster, tmp_path: Path) -> None:
    runs = tmp_path / "runs"

    def submit(_: int) -> int:
        return attune.execute("core.local", {"cmd": f"echo $ATTUNE_EXECUTION_ID >> {runs}"}).id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(submit, range(500)))
    records = [attune.ExecutionHandle(execution_id).wait(120) for execution_id in ids]

    assert all(record.status is ExecutionStatus.SUCCEEDED for record in records)
    lines = runs.read_text().split()
    assert sorted(map(int, lines)) == sorted(ids)


def test_a_killed_worker_leaves_no_execution_running(deployment: Cluster) -> None:
    doomed = deployment.start_worker("w-doomed", ["shell"])
    beat = deployment.fleet.beat()
    handle = attune.execute("core.sleep", {"seconds": 5}, worker="w-doomed")
    wait_until(lambda: handle.status() is ExecutionStatus.RUNNING, 30, "the action running")

    doomed.kill()
    record = handle.wait(30)
    beat.stop()

    assert record.status is ExecutionStatus.ABANDONED
    assert record.error is not None
    assert record.error.startswith("worker w-doomed stopped heartbeating")
    with deployment.database.session_scope() as session:
        statuses = {
            name: status for name, status in session.execute(select(Worker.name, Worker.status))
        }
    assert statuses["w-doomed"] == "inactive"
    assert statuses["w-shell"] == "active"
    assert attune.execute("core.echo", {"message": "still"}).wait(30).succeeded


def test_a_dead_pool_process_leaves_no_execution_running(deployment: Cluster) -> None:
    # Given an action running in a pool process of a worker that stays up
    worker = deployment.start_worker("w-pool", ["shell"])
    handle = attune.execute("core.sleep", {"seconds": 30}, worker="w-pool")
    wait_until(lambda: handle.status() is ExecutionStatus.RUNNING, 30, "the action running")

    # When its pool processes are killed (the main process lives on and replaces them)
    for child in pool_processes(worker.pid):
        os.kill(child, signal.SIGKILL)
    record = handle.wait(30)

    # Then the execution is abandoned at once, without waiting for a sweep
    assert record.status is ExecutionStatus.ABANDONED
    assert record.error is not None
    assert record.error.startswith("the worker process running it on w-pool died")
    assert worker.alive()
    assert attune.execute("core.echo", {"message": "again"}, worker="w-pool").wait(30).succeeded


def pool_processes(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]
