"""The SSE streams and ``attune executions tail`` through a real ``attune serve``: on the embedded
default, and on PostgreSQL + Redis with a real worker."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from httpx_sse import ServerSentEvent, connect_sse

from attune.executions.liveoutput import ENDED_EXPIRE_S, stream_key
from attune.store.models import MASK
from tests.api.conftest import Server, serve
from tests.cluster import Cluster, attune_cli, cluster, embedded_environment
from tests.conftest import clear
from tests.processes import wait_until

pytestmark = pytest.mark.slow


@dataclass
class Served:
    """A served API, the environment of its deployment, and the keys' headers."""

    server: Server
    env: dict[str, str]
    reader: dict[str, str]
    operator: dict[str, str]
    workdir: Path
    deployment: Cluster | None = None


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp(f"streams-{request.param}")
    with ExitStack() as stack:
        if request.param == "embedded":
            env = embedded_environment(workdir)
            reader = operator = {}
            deployment = None
        else:
            postgres_url = request.getfixturevalue("postgres_url")
            redis_url = request.getfixturevalue("redis_url")
            deployment = stack.enter_context(cluster(postgres_url, redis_url, workdir))
            stack.callback(clear, deployment.database)  # once the workers stopped (LIFO)
            stack.callback(deployment.stop_all)
            deployment.start_worker("w-streams", ["shell"])
            env = deployment.fleet.environment()
            headers = []
            for name, scope in (("follower", "read"), ("starter", "operate")):
                created = attune_cli(env, "apikey", "create", name, "--scope", scope)
                assert created.returncode == 0, created.stderr
                headers.append({"Authorization": f"Bearer {created.stdout.strip()}"})
            reader, operator = headers
        server = serve(env, workdir)
        stack.callback(server.stop)
        yield Served(server, env, reader, operator, workdir, deployment)


class Events:
    """The events of one SSE stream, read by a thread of its own as they arrive."""

    def __init__(
        self, served: Served, path: str, params: dict[str, object] | None = None, **headers: str
    ) -> None:
        self.items: list[ServerSentEvent] = []
        self.status = 0
        self._socket: socket.socket | None = None
        self._opened = threading.Event()
        self._client = httpx.Client(
            base_url=served.server.base_url,
            headers={**served.reader, **headers},
            timeout=httpx.Timeout(30, read=120),
        )
        self._thread = threading.Thread(target=self._read, args=(path, params), daemon=True)
        self._thread.start()
        assert self._opened.wait(30), f"{path} did not answer"

    def _read(self, path: str, params: dict[str, object] | None) -> None:
        try:
            with connect_sse(self._client, "GET", path, params=params) as source:
                self.status = source.response.status_code
                stream = source.response.extensions.get("network_stream")
                self._socket = None if stream is None else stream.get_extra_info("socket")
                self._opened.set()
                for event in source.iter_sse():
                    if event.data:  # a browser dispatches no event for retry: alone
                        self.items.append(event)
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by close()
        finally:
            self._opened.set()

    def wait_for(self, done: Callable[[list[ServerSentEvent]], bool], what: str) -> None:
        """Wait until ``done`` holds of the events received so far."""
        wait_until(lambda: done(list(self.items)), 60, what)

    def close(self) -> None:
        """Drop the connection. Shutting its socket down ends the reader's blocking read at
        once (closing the client alone leaves it waiting for the server's next bytes)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the stream's reader did not stop"


def start(served: Served, action: str, **parameters: object) -> int:
    with httpx.Client(base_url=served.server.base_url, headers=served.operator) as client:
        response = client.post(
            "/api/v1/executions",
            json={"action": action, "parameters": parameters, "timeout_s": 60},
        )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def get(served: Served, path: str) -> httpx.Response:
    with httpx.Client(base_url=served.server.base_url, headers=served.reader) as client:
        return client.get(path)


def executions_of(execution_id: int, events: list[ServerSentEvent]) -> list[ServerSentEvent]:
    return [e for e in events if e.event == "execution" and e.json()["id"] == execution_id]


def finished(execution_id: int) -> Callable[[list[ServerSentEvent]], bool]:
    return lambda events: any(
        e.json()["status"] == "succeeded" for e in executions_of(execution_id, events)
    )


def joined(events: list[ServerSentEvent], stream: str) -> str:
    """The text of ``stream``, checking its offsets follow each other: nothing lost or doubled."""
    text = ""
    for event in events:
        if event.event == stream:
            data = event.json()
            assert data["offset"] == len(text), (
                f"{stream} at {data['offset']}, expected {len(text)}"
            )
            text += data["text"]
    return text


def ended(events: list[ServerSentEvent]) -> bool:
    return any(event.event == "end" for event in events)


def test_transitions_arrive_in_order_exactly_once_and_resume_from_last_event_id(
    served: Served,
) -> None:
    events = Events(served, "/api/v1/stream", {"events": "execution"})
    try:
        execution_id = start(served, "core.echo", message="streamed")
        events.wait_for(finished(execution_id), "the execution's transitions")
    finally:
        events.close()
    assert events.status == 200
    mine = executions_of(execution_id, events.items)
    statuses = [event.json()["status"] for event in mine]
    assert statuses[-2:] == ["running", "succeeded"]
    assert len(statuses) == len(set(statuses)), statuses
    for before, after in itertools.pairwise(mine):
        assert after.json()["previous_status"] == before.json()["status"]
    sequence = [int(event.id.split(".")[1]) for event in events.items]
    assert sequence == sorted(set(sequence))
    assert mine[-1].json()["exit_code"] == 0
    for stamp in ("requested_at", "started_at", "finished_at"):
        assert datetime.fromisoformat(mine[-1].json()[stamp]).utcoffset() == timedelta(0)

    resumed = Events(
        served, "/api/v1/stream", {"execution_id": execution_id}, **{"Last-Event-ID": mine[0].id}
    )
    try:
        resumed.wait_for(finished(execution_id), "the replayed transitions")
    finally:
        resumed.close()
    assert [event.id for event in resumed.items] == [event.id for event in mine[1:]]

    stranger = Events(served, "/api/v1/stream", **{"Last-Event-ID": "1.1"})
    try:
        stranger.wait_for(lambda events: bool(events), "a reset for an unknown Last-Event-ID")
    finally:
        stranger.close()
    assert stranger.items[0].event == "reset"


def test_live_output_arrives_while_the_action_runs_and_equals_the_stored_output(
    served: Served,
) -> None:
    gate = served.workdir / f"gate-{uuid.uuid4().hex}"
    # The action waits for the gate, which the test opens only once it has seen "one" live.
    command = f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two; echo warn >&2"
    execution_id = start(served, "core.local", cmd=command)
    path = f"/api/v1/executions/{execution_id}/output/stream"
    output = Events(served, path)
    try:
        output.wait_for(lambda events: "one\n" in joined(events, "stdout"), "the first line")
        assert get(served, f"/api/v1/executions/{execution_id}").json()["status"] == "running"
        gate.touch()
        output.wait_for(ended, "the end of the output")
    finally:
        output.close()
    stored = get(served, f"/api/v1/executions/{execution_id}/output/stdout").text
    assert joined(output.items, "stdout") == stored == "one\ntwo\n"
    assert joined(output.items, "stderr") == "warn\n"
    assert output.items[-1].event == "end"
    assert output.items[-1].json() == {"status": "succeeded", "exit_code": 0}

    replay = Events(served, path)  # a finished execution: its stored output, then end
    try:
        replay.wait_for(ended, "the stored output")
    finally:
        replay.close()
    assert [e.event for e in replay.items] == ["stdout", "stderr", "end"]
    assert joined(replay.items, "stdout") == stored


def test_a_secret_never_appears_in_the_output_stream(served: Served) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    execution_id = start(served, "testing.secret_echo", token=token, note="visible")
    output = Events(served, f"/api/v1/executions/{execution_id}/output/stream")
    try:
        output.wait_for(ended, "the end of the output")
    finally:
        output.close()
    text = joined(output.items, "stdout")
    assert text == f"note=visible token={MASK}\n"
    assert all(token not in event.data for event in output.items)


def test_an_unknown_execution_is_a_404(served: Served) -> None:
    assert get(served, "/api/v1/executions/999999/output/stream").status_code == 404
    assert get(served, "/api/v1/stream?events=bogus").status_code == 422


def test_tail_prints_the_output_and_exits_as_run(served: Served) -> None:
    env = {
        **served.env,
        "ATTUNE_API_URL": served.server.base_url,
        "ATTUNE_API_KEY": served.reader.get("Authorization", " ").split(" ")[1],
    }
    good = start(served, "core.local", cmd="echo out; sleep 0.3; echo err >&2; echo more")
    tailed = attune_cli(env, "executions", "tail", str(good))
    assert (tailed.returncode, tailed.stdout, tailed.stderr) == (0, "out\nmore\n", "err\n")
    bad = start(served, "core.local", cmd="echo failing; exit 3")
    tailed = attune_cli(env, "executions", "tail", str(bad))
    assert (tailed.returncode, tailed.stdout) == (1, "failing\n")


@pytest.mark.parametrize("served", ["postgres"], indirect=True)  # embedded: one in-process worker
def test_worker_registration_and_deactivation_are_events(served: Served) -> None:
    assert served.deployment is not None
    events = Events(served, "/api/v1/stream", {"events": "worker"})
    try:
        extra = served.deployment.start_worker("w-extra", ["shell"])
        events.wait_for(
            lambda items: any(e.json()["change"] == "register" for e in items),
            "the registration",
        )
        extra.stop()
        events.wait_for(
            lambda items: any(e.json().get("change") == "deactivate" for e in items),
            "the deactivation",
        )
    finally:
        events.close()
    changes = [(e.json()["name"], e.json()["change"], e.json()["status"]) for e in events.items]
    assert changes == [("w-extra", "register", "active"), ("w-extra", "deactivate", "inactive")]


def test_without_live_output_a_running_execution_says_so_then_ends_with_the_stored_output(
    tmp_path: Path,
) -> None:
    env = embedded_environment(tmp_path, ATTUNE_LIVE_OUTPUT="off")
    served = Served(serve(env, tmp_path), env, {}, {}, tmp_path)
    gate = tmp_path / "gate"
    try:
        command = f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two"
        execution_id = start(served, "core.local", cmd=command)
        output = Events(served, f"/api/v1/executions/{execution_id}/output/stream")
        try:
            output.wait_for(lambda events: bool(events), "the unavailable notice")
            gate.touch()
            output.wait_for(ended, "the end of the output")
        finally:
            output.close()
    finally:
        served.server.stop()
    assert [event.event for event in output.items] == ["live output unavailable", "stdout", "end"]
    assert joined(output.items, "stdout") == "one\ntwo\n"


@pytest.mark.parametrize("served", ["postgres"], indirect=True)  # the Redis backend
def test_the_redis_stream_expires_after_the_end_and_silence_writes_none(served: Served) -> None:
    """Given an action printing past the quiet start (0.25 s), one silent, one printing and
    ending at once: only the first has a stream, which expires after its end."""
    client = redis.Redis.from_url(served.env["ATTUNE_BROKER_URL"])
    try:
        printing = start(served, "core.local", cmd="sleep 0.4; echo kept a while")
        silent = start(served, "core.noop")
        quick = start(served, "core.echo", message="stored, not streamed")
        for execution_id in (printing, silent, quick):
            output = Events(served, f"/api/v1/executions/{execution_id}/output/stream")
            try:
                output.wait_for(ended, "the end of the output")
            finally:
                output.close()
        key = stream_key(printing)
        wait_until(lambda: 0 < client.ttl(key) <= ENDED_EXPIRE_S, 30, "the stream's expiry")
        kinds = [fields[b"k"] for _id, fields in client.xrange(key)]
        assert kinds == [b"stdout", b"end"]
        assert not client.exists(stream_key(silent))
        assert not client.exists(stream_key(quick))
    finally:
        client.close()
