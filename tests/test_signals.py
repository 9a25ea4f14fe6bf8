"""Worker signals: receivers are called in order, once each, and a failing one is contained."""

from __future__ import annotations

import logging

import pytest

from attune.liveness.signals import Signal, WorkerTransition

TRANSITION = WorkerTransition(worker="w1", status="inactive", reason="gone", last_heartbeat=None)


def test_receivers_get_the_payload_once_each_until_disconnected() -> None:
    signal: Signal[WorkerTransition] = Signal("test")
    calls: list[str] = []

    @signal.connect
    def first(transition: WorkerTransition) -> None:
        calls.append(f"first {transition.worker}")

    signal.connect(first)
    signal.connect(lambda transition: calls.append(f"second {transition.reason}"))
    signal.send(TRANSITION)
    signal.disconnect(first)
    signal.disconnect(first)
    signal.send(TRANSITION)

    assert calls == ["first w1", "second gone", "second gone"]


def test_a_failing_receiver_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signal: Signal[WorkerTransition] = Signal("test")
    calls: list[str] = []

    def broken(_: WorkerTransition) -> None:
        raise RuntimeError("boom")

    signal.connect(broken)
    signal.connect(lambda transition: calls.append(transition.worker))
    with caplog.at_level(logging.ERROR, logger="attune.liveness.signals"):
        signal.send(TRANSITION)

    assert calls == ["w1"]
    assert "receiver" in caplog.text
    assert "boom" in caplog.text
