"""The live feed: what a running action's output publishes (redacted, capped, coalesced)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from attune.runtimes.livefeed import FLUSH_BYTES, LiveFeed
from attune.runtimes.process import Spawn, run_process
from attune.store.models import MASK


class Recorder:
    """A sink that keeps what was published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int, str]] = []
        self.truncated: list[str] = []

    def publish(self, stream: str, offset: int, text: str) -> None:
        self.published.append((stream, offset, text))

    def truncate(self, stream: str) -> None:
        self.truncated.append(stream)

    def text(self, stream: str) -> str:
        parts = [(offset, text) for name, offset, text in self.published if name == stream]
        joined = ""
        for offset, text in parts:
            assert offset == len(joined), "a gap or an overlap in the published offsets"
            joined += text
        return joined


def test_a_secret_split_across_two_chunks_is_never_published() -> None:
    sink = Recorder()
    feed = LiveFeed(sink, ["hunter2-secret"])
    feed.kept("stdout", b"token=hunter2")
    feed.tick()
    feed.kept("stdout", b"-secret and more\n")
    feed.finish()
    assert sink.text("stdout") == f"token={MASK} and more\n"
    assert all("hunter2" not in text for _stream, _offset, text in sink.published)


def test_the_beginning_of_a_secret_cut_by_the_cap_is_masked() -> None:
    sink = Recorder()
    feed = LiveFeed(sink, ["hunter2-secret"])
    feed.kept("stdout", b"x hunter2-se")
    feed.dropped("stdout")
    feed.finish()
    assert sink.text("stdout") == f"x {MASK}"
    assert sink.truncated == ["stdout"]


def test_a_character_split_between_reads_is_decoded_whole() -> None:
    sink = Recorder()
    feed = LiveFeed(sink, [])
    encoded = "grüße\n".encode()
    feed.kept("stderr", encoded[:3])
    feed.kept("stderr", encoded[3:])
    feed.finish()
    assert sink.text("stderr") == "grüße\n"


def test_small_writes_are_coalesced_and_nothing_printed_publishes_nothing() -> None:
    sink = Recorder()
    feed = LiveFeed(sink, [])
    for _ in range(100):
        feed.kept("stdout", b"x")
    assert sink.published == []  # under FLUSH_BYTES and not yet FLUSH_S old
    feed.kept("stdout", b"y" * FLUSH_BYTES)
    assert len(sink.published) == 1
    feed.finish()
    assert sink.text("stdout") == "x" * 100 + "y" * FLUSH_BYTES
    assert sink.text("stderr") == ""
    quiet = Recorder()
    LiveFeed(quiet, []).finish()
    assert quiet.published == []
    assert quiet.truncated == []


def test_a_real_process_publishes_a_line_before_it_exits(tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    class Opening(Recorder):
        def publish(self, stream: str, offset: int, text: str) -> None:
            super().publish(stream, offset, text)
            if text == "one\n":
                gate.touch()  # the action waits for this before printing its second line

    sink = Opening()

    script = f"echo one; while [ ! -e {gate} ]; do sleep 0.01; done; echo two"
    finished = run_process(
        Spawn(
            argv=["bash", "-c", script],
            cwd=tmp_path,
            env=dict(os.environ),
            stdin=None,
            timeout_s=30,
            kill_grace_s=1,
            max_output_bytes=1024,
            feed=LiveFeed(sink, []),
        ),
        threading.Event(),
    )
    assert finished.stop is None, "the action timed out: its first line was not published live"
    assert finished.stdout.text == "one\ntwo\n" == sink.text("stdout")


def test_a_flood_publishes_only_what_the_cap_keeps(tmp_path: Path) -> None:
    sink = Recorder()
    limit = 300_000  # past SMALL_BYTES: the capture reads into its mapping
    finished = run_process(
        Spawn(
            argv=["bash", "-c", "head -c 2000000 /dev/zero | tr '\\0' 'a'"],
            cwd=tmp_path,
            env=dict(os.environ),
            stdin=None,
            timeout_s=30,
            kill_grace_s=1,
            max_output_bytes=limit,
            feed=LiveFeed(sink, []),
        ),
        threading.Event(),
    )
    assert finished.stdout.truncated
    assert (
        sink.text("stdout")
        == "a" * limit
        == finished.stdout.text.removesuffix(finished.stdout.notice)
    )
    assert sink.truncated == ["stdout"]
    assert max(len(text) for _stream, _offset, text in sink.published) <= FLUSH_BYTES * 5


class Clock:
    """Time that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_action_ending_within_the_quiet_start_publishes_nothing() -> None:
    """Given a 0.25 s quiet start, output that ended 0.2 s in is left to the stored record."""
    sink, clock = Recorder(), Clock()
    feed = LiveFeed(sink, [], quiet_s=0.25, clock=clock)
    feed.kept("stdout", b"quick\n")
    clock.now += 0.2
    feed.tick()
    feed.kept("stderr", b"warn\n")
    feed.dropped("stderr")
    feed.finish()
    assert sink.published == []
    assert sink.truncated == []


def test_what_was_held_during_the_quiet_start_is_published_in_order_after_it() -> None:
    sink, clock = Recorder(), Clock()
    feed = LiveFeed(sink, ["hunter2-secret"], quiet_s=0.25, clock=clock)
    feed.kept("stdout", b"one hunter2")
    clock.now += 0.15
    feed.tick()  # text waited FLUSH_S: due, but still held
    feed.kept("stdout", b"-secret two\n")
    assert sink.published == []
    clock.now += 0.15
    feed.tick()
    published = list(sink.published)
    feed.kept("stdout", b"three\n")
    feed.finish()
    assert published  # out as soon as the quiet start ended, not only at the end
    assert sink.text("stdout") == f"one {MASK} two\nthree\n"
