"""Output parsing and deduplication, through real action processes."""

from __future__ import annotations

import pytest

from attune.runtimes import Outcome
from attune.runtimes.output import parse
from attune.store.models import OutputFormat

from .conftest import Pack


def test_text_output_stays_in_stdout(pack: Pack) -> None:
    # Given a text action, When it prints, Then stdout holds it and there is no result
    result = pack.run('echo "hello"\necho "world"\n')
    assert result.outcome is Outcome.SUCCEEDED
    assert result.exit_code == 0
    assert (result.stdout, result.result, result.error) == ("hello\nworld\n", None, None)
    assert result.duration_ms >= 0


def test_json_result_is_not_repeated_in_stdout(pack: Pack) -> None:
    result = pack.run("""echo '{"a": 1, "b": [true, null]}'\n""", output_format=OutputFormat.JSON)
    assert result.result == {"a": 1, "b": [True, None]}
    assert result.stdout == ""


def test_pretty_multi_line_json(pack: Pack) -> None:
    body = "cat <<'EOF'\n{\n  \"items\": [\n    1,\n    2\n  ]\n}\nEOF\n"
    result = pack.run(body, output_format=OutputFormat.JSON)
    assert (result.result, result.stdout) == ({"items": [1, 2]}, "")


def test_json_after_log_lines_keeps_the_log_lines(pack: Pack) -> None:
    body = """echo starting\necho "step 2"\necho '[{"ok": true}]'\n"""
    result = pack.run(body, output_format=OutputFormat.JSON)
    assert result.result == [{"ok": True}]
    assert result.stdout == "starting\nstep 2\n"


@pytest.mark.parametrize("printed", ["42", '"just a string"', "not json at all", "{broken"])
def test_json_that_is_no_mapping_or_list_stays_in_stdout(pack: Pack, printed: str) -> None:
    result = pack.run(f"echo '{printed}'\n", output_format=OutputFormat.JSON)
    assert (result.outcome, result.result, result.stdout) == (
        Outcome.SUCCEEDED,
        None,
        printed + "\n",
    )


def test_yaml_result(pack: Pack) -> None:
    body = "cat <<'EOF'\nname: web\nports:\n  - 80\n  - 443\nwhen: 2024-01-02\nEOF\n"
    result = pack.run(body, output_format=OutputFormat.YAML)
    assert result.result == {"name": "web", "ports": [80, 443], "when": "2024-01-02"}
    assert result.stdout == ""


def test_plain_text_is_no_yaml_result(pack: Pack) -> None:
    result = pack.run("echo 'all good here'\n", output_format=OutputFormat.YAML)
    assert (result.result, result.stdout) == (None, "all good here\n")


def test_jsonl_objects_become_an_array(pack: Pack) -> None:
    body = """echo '{"n": 1}'\necho '{"n": 2}'\necho '{"n": 3}'\n"""
    result = pack.run(body, output_format=OutputFormat.JSONL)
    assert result.result == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert result.stdout == ""


def test_jsonl_keeps_lines_that_do_not_parse(pack: Pack) -> None:
    body = """echo '{"n": 1}'\necho 'progress: half way'\necho\necho '{"n": 2}'\n"""
    result = pack.run(body, output_format=OutputFormat.JSONL)
    assert result.result == [{"n": 1}, {"n": 2}]
    assert result.stdout == "progress: half way\n"


def test_jsonl_without_any_parsable_line_is_a_parse_failure(pack: Pack) -> None:
    result = pack.run("echo one\necho two\n", output_format=OutputFormat.JSONL)
    assert (result.outcome, result.result, result.stdout) == (
        Outcome.SUCCEEDED,
        None,
        "one\ntwo\n",
    )


@pytest.mark.parametrize("output_format", list(OutputFormat))
@pytest.mark.parametrize(("body", "stdout"), [("true\n", ""), ("printf '  \\n\\n'\n", "  \n\n")])
def test_empty_and_blank_output(
    pack: Pack, output_format: OutputFormat, body: str, stdout: str
) -> None:
    result = pack.run(body, output_format=output_format)
    assert (result.outcome, result.result, result.stdout) == (Outcome.SUCCEEDED, None, stdout)


def test_output_of_a_failed_action_is_not_parsed(pack: Pack) -> None:
    result = pack.run("""echo '{"a": 1}'\nexit 1\n""", output_format=OutputFormat.JSON)
    assert (result.outcome, result.result, result.stdout) == (Outcome.FAILED, None, '{"a": 1}\n')


def test_truncated_output_is_not_parsed(pack: Pack) -> None:
    body = """echo '{"text": "a long value that goes past the limit"}'\n"""
    result = pack.run(body, output_format=OutputFormat.JSON, max_output_bytes=20)
    assert result.result is None
    assert result.stdout_truncated
    assert result.stdout.startswith('{"text": "a long val')


def test_results_are_made_storable_as_json() -> None:
    # NaN is no JSON; NUL cannot be stored in PostgreSQL; YAML keys may be numbers
    assert parse('{"x": NaN}\n', OutputFormat.JSON).result is None
    assert parse('{"x": "a\\u0000b"}', OutputFormat.JSON).result == {"x": "a\ufffdb"}
    yaml_result = parse("1: one\nnull: nothing\ninf: .inf\nset: !!set {a}\n", OutputFormat.YAML)
    assert yaml_result.result == {"1": "one", "null": "nothing", "inf": "inf", "set": ["a"]}


def test_yaml_aliases_are_not_expanded_without_bound() -> None:
    # Given a "billion laughs" document, Then it is refused rather than expanded
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    document = "\n".join(lines) + "\n"
    parsed = parse(document, OutputFormat.YAML)
    assert (parsed.result, parsed.stdout) == (None, document)


def test_jsonl_lines_split_only_at_newlines() -> None:
    parsed = parse('{"s": "a\u2028b"}\n{"s": "c"}\n', OutputFormat.JSONL)
    assert parsed.result == [{"s": "a\u2028b"}, {"s": "c"}]
