"""The event hub behind ``/stream``: order, replay from the ring, and ``reset`` instead of gaps."""

from __future__ import annotations

import asyncio
import threading

from attune.api.events import RESET, Event, EventHub


def _all(_: Event) -> bool:
    return True


def _statuses(events: list[Event]) -> list[object]:
    return [event.data.get("status", event.kind) for event in events]


def test_events_published_from_threads_arrive_in_order_exactly_once() -> None:
    async def scenario() -> list[Event]:
        hub = EventHub()
        subscription = hub.subscribe(_all, None)
        thread = threading.Thread(
            target=lambda: [hub.publish("execution", {"status": n}) for n in range(500)]
        )
        thread.start()
        received: list[Event] = []
        while len(received) < 500:
            received += await subscription.next(5)
        thread.join()
        return received

    received = asyncio.run(scenario())
    assert _statuses(received) == list(range(500))
    assert [event.seq for event in received] == list(range(1, 501))


def test_a_subscriber_that_falls_behind_gets_reset_then_the_new_events() -> None:
    async def scenario() -> list[Event]:
        hub = EventHub(queue_events=3)
        slow = hub.subscribe(_all, None)
        for n in range(4):  # the subscriber reads nothing meanwhile; the 4th overflows
            hub.publish("execution", {"status": n})
        hub.publish("execution", {"status": "after"})
        return await slow.next(1)

    received = asyncio.run(scenario())
    assert _statuses(received) == [RESET, "after"]
    assert received[0].seq == 4  # the reset stands for the events it replaced


def test_last_event_id_in_the_ring_replays_the_rest_else_reset() -> None:
    async def scenario() -> tuple[list[Event], list[Event], list[Event], list[Event]]:
        hub = EventHub(ring_events=4)
        for n in range(6):
            hub.publish("execution", {"status": n})
        resumed = await hub.subscribe(_all, f"{hub.epoch}.4").next(1)
        current = await hub.subscribe(_all, f"{hub.epoch}.6").next(0.05)
        too_old = await hub.subscribe(_all, f"{hub.epoch}.1").next(1)
        other_server = await hub.subscribe(_all, "123.5").next(1)
        return resumed, current, too_old, other_server

    resumed, current, too_old, other_server = asyncio.run(scenario())
    assert _statuses(resumed) == [4, 5]
    assert current == []
    assert _statuses(too_old) == [RESET]
    assert _statuses(other_server) == [RESET]


def test_a_gap_in_the_source_resets_subscribers_and_replays_across_it() -> None:
    async def scenario() -> tuple[list[Event], list[Event]]:
        hub = EventHub()
        hub.publish("execution", {"status": "before"})
        live = hub.subscribe(lambda event: event.data.get("status") == "never", None)
        hub.gap("the listener reconnected")
        hub.publish("execution", {"status": "after"})
        return await live.next(1), await hub.subscribe(_all, f"{hub.epoch}.1").next(1)

    live, replayed = asyncio.run(scenario())
    assert _statuses(live) == [RESET]  # reset reaches even a subscriber filtering it out
    assert _statuses(replayed) == [RESET, "after"]
