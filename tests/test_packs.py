"""The pack loader on both databases: the shipped packs, idempotent reloads, updates, removals."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from attune.errors import DatabaseError
from attune.packs.loader import load_packs
from attune.packs.reader import discover
from attune.packs.upsert import Change, PackReport, find_action, find_actions
from attune.store.db import Database
from attune.store.models import Action, Execution, Pack
from tests.conftest import ROOT
from tests.pack_builder import action, header, write_pack, write_yaml
from tests.write_counter import counting_writes

SHIPPED = ROOT / "packs"


def actions_by_ref(database: Database) -> dict[str, Action]:
    with database.session_scope() as session:
        return {row.ref: row for row in session.scalars(select(Action))}


def test_the_shipped_packs_load(database: Database) -> None:
    result = load_packs(database, SHIPPED)

    assert result.ok, result.errors
    assert {report.ref: report.created for report in result.reports} == {"core": 5, "examples": 7}
    rows = actions_by_ref(database)
    assert {"core.echo", "core.noop", "core.sleep", "core.local", "core.http_request"} < set(rows)
    listed = rows["examples.list_example"]
    assert listed.runner_type == "shell"
    assert listed.entry_point == "list_example.sh"
    assert listed.output_format == "jsonl"
    assert listed.parameters["count"] == {
        "type": "integer",
        "description": "How many items to print.",
        "minimum": 1,
        "maximum": 100,
        "default": 5,
    }
    assert listed.timeout_s is None
    assert rows["core.sleep"].timeout_s == 3660
    assert rows["examples.dotenv_file"].parameter_delivery == "file"
    assert rows["core.http_request"].parameters["auth_token"]["secret"] is True


def test_a_second_load_reports_everything_unchanged_and_writes_no_row(
    database: Database,
) -> None:
    load_packs(database, SHIPPED)
    ids = {ref: row.id for ref, row in actions_by_ref(database).items()}

    with counting_writes(database.engine) as writes:
        result = load_packs(database, SHIPPED)

    assert writes.total_rows == 0
    assert [(r.pack, r.created, r.updated, r.removed) for r in result.reports] == [
        (Change.UNCHANGED, 0, 0, 0),
        (Change.UNCHANGED, 0, 0, 0),
    ]
    assert sum(report.unchanged for report in result.reports) == len(ids)
    assert not any(report.wrote for report in result.reports)
    assert {ref: row.id for ref, row in actions_by_ref(database).items()} == ids


def test_a_changed_description_is_one_update_keeping_the_id(
    tmp_path: Path, database: Database
) -> None:
    pack_dir = write_pack(tmp_path, "demo", {"a": action("demo.a"), "b": action("demo.b")})
    load_packs(database, tmp_path)
    before = actions_by_ref(database)["demo.a"]
    write_yaml(pack_dir / "actions" / "a.yaml", action("demo.a", description="Changed."))

    with counting_writes(database.engine) as writes:
        result = load_packs(database, tmp_path)

    assert result.reports == (PackReport("demo", Change.UNCHANGED, updated=1, unchanged=1),)
    assert writes.rows == {"INSERT": 0, "UPDATE": 1, "DELETE": 0}
    after = actions_by_ref(database)["demo.a"]
    assert (after.id, after.description) == (before.id, "Changed.")
    assert after.updated_at >= before.updated_at
    assert after.created_at == before.created_at


def test_an_action_removed_from_the_yaml_is_removed_and_executions_keep_its_ref(
    tmp_path: Path, database: Database
) -> None:
    pack_dir = write_pack(tmp_path, "demo", {"a": action("demo.a"), "b": action("demo.b")})
    load_packs(database, tmp_path)
    with database.session_scope() as session:
        session.add(Execution(action_ref="demo.b"))
    (pack_dir / "actions" / "b.yaml").unlink()

    result = load_packs(database, tmp_path)

    assert result.reports == (PackReport("demo", Change.UNCHANGED, unchanged=1, removed=1),)
    assert set(actions_by_ref(database)) == {"demo.a"}
    with database.session_scope() as session:
        assert session.scalars(select(Execution.action_ref)).all() == ["demo.b"]


def test_a_new_action_is_created_beside_the_unchanged_ones(
    tmp_path: Path, database: Database
) -> None:
    pack_dir = write_pack(tmp_path, "demo")
    load_packs(database, tmp_path)
    write_pack(tmp_path, "demo", {"new": action("demo.new")})

    result = load_packs(database, tmp_path)

    assert result.reports == (PackReport("demo", Change.UNCHANGED, created=1, unchanged=1),)
    assert (pack_dir / "actions" / "new.sh").exists()


def test_a_changed_pack_yaml_updates_the_pack_row_only(tmp_path: Path, database: Database) -> None:
    pack_dir = write_pack(tmp_path, "demo")
    load_packs(database, tmp_path)
    write_yaml(pack_dir / "pack.yaml", header("demo", version="1.1.0", tags=["x"]))

    result = load_packs(database, tmp_path)

    assert result.reports == (PackReport("demo", Change.UPDATED, unchanged=1),)
    with database.session_scope() as session:
        pack = session.scalars(select(Pack)).one()
    assert (pack.version, pack.tags, pack.author) == ("1.1.0", ["x"], None)


@pytest.mark.parametrize(
    ("old", "new", "change"),
    [
        ({"default": 1}, {"default": True}, Change.UPDATED),
        ({"default": 1}, {"default": 1.5}, Change.UPDATED),
        ({"type": "integer", "minimum": 0}, {"minimum": 0, "type": "integer"}, Change.UNCHANGED),
        ({"default": {"a": 1, "b": 2}}, {"default": {"b": 2, "a": 1}}, Change.UNCHANGED),
        ({"default": 0.5}, {"default": 0.5}, Change.UNCHANGED),
    ],
    ids=["int-to-bool", "int-to-float", "reordered-keys", "reordered-default", "same-float"],
)
def test_parameters_compare_as_json(
    tmp_path: Path,
    database: Database,
    old: dict[str, object],
    new: dict[str, object],
    change: Change,
) -> None:
    pack_dir = write_pack(tmp_path, "demo", {"a": action("demo.a", parameters={"x": old})})
    load_packs(database, tmp_path)
    write_yaml(pack_dir / "actions" / "a.yaml", action("demo.a", parameters={"x": new}))

    (report,) = load_packs(database, tmp_path).reports

    assert (report.updated, report.unchanged) == ((1, 0) if change is Change.UPDATED else (0, 1))


def test_every_field_of_an_action_file_is_stored(tmp_path: Path, database: Database) -> None:
    document = action(
        "demo.full",
        label="Full",
        description="Every field.",
        enabled=False,
        tags=["a", "b"],
        runner_type="python",
        entry_point="full.py",
        parameters={"n": {"type": "integer", "required": True, "secret": True}},
        parameter_delivery="file",
        parameter_format="yaml",
        output_format="yaml",
        timeout=42,
    )
    write_pack(tmp_path, "demo", {"full": document})

    load_packs(database, tmp_path)

    row = actions_by_ref(database)["demo.full"]
    assert (row.label, row.description, row.enabled, row.tags) == (
        "Full",
        "Every field.",
        False,
        ["a", "b"],
    )
    assert (row.runner_type, row.entry_point) == ("python", "full.py")
    assert row.parameters == {"n": {"type": "integer", "required": True, "secret": True}}
    assert (row.parameter_delivery, row.parameter_format, row.output_format) == (
        "file",
        "yaml",
        "yaml",
    )
    assert row.timeout_s == 42


def test_the_defaults_of_an_action_file(tmp_path: Path, database: Database) -> None:
    minimal = {"ref": "demo.min", "runner_type": "shell", "entry_point": "min.sh"}
    write_pack(tmp_path, "demo", {"min": minimal})

    load_packs(database, tmp_path)

    row = actions_by_ref(database)["demo.min"]
    assert (row.label, row.description, row.enabled, row.tags, row.parameters) == (
        "",
        "",
        True,
        [],
        {},
    )
    assert (row.parameter_delivery, row.parameter_format, row.output_format) == (
        "stdin",
        "json",
        "text",
    )
    assert row.timeout_s is None


def test_an_entry_point_in_a_subfolder_or_through_an_inner_symlink_is_accepted(
    tmp_path: Path, database: Database
) -> None:
    pack_dir = write_pack(tmp_path, "demo", {})
    (pack_dir / "lib").mkdir()
    (pack_dir / "lib" / "run.sh").write_text("echo lib\n")
    (pack_dir / "actions" / "sub").mkdir()
    (pack_dir / "actions" / "sub" / "x.sh").write_text("echo x\n")
    (pack_dir / "actions" / "linked.sh").symlink_to(pack_dir.resolve() / "lib" / "run.sh")
    write_yaml(pack_dir / "actions" / "a.yaml", action("demo.a", entry_point="sub/x.sh"))
    write_yaml(pack_dir / "actions" / "b.yaml", action("demo.b", entry_point="linked.sh"))

    result = load_packs(database, tmp_path)

    assert result.ok, result.errors
    assert actions_by_ref(database)["demo.b"].entry_point == "linked.sh"


def test_only_the_named_packs_load(tmp_path: Path, database: Database) -> None:
    write_pack(tmp_path, "one")
    write_pack(tmp_path, "two")
    write_pack(tmp_path, "three")

    result = load_packs(database, tmp_path, ["two", "one", "two"])

    assert [report.ref for report in result.reports] == ["two", "one"]


def test_a_pack_without_actions_folder_loads_with_no_actions(
    tmp_path: Path, database: Database
) -> None:
    (tmp_path / "empty").mkdir()
    write_yaml(tmp_path / "empty" / "pack.yaml", header("empty"))

    result = load_packs(database, tmp_path)

    assert result.reports == (PackReport("empty", Change.CREATED),)


def test_discovery_skips_hidden_folders_and_plain_files(tmp_path: Path) -> None:
    write_pack(tmp_path, "demo")
    (tmp_path / ".git").mkdir()
    (tmp_path / "README.md").write_text("packs\n")

    assert discover(tmp_path) == [tmp_path / "demo"]


def test_other_files_in_actions_are_not_action_definitions(
    tmp_path: Path, database: Database
) -> None:
    pack_dir = write_pack(tmp_path, "demo")
    (pack_dir / "actions" / "notes.txt").write_text("ref: nothing\n")
    write_yaml(pack_dir / "actions" / "other.yml", action("demo.other", entry_point="hello.sh"))

    assert load_packs(database, tmp_path).ok

    assert set(actions_by_ref(database)) == {"demo.hello", "demo.other"}


def test_find_actions_and_find_action(database: Database) -> None:
    load_packs(database, SHIPPED)

    with database.session_scope() as session:
        core = [row.ref for row in find_actions(session, "core")]
        everything = find_actions(session)
        echo = find_action(session, "core.echo")

    assert core == sorted(core)
    assert len(core) == 5
    assert len(everything) == 12
    assert echo.parameter_format == "dotenv"


def test_an_unmigrated_database_is_reported_clearly(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(DatabaseError, match=r"not migrated .* run `make migrate`"):
            load_packs(database, SHIPPED)
    finally:
        database.dispose()


def test_an_unreachable_database_is_reported_clearly(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    try:
        with pytest.raises(DatabaseError, match="cannot reach the database"):
            load_packs(database, SHIPPED)
    finally:
        database.dispose()


def test_empty_parameters_mean_none(tmp_path: Path, database: Database) -> None:
    pack_dir = write_pack(tmp_path, "demo", {})
    (pack_dir / "actions" / "a.sh").write_text("echo a\n")
    (pack_dir / "actions" / "a.yaml").write_text(
        "ref: demo.a\nrunner_type: shell\nentry_point: a.sh\nparameters:\n"
    )

    assert load_packs(database, tmp_path).ok
    assert actions_by_ref(database)["demo.a"].parameters == {}
