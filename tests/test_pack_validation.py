"""Malformed and hostile packs: every problem is reported naming its file and field, and a pack
with any problem writes nothing."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from attune.errors import PackError
from attune.packs.documents import MAX_DOCUMENT_BYTES
from attune.packs.loader import load_packs
from attune.packs.reader import read_pack
from attune.store.db import Database
from attune.store.models import Action, Pack
from tests.pack_builder import action, header, write_pack, write_yaml

Breaker = Callable[[Path], None]
"""Breaks the valid pack ``demo`` (with actions ``hello`` and ``bye``) at its folder."""


def pack_file(document: dict[str, Any]) -> Breaker:
    return lambda pack_dir: write_yaml(pack_dir / "pack.yaml", document)


def action_file(document: dict[str, Any], stem: str = "hello") -> Breaker:
    return lambda pack_dir: write_yaml(pack_dir / "actions" / f"{stem}.yaml", document)


def hello(**changes: Any) -> Breaker:
    return action_file({**action("demo.hello"), **changes})


def without(key: str) -> Breaker:
    document = action("demo.hello")
    del document[key]
    return action_file(document)


def with_parameter(name: str, spec: object) -> Breaker:
    return hello(parameters={name: spec})


def raw_action(text: str | bytes) -> Breaker:
    def write(pack_dir: Path) -> None:
        path = pack_dir / "actions" / "hello.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return write


def entry_point_symlink_out(pack_dir: Path) -> None:
    outside = pack_dir.parent / "outside.sh"
    outside.write_text("echo escaped\n")
    (pack_dir / "actions" / "escape.sh").symlink_to(outside.resolve())
    hello(entry_point="escape.sh")(pack_dir)


def entry_point_directory(pack_dir: Path) -> None:
    (pack_dir / "actions" / "lib").mkdir()
    hello(entry_point="lib")(pack_dir)


def native_not_executable(pack_dir: Path) -> None:
    (pack_dir / "actions" / "hello.sh").chmod(0o644)
    hello(runner_type="native")(pack_dir)


def missing_pack_yaml(pack_dir: Path) -> None:
    (pack_dir / "pack.yaml").unlink()


def duplicate_ref(pack_dir: Path) -> None:
    action_file(action("demo.hello"), stem="bye")(pack_dir)


def fifo_action(pack_dir: Path) -> None:
    os.mkfifo(pack_dir / "actions" / "pipe.yaml")


def actions_is_a_file(pack_dir: Path) -> None:
    for path in (pack_dir / "actions").iterdir():
        path.unlink()
    (pack_dir / "actions").rmdir()
    (pack_dir / "actions").write_text("not a folder")


def huge_file(pack_dir: Path) -> None:
    with (pack_dir / "actions" / "hello.yaml").open("wb") as stream:
        stream.truncate(50 * 1024 * 1024)  # 50 MB, sparse: written in no time


ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)

HELLO = "packs/demo/actions/hello.yaml"
PACK = "packs/demo/pack.yaml"

CASES: dict[str, tuple[Breaker, str, str]] = {
    # id: (how the pack is broken, file named, what the message says)
    "pack-unknown-key": (
        pack_file(header(authr="me")),
        PACK,
        "authr: unknown key (did you mean 'author'?)",
    ),
    "pack-ref-differs": (
        pack_file(header("other")),
        PACK,
        "ref: 'other' differs from the pack's folder name 'demo'",
    ),
    "pack-ref-format": (pack_file(header("Demo")), PACK, "ref: 'Demo' does not match"),
    "pack-missing-yaml": (missing_pack_yaml, PACK, "missing"),
    "pack-missing-label": (
        pack_file({k: v for k, v in header().items() if k != "label"}),
        PACK,
        "label: missing (required)",
    ),
    "pack-version-not-semver": (
        pack_file(header(version="1.0")),
        PACK,
        "version: '1.0' is not a semantic version",
    ),
    "pack-version-a-number": (
        pack_file(header(version=1.5)),
        PACK,
        "version: must be a string, got a number 1.5",
    ),
    "pack-tags-not-a-list": (
        pack_file(header(tags="a,b")),
        PACK,
        "tags: must be a list of non-empty strings",
    ),
    "pack-bad-email": (
        pack_file(header(email="nobody")),
        PACK,
        "email: 'nobody' is not an e-mail address",
    ),
    "action-unknown-key": (
        hello(output_fromat="json"),
        HELLO,
        "output_fromat: unknown key (did you mean 'output_format'?)",
    ),
    "action-missing-ref": (without("ref"), HELLO, "ref: missing (required)"),
    "action-ref-two-dots": (
        hello(ref="demo.hello.world"),
        HELLO,
        "ref: 'demo.hello.world' is not <pack>.<name>",
    ),
    "action-ref-uppercase": (
        hello(ref="demo.Hello"),
        HELLO,
        "ref: 'demo.Hello' is not <pack>.<name>",
    ),
    "action-ref-no-dot": (hello(ref="demohello"), HELLO, "ref: 'demohello' is not <pack>.<name>"),
    "action-ref-other-pack": (
        hello(ref="core.hello"),
        HELLO,
        "ref: 'core.hello' must start with the pack's ref",
    ),
    "action-duplicate-ref": (
        duplicate_ref,
        HELLO,
        "ref: 'demo.hello' is already defined in packs/demo/actions/bye.yaml",
    ),
    "action-runner-unknown": (
        hello(runner_type="perl"),
        HELLO,
        "runner_type: 'perl' is not one of shell, python, native, workflow",
    ),
    "action-runner-missing": (without("runner_type"), HELLO, "runner_type: missing (required)"),
    "entry-point-missing-key": (without("entry_point"), HELLO, "entry_point: missing (required)"),
    "entry-point-missing-file": (
        hello(entry_point="nope.sh"),
        HELLO,
        "entry_point: 'nope.sh' does not exist",
    ),
    "entry-point-absolute": (
        hello(entry_point="/bin/sh"),
        HELLO,
        "entry_point: '/bin/sh' is absolute",
    ),
    "entry-point-dotdot": (
        hello(entry_point="../pack.yaml"),
        HELLO,
        "entry_point: '../pack.yaml' must not contain '..'",
    ),
    "entry-point-symlink-out": (
        entry_point_symlink_out,
        HELLO,
        "entry_point: 'escape.sh' resolves to",
    ),
    "entry-point-directory": (entry_point_directory, HELLO, "entry_point: 'lib' is a directory"),
    "entry-point-not-a-string": (
        hello(entry_point=["a.sh"]),
        HELLO,
        "entry_point: must be a string",
    ),
    "native-not-executable": (
        native_not_executable,
        HELLO,
        "entry_point: 'hello.sh' is not executable",
    ),
    "enabled-a-string": (
        hello(enabled="yes"),
        HELLO,
        "enabled: must be true or false, got a string 'yes'",
    ),
    "label-a-number": (hello(label=123), HELLO, "label: must be a string, got an integer 123"),
    "description-a-list": (
        hello(description=["a"]),
        HELLO,
        "description: must be a string, got a list",
    ),
    "tags-a-string": (hello(tags="x"), HELLO, "tags: must be a list of non-empty strings"),
    "tags-with-empty": (hello(tags=["ok", ""]), HELLO, "tags: must be a list of non-empty strings"),
    "delivery-unknown": (
        hello(parameter_delivery="env"),
        HELLO,
        "parameter_delivery: 'env' is not one of stdin, file",
    ),
    "format-unknown": (
        hello(parameter_format="xml"),
        HELLO,
        "parameter_format: 'xml' is not one of json, yaml, dotenv",
    ),
    "output-unknown": (
        hello(output_format="csv"),
        HELLO,
        "output_format: 'csv' is not one of text, json, yaml, jsonl",
    ),
    "timeout-zero": (
        hello(timeout=0),
        HELLO,
        "timeout: must be a whole number of seconds, 1 to 2147483647, got 0",
    ),
    "timeout-negative": (
        hello(timeout=-5),
        HELLO,
        "timeout: must be a whole number of seconds, 1 to 2147483647, got -5",
    ),
    "timeout-a-string": (
        hello(timeout="30"),
        HELLO,
        "timeout: must be a whole number of seconds, 1 to 2147483647, got '30'",
    ),
    "timeout-a-fraction": (
        hello(timeout=1.5),
        HELLO,
        "timeout: must be a whole number of seconds, 1 to 2147483647, got 1.5",
    ),
    "timeout-a-boolean": (
        hello(timeout=True),
        HELLO,
        "timeout: must be a whole number of seconds, 1 to 2147483647, got True",
    ),
    "timeout-too-big": (
        hello(timeout=2**31),
        HELLO,
        "timeout: must be a whole number of seconds, 1 to 2147483647",
    ),
    "parameters-a-list": (
        hello(parameters=["who"]),
        HELLO,
        "parameters: must be a mapping of name → property",
    ),
    "parameter-not-a-mapping": (
        with_parameter("who", "string"),
        HELLO,
        "parameters.who: must be a mapping",
    ),
    "parameter-bad-name": (
        with_parameter("who-am-i", {"type": "string"}),
        HELLO,
        "parameters.who-am-i: the name must match",
    ),
    "parameter-required-yes": (
        with_parameter("who", {"type": "string", "required": "yes"}),
        HELLO,
        "parameters.who.required: must be true or false, got a string 'yes'",
    ),
    "parameter-secret-one": (
        with_parameter("who", {"type": "string", "secret": 1}),
        HELLO,
        "parameters.who.secret: must be true or false",
    ),
    "parameter-bad-type": (
        with_parameter("who", {"type": "strng"}),
        HELLO,
        "parameters.who.type: 'strng' is not valid",
    ),
    "parameter-bad-minimum": (
        with_parameter("n", {"type": "integer", "minimum": "one"}),
        HELLO,
        "parameters.n.minimum: 'one' is not of type 'number'",
    ),
    "parameter-unknown-keyword": (
        with_parameter("n", {"type": "integer", "defualt": 1}),
        HELLO,
        "parameters.n.defualt: unknown keyword",
    ),
    "parameter-default-wrong-type": (
        with_parameter("n", {"type": "integer", "default": "1"}),
        HELLO,
        "parameters.n.default: '1' is not of type 'integer'",
    ),
    "parameter-default-out-of-range": (
        with_parameter("n", {"type": "integer", "maximum": 5, "default": 6}),
        HELLO,
        "parameters.n.default: 6 is greater than the maximum of 5",
    ),
    "parameter-default-not-in-enum": (
        with_parameter("m", {"enum": ["a", "b"], "default": "c"}),
        HELLO,
        "parameters.m.default: 'c' is not one of ['a', 'b']",
    ),
    "yaml-syntax-error": (
        raw_action("ref: demo.hello\nlabel: [unclosed\n"),
        HELLO,
        "line 3, column 1: invalid YAML",
    ),
    "yaml-duplicate-key": (
        raw_action("ref: demo.hello\nref: demo.other\n"),
        HELLO,
        "line 2: duplicate key 'ref'",
    ),
    "yaml-alias-bomb": (raw_action(ALIAS_BOMB), HELLO, f"expands to more than {100_000} values"),
    "yaml-recursive-alias": (
        raw_action("ref: &r [*r]\n"),
        HELLO,
        "line 1: ref.0.0.0.0.0.0.0.0.0…: nested deeper than 64",
    ),
    "yaml-deep-nesting": (
        raw_action("a: " + "[" * 5000 + "]" * 5000 + "\n"),
        HELLO,
        "invalid YAML",
    ),
    "yaml-nested-too-deep": (
        raw_action("a: " + "[" * 100 + "]" * 100 + "\n"),
        HELLO,
        "nested deeper than 64 levels",
    ),
    "file-50-mb": (huge_file, HELLO, f"52428800 bytes, over the {MAX_DOCUMENT_BYTES} byte limit"),
    "file-not-utf8": (
        raw_action(b"ref: demo.hello\ndescription: caf\xe9\n"),
        HELLO,
        "not UTF-8 text (byte 0xe9 at offset 32)",
    ),
    "file-empty": (raw_action(""), HELLO, "the file is empty"),
    "file-only-comments": (raw_action("# nothing here\n"), HELLO, "the file is empty"),
    "document-a-list": (
        raw_action("- ref: demo.hello\n"),
        HELLO,
        "the document must be a mapping, got a list",
    ),
    "document-a-scalar": (
        raw_action("just words\n"),
        HELLO,
        "the document must be a mapping, got a string",
    ),
    "document-two-documents": (
        raw_action("ref: demo.hello\n---\nref: demo.bye\n"),
        HELLO,
        "expected a single document",
    ),
    "value-a-date": (
        raw_action("ref: demo.hello\ndescription: 2024-01-01\n"),
        HELLO,
        "description: a YAML date is not JSON",
    ),
    "value-nan": (
        raw_action("ref: demo.hello\nparameters: {n: {default: .nan}}\n"),
        HELLO,
        "line 2: parameters.n.default: .nan is not a JSON number",
    ),
    "value-nul": (
        raw_action('ref: demo.hello\nlabel: "a\\0b"\n'),
        HELLO,
        "label: a NUL character cannot be stored",
    ),
    "key-not-a-string": (
        raw_action("ref: demo.hello\n1: one\n"),
        HELLO,
        "line 2: the key 1 is not a string",
    ),
    "file-a-fifo": (fifo_action, "packs/demo/actions/pipe.yaml", "not a regular file"),
    "actions-not-a-folder": (actions_is_a_file, "packs/demo/actions", "must be a directory"),
}


@pytest.fixture
def packs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``packs/`` in a fresh working directory, holding the valid pack ``demo``."""
    monkeypatch.chdir(tmp_path)
    packs = Path("packs")
    write_pack(packs, "demo", {"hello": action("demo.hello"), "bye": action("demo.bye")})
    return packs


def rows(database: Database) -> tuple[int, int]:
    with database.session_scope() as session:
        packs = session.scalar(select(func.count()).select_from(Pack))
        actions = session.scalar(select(func.count()).select_from(Action))
    return packs or 0, actions or 0


def test_the_valid_pack_used_by_these_tests_loads(packs_dir: Path) -> None:
    spec = read_pack(packs_dir / "demo")

    assert [action.ref for action in spec.actions] == ["demo.bye", "demo.hello"]


def test_there_are_at_least_thirty_malformed_inputs() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_pack_is_refused_naming_file_and_field_and_writes_nothing(
    case: str, packs_dir: Path, database: Database
) -> None:
    breaker, file, needle = CASES[case]
    breaker(packs_dir / "demo")

    started = time.perf_counter()
    result = load_packs(database, packs_dir)
    elapsed_s = time.perf_counter() - started

    assert result.reports == ()
    (error,) = result.errors
    assert error.pack == "demo"
    matching = [problem for problem in error.problems if problem.startswith(f"{file}: ")]
    assert any(needle in problem for problem in matching), error.problems
    assert rows(database) == (0, 0)
    assert elapsed_s < 1.0


@pytest.mark.parametrize("case", ["yaml-alias-bomb", "file-50-mb", "yaml-deep-nesting"])
def test_a_hostile_file_is_refused_in_bounded_memory(case: str, packs_dir: Path) -> None:
    breaker, _file, needle = CASES[case]
    breaker(packs_dir / "demo")

    tracemalloc.start()
    try:
        with pytest.raises(PackError, match=needle):
            read_pack(packs_dir / "demo")
        _current, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak_bytes < 20 * 1024 * 1024


def test_every_problem_of_a_pack_is_reported_together(packs_dir: Path) -> None:
    write_yaml(packs_dir / "demo" / "pack.yaml", header(version="one"))
    hello(runner_type="perl", timeout=0, colour="red")(packs_dir / "demo")
    action_file(action("demo.bye", output_format="csv"), stem="bye")(packs_dir / "demo")

    with pytest.raises(PackError) as caught:
        read_pack(packs_dir / "demo")

    fields = sorted(problem.split(": ")[1] for problem in caught.value.problems)
    assert fields == ["colour", "output_format", "runner_type", "timeout", "version"]
    assert "pack 'demo' has 5 problem(s)" in str(caught.value)


def test_a_bad_pack_does_not_stop_the_others(packs_dir: Path, database: Database) -> None:
    write_pack(packs_dir, "good")
    hello(timeout=0)(packs_dir / "demo")

    result = load_packs(database, packs_dir)

    assert [report.ref for report in result.reports] == ["good"]
    assert [error.pack for error in result.errors] == ["demo"]
    assert not result.ok
    assert rows(database) == (1, 1)


def test_a_pack_broken_after_a_load_keeps_its_rows_untouched(
    packs_dir: Path, database: Database
) -> None:
    assert load_packs(database, packs_dir).ok
    with database.session_scope() as session:
        before = [
            (a.id, a.ref, a.description, a.updated_at) for a in session.scalars(select(Action))
        ]
    (packs_dir / "demo" / "actions" / "bye.yaml").unlink()
    hello(description="changed", timeout=0)(packs_dir / "demo")

    result = load_packs(database, packs_dir)

    assert not result.ok
    with database.session_scope() as session:
        after = [
            (a.id, a.ref, a.description, a.updated_at) for a in session.scalars(select(Action))
        ]
    assert after == before


def test_a_missing_pack_named_on_the_command_line_is_an_error(
    packs_dir: Path, database: Database
) -> None:
    result = load_packs(database, packs_dir, ["nope"])

    (error,) = result.errors
    assert error.problems == ("packs/nope: no such pack directory",)


@pytest.mark.parametrize("name", ["", "../demo", "Demo", "a"])
def test_a_pack_name_that_is_not_a_ref_is_refused_before_anything_is_read(
    name: str, packs_dir: Path, database: Database
) -> None:
    with pytest.raises(PackError, match="is not a pack name"):
        load_packs(database, packs_dir, [name])


def test_a_folder_whose_name_is_not_a_ref_is_reported(packs_dir: Path, database: Database) -> None:
    write_pack(packs_dir, "Bad_Pack", {})

    result = load_packs(database, packs_dir)

    (error,) = result.errors
    assert "packs/Bad_Pack: the folder name is not a pack ref" in error.problems[0]


def test_a_missing_packs_directory_is_an_error(tmp_path: Path, database: Database) -> None:
    with pytest.raises(PackError, match="the packs directory does not exist"):
        load_packs(database, tmp_path / "nowhere")
