"""Bounded output capture: limits, truncation notices, concurrency of the streams, bytes."""

from __future__ import annotations

from attune.runtimes import Outcome

from .conftest import Pack


def test_output_exactly_at_the_limit_is_not_truncated(pack: Pack) -> None:
    result = pack.run("printf '%0100d' 0\n", max_output_bytes=100)
    assert result.stdout == "0" * 100
    assert (result.stdout_truncated, result.stdout_dropped_bytes) == (False, 0)


def test_one_byte_over_the_limit_is_truncated(pack: Pack) -> None:
    result = pack.run("printf '%0101d' 0\n", max_output_bytes=100)
    assert (result.stdout_truncated, result.stdout_dropped_bytes) == (True, 1)
    kept, notice = result.stdout[:100], result.stdout[100:]
    assert kept == "0" * 100
    assert notice == "\n[attune: stdout truncated at 100 bytes, 1 more bytes dropped]\n"


def test_both_streams_truncated(pack: Pack) -> None:
    body = "printf '%0300d\\n' 0\nprintf '%0500d\\n' 0 >&2\n"
    result = pack.run(body, max_output_bytes=200)
    assert result.outcome is Outcome.SUCCEEDED
    assert (result.stdout_truncated, result.stdout_dropped_bytes) == (True, 101)
    assert (result.stderr_truncated, result.stderr_dropped_bytes) == (True, 301)
    assert result.stderr.endswith(
        "[attune: stderr truncated at 200 bytes, 301 more bytes dropped]\n"
    )


def test_truncated_stderr_still_names_its_last_kept_line(pack: Pack) -> None:
    result = pack.run(
        "echo 'first problem' >&2\nprintf '%0500d' 0 >&2\nexit 1\n", max_output_bytes=20
    )
    assert result.error == "exited with code 1: 000000"


def test_stderr_flood_while_stdout_is_quiet_does_not_deadlock(pack: Pack) -> None:
    body = "head -c 3000000 /dev/zero | tr '\\0' e >&2\necho done\n"
    result = pack.run(body)
    assert result.outcome is Outcome.SUCCEEDED
    assert (result.stdout, len(result.stderr), result.stderr_truncated) == (
        "done\n",
        3000000,
        False,
    )


def test_large_output_under_the_limit_is_kept_whole(pack: Pack) -> None:
    result = pack.run("seq 1 200000\n", max_output_bytes=2 * 1024 * 1024)
    assert not result.stdout_truncated
    lines = result.stdout.splitlines()
    assert (len(lines), lines[0], lines[-1]) == (200000, "1", "200000")


def test_flood_past_the_limit_is_counted_and_dropped(pack: Pack) -> None:
    result = pack.run("head -c 50000000 /dev/zero\n", max_output_bytes=1024 * 1024)
    assert result.stdout_dropped_bytes == 50000000 - 1024 * 1024
    assert result.stdout.count("\ufffd") == 1024 * 1024


def test_binary_and_nul_output_is_replaced(pack: Pack) -> None:
    result = pack.run("printf 'a\\0b\\377\\376c\\n\\0'\nprintf 'caf\\303\\251\\0' >&2\n")
    assert result.stdout == "a\ufffdb\ufffd\ufffdc\n\ufffd"
    assert result.stderr == "caf\u00e9\ufffd"
    assert "\0" not in result.stdout + result.stderr


def test_multibyte_character_cut_by_the_limit_is_replaced(pack: Pack) -> None:
    result = pack.run("printf 'ab\\303\\251'\n", max_output_bytes=3)
    assert result.stdout.startswith("ab\ufffd\n[attune: stdout truncated")


def test_error_quotes_at_most_500_characters_of_the_last_line(pack: Pack) -> None:
    result = pack.run("printf '%0900d' 0 >&2\nexit 1\n")
    assert result.error == "exited with code 1: " + "0" * 500 + "…"
