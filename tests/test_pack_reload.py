"""Reloads that parse nothing when nothing changed, on both databases.

Parsing is observed, not timed: every document the reader parses goes through
``attune.packs.reader.mapping_of``, which these tests wrap with a counter.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update

from attune.errors import PackError
from attune.packs import fingerprint, reader
from attune.packs.fingerprint import content_hash
from attune.packs.loader import LoadResult, load_packs
from attune.packs.reader import read_pack
from attune.packs.upsert import Change, PackReport
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, Action, Pack, Rule
from tests.pack_builder import action, rule, write_pack, write_rules, write_yaml
from tests.write_counter import counting_writes

Parsed = Callable[[], list[str]]


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Parsed:
    """The files parsed since the last call (the real parser runs; each call is recorded)."""
    seen: list[str] = []
    real = reader.mapping_of

    def counting(data: bytes, source: str) -> dict[str, Any]:
        seen.append(Path(source).name)
        return real(data, source)

    monkeypatch.setattr(reader, "mapping_of", counting)

    def taken() -> list[str]:
        names = sorted(seen)
        seen.clear()
        return names

    return taken


def three_actions(packs_dir: Path) -> Path:
    actions = {name: action(f"demo.{name}") for name in ("a", "b", "c")}
    return write_pack(packs_dir, "demo", actions)


def stored_hashes(database: Database) -> dict[str, str | None]:
    with database.session_scope() as session:
        rows = session.execute(select(Action.ref, Action.source_hash)).all()
        pack_hash = session.scalar(select(Pack.source_hash))
    return {"pack": pack_hash} | {row.ref: row.source_hash for row in rows}


def load(database: Database, packs_dir: Path) -> LoadResult:
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors
    return result


ALL_FILES = ["a.yaml", "b.yaml", "c.yaml", "pack.yaml"]


def test_an_unchanged_reload_parses_no_file_and_writes_no_row(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    # Given a pack loaded once, every file parsed and its hash stored
    pack_dir = three_actions(tmp_path)
    first = load(database, tmp_path)
    assert parsed() == ALL_FILES
    assert first.reports == (PackReport("demo", Change.CREATED, created=3),)
    hashes = stored_hashes(database)
    assert hashes["pack"] == content_hash((pack_dir / "pack.yaml").read_bytes())
    assert hashes["demo.a"] == content_hash((pack_dir / "actions" / "a.yaml").read_bytes())

    # When it is loaded again with nothing changed
    with counting_writes(database.engine) as writes:
        again = load(database, tmp_path)

    # Then no file is parsed, no row written, and the report is today's
    assert parsed() == []
    assert writes.total_rows == 0
    assert again.reports == (PackReport("demo", Change.UNCHANGED, unchanged=3),)
    assert stored_hashes(database) == hashes


def test_a_changed_file_is_parsed_and_its_row_updated(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    pack_dir = three_actions(tmp_path)
    load(database, tmp_path)
    parsed()
    write_yaml(pack_dir / "actions" / "b.yaml", action("demo.b", description="Changed."))

    result = load(database, tmp_path)

    assert parsed() == ALL_FILES  # the pack is validated whole, as on a first load
    assert result.reports == (PackReport("demo", Change.UNCHANGED, updated=1, unchanged=2),)
    with database.session_scope() as session:
        row = session.execute(select(Action).where(Action.ref == "demo.b")).scalar_one()
        assert row.description == "Changed."
        assert row.source_hash == content_hash((pack_dir / "actions" / "b.yaml").read_bytes())
    load(database, tmp_path)
    assert parsed() == []


def test_a_change_of_bytes_only_refreshes_the_hash_and_reports_unchanged(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    pack_dir = three_actions(tmp_path)
    load(database, tmp_path)
    parsed()
    path = pack_dir / "actions" / "a.yaml"
    path.write_text("# a comment changes the bytes, not the action\n" + path.read_text())

    with counting_writes(database.engine) as writes:
        result = load(database, tmp_path)

    assert parsed() == ALL_FILES
    assert result.reports == (PackReport("demo", Change.UNCHANGED, unchanged=3),)
    assert writes.rows["UPDATE"] == 1  # the new hash, nothing else
    load(database, tmp_path)
    assert parsed() == []


def test_a_removed_action_file_removes_its_action(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    pack_dir = three_actions(tmp_path)
    load(database, tmp_path)
    (pack_dir / "actions" / "c.yaml").unlink()

    result = load(database, tmp_path)

    assert result.reports == (PackReport("demo", Change.UNCHANGED, unchanged=2, removed=1),)
    with database.session_scope() as session:
        assert session.scalars(select(Action.ref).order_by(Action.ref)).all() == [
            "demo.a",
            "demo.b",
        ]


def test_a_new_action_file_is_created(tmp_path: Path, database: Database, parsed: Parsed) -> None:
    three_actions(tmp_path)
    load(database, tmp_path)
    write_pack(tmp_path, "demo", {"d": action("demo.d")})

    result = load(database, tmp_path)

    assert result.reports == (PackReport("demo", Change.UNCHANGED, created=1, unchanged=3),)


def test_a_row_edited_by_hand_loses_its_hash_and_the_next_load_restores_it(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    # Given a loaded pack whose action and pack rows someone edits in the database
    three_actions(tmp_path)
    load(database, tmp_path)
    parsed()
    with database.session_scope() as session:
        session.execute(update(Action).where(Action.ref == "demo.a").values(description="hand"))
        session.execute(update(Pack).values(label="hand"))

    # Then the trigger cleared their hashes: they no longer match the files
    hashes = stored_hashes(database)
    assert (hashes["demo.a"], hashes["pack"]) == (None, None)
    assert hashes["demo.b"] is not None

    # When the packs are loaded, the pack is parsed and both rows are put back
    result = load(database, tmp_path)

    assert parsed() == ALL_FILES
    assert result.reports == (PackReport("demo", Change.UPDATED, updated=1, unchanged=2),)
    with database.session_scope() as session:
        assert session.scalar(select(Action.description).where(Action.ref == "demo.a")) != "hand"
        assert session.scalar(select(Pack.label)) == "Demo"
    assert None not in stored_hashes(database).values()
    load(database, tmp_path)
    assert parsed() == []


def test_a_stored_hash_edited_by_hand_means_a_full_parse_that_rewrites_it(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    three_actions(tmp_path)
    load(database, tmp_path)
    parsed()
    good = stored_hashes(database)
    with database.session_scope() as session:
        session.execute(update(Action).where(Action.ref == "demo.c").values(source_hash="0" * 64))

    result = load(database, tmp_path)

    assert parsed() == ALL_FILES
    assert result.reports == (PackReport("demo", Change.UNCHANGED, unchanged=3),)
    assert stored_hashes(database) == good


def refused(packs_dir: Path, database: Database) -> list[str]:
    """The problems a load reports for pack ``demo``, checked to be a full read's own."""
    result = load_packs(database, packs_dir)
    (error,) = result.errors
    with pytest.raises(PackError) as fresh:
        read_pack(packs_dir / "demo")
    assert error.problems == fresh.value.problems
    return list(error.problems)


def test_a_malformed_file_is_reported_as_a_first_load_reports_it(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    pack_dir = three_actions(tmp_path)
    load(database, tmp_path)
    (pack_dir / "actions" / "b.yaml").write_text("ref: demo.b\n  bad: [indent\n")

    problems = refused(tmp_path, database)

    assert len(problems) == 1
    assert problems[0].startswith(f"{pack_dir / 'actions' / 'b.yaml'}: line 2")
    assert "invalid YAML" in problems[0]


@pytest.mark.parametrize(
    ("runner", "breaks", "problem"),
    [
        ("shell", lambda script: script.unlink(), "does not exist"),
        ("native", lambda script: script.chmod(0o644), "is not executable"),
        ("shell", lambda script: (script.unlink(), script.mkdir()), "is a directory"),
    ],
    ids=["entry-point-removed", "native-no-longer-executable", "entry-point-now-a-folder"],
)
def test_an_entry_point_broken_since_the_load_is_reported_though_no_yaml_changed(
    tmp_path: Path,
    database: Database,
    runner: str,
    breaks: Callable[[Path], object],
    problem: str,
) -> None:
    pack_dir = write_pack(tmp_path, "demo", {"a": action("demo.a", runner_type=runner)})
    load(database, tmp_path)
    breaks(pack_dir / "actions" / "a.sh")

    problems = refused(tmp_path, database)

    (only,) = problems
    assert only.startswith(f"{pack_dir / 'actions' / 'a.yaml'}: entry_point: 'a.sh' {problem}")


def test_a_pack_yaml_that_became_unreadable_is_reported(tmp_path: Path, database: Database) -> None:
    pack_dir = three_actions(tmp_path)
    load(database, tmp_path)
    (pack_dir / "pack.yaml").unlink()

    assert refused(tmp_path, database) == [f"{pack_dir / 'pack.yaml'}: missing"]


def test_a_new_loader_version_parses_every_pack_once_more(
    tmp_path: Path, database: Database, parsed: Parsed, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_actions(tmp_path)
    load(database, tmp_path)
    parsed()
    monkeypatch.setattr(fingerprint, "LOADER_VERSION", fingerprint.LOADER_VERSION + 1)

    result = load(database, tmp_path)

    assert parsed() == ALL_FILES
    assert result.reports == (PackReport("demo", Change.UNCHANGED, unchanged=3),)
    load(database, tmp_path)
    assert parsed() == []


def test_a_changed_rule_or_requirements_file_makes_the_pack_parse_again(
    tmp_path: Path, database: Database, parsed: Parsed
) -> None:
    # Given a pack with a rule, loaded, then reloaded without parsing anything
    pack_dir = write_rules(tmp_path, {"greet": rule()})
    load(database, tmp_path)
    parsed()
    again = load(database, tmp_path)
    assert parsed() == []
    assert again.reports[0].rules.unchanged == 1
    # When only the rule file changes, then the pack is parsed and the rule updated
    write_yaml(pack_dir / "rules" / "greet.yaml", rule(description="Greet, changed."))
    changed = load(database, tmp_path)
    assert "pack.yaml" in parsed()  # the rules are read by their own reader
    assert changed.reports[0].rules.updated == 1
    with database.session_scope() as session:
        assert session.scalar(select(Rule.description)) == "Greet, changed."
    # When a requirements file appears, then the pack is parsed and its digest stored
    (pack_dir / "requirements.txt").write_text("tinylib==1.0\n")
    load(database, tmp_path)
    assert "pack.yaml" in parsed()
    with database.session_scope() as session:
        assert session.scalar(select(Pack.requirements_digest)) is not None
    load(database, tmp_path)
    assert parsed() == []


def test_loading_configures_no_orm_mapper(tmp_path: Path, database: Database) -> None:
    # Given a pack loaded once, and a new pack beside it
    three_actions(tmp_path)
    load(database, tmp_path)
    write_pack(tmp_path, "other", {"a": action("other.a")})
    # When both are loaded in a fresh interpreter, as `attune packs load` would
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from attune.packs.loader import load_packs\n"
        "from attune.store.db import Database\n"
        "from attune.store.models import Base\n"
        "result = load_packs(Database.from_url(sys.argv[1]), Path(sys.argv[2]))\n"
        "print(*(report.pack for report in result.reports), *(str(e) for e in result.errors))\n"
        "print(any(m.configured for m in Base.registry.mappers))\n"
    )
    url = database.engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", probe, url, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    # Then one is reported unchanged, one created, on the Core tables alone (no ORM configured)
    assert done.stdout.split() == ["unchanged", "created", "False"]


def test_a_first_load_inserts_its_actions_in_one_statement_that_keeps_every_value(
    tmp_path: Path, database: Database
) -> None:
    # Given a pack of actions whose columns take every kind of value
    actions = {
        f"a{n}": action(
            f"demo.a{n}",
            description=f"Ünïcode “{n}” 'quoted'",
            enabled=n % 2 == 0,
            tags=["x", f"t{n}"],
            parameters={
                "ratio": {"type": "number", "default": 1.5},
                "name": {"type": "string", "required": True, "secret": n % 3 == 0},
            },
            **(
                {"timeout": 5 + n, "retry": {"on": ["failed"], "max_attempts": 2}}
                if n % 4 == 0
                else {}
            ),
        )
        for n in range(30)
    }
    write_pack(tmp_path, "demo", actions)
    sent: list[tuple[str, bool]] = []

    def listener(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        sent.append((statement, many))

    # When it is loaded the first time
    event.listen(database.engine, "before_cursor_execute", listener)
    try:
        load(database, tmp_path)
    finally:
        event.remove(database.engine, "before_cursor_execute", listener)

    # Then its actions went in one INSERT (on SQLite one executemany), not one per action,
    # and read back as the spec says
    inserts = [many for statement, many in sent if statement.startswith("INSERT INTO action")]
    assert inserts == [database.engine.dialect.name == "sqlite"]
    spec = read_pack(tmp_path / "demo")
    with database.session_scope() as session:
        stored = {row.ref: row for row in session.execute(select(ACTION_TABLE)).all()}
    assert len(stored) == 30
    for expected in spec.actions:
        row = stored[expected.ref]._mapping
        assert {key: row[key] for key in expected.columns()} == expected.columns()
