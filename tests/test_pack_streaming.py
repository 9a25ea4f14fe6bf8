"""A new pack on PostgreSQL is written while it is read (attune.packs.streaming): its rows are
those a plain upsert writes, in one transaction that a problem found late still rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from attune.packs import streaming
from attune.packs.fingerprint import read_files
from attune.packs.loader import load_packs
from attune.packs.reader import read_pack
from attune.packs.upsert import Change
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, PACK_TABLE, RULE_TABLE
from tests.pack_builder import action, rule, write_pack, write_yaml

pytestmark = pytest.mark.postgres

MANY = 2 * streaming.CHUNK + 50  # two full chunks streamed ahead, the rest at the end


def _many(packs_dir: Path) -> Path:
    actions = {f"a{n:03d}": action(f"demo.a{n:03d}", timeout=10 + n) for n in range(MANY)}
    return write_pack(packs_dir, "demo", actions)


def _counts(database: Database) -> tuple[int, int, int]:
    with database.session_scope() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(table))
            for table in (PACK_TABLE, ACTION_TABLE, RULE_TABLE)
        )


def test_a_new_pack_streamed_ahead_stores_what_its_files_say_and_reloads_unchanged(
    tmp_path: Path, pg_database: Database
) -> None:
    pack_dir = _many(tmp_path)
    inserts: list[str] = []

    @event.listens_for(pg_database.engine, "before_cursor_execute")
    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO action "):
            inserts.append(statement)

    first = load_packs(pg_database, tmp_path)
    event.remove(pg_database.engine, "before_cursor_execute", seen)
    again = load_packs(pg_database, tmp_path)

    assert first.errors == ()
    assert len(inserts) == 3  # a chunk, a chunk, the rest
    assert (first.reports[0].pack, first.reports[0].created) == (Change.CREATED, MANY)
    assert (again.reports[0].pack, again.reports[0].unchanged) == (Change.UNCHANGED, MANY)
    files = read_files(pack_dir)
    spec = read_pack(pack_dir, read_files(pack_dir))
    with pg_database.session_scope() as session:
        pack = session.execute(select(PACK_TABLE)).one()
        rows = {row.ref: row for row in session.execute(select(ACTION_TABLE))}
    assert {key: pack._mapping[key] for key in spec.columns()} == spec.columns()
    assert pack.source_hash == files.header_hash
    assert len(rows) == MANY
    for action_spec in spec.actions:
        row = rows[action_spec.ref]
        assert row.pack_id == pack.id
        assert {key: row._mapping[key] for key in action_spec.columns()} == action_spec.columns()


def test_a_malformed_file_after_streamed_chunks_writes_nothing(
    tmp_path: Path, pg_database: Database
) -> None:
    pack_dir = _many(tmp_path)
    write_yaml(pack_dir / "actions" / "zz_bad.yaml", action("demo.zz_bad", timeout="soon"))

    result = load_packs(pg_database, tmp_path)

    assert len(result.errors) == 1
    assert "zz_bad.yaml" in str(result.errors[0])
    assert "timeout" in str(result.errors[0])
    assert _counts(pg_database) == (0, 0, 0)


def test_a_rule_refused_at_the_end_rolls_back_the_streamed_actions(
    tmp_path: Path, pg_database: Database
) -> None:
    pack_dir = _many(tmp_path)
    (pack_dir / "rules").mkdir()
    missing = rule("demo.greet", action={"ref": "demo.nowhere", "parameters": {}})
    write_yaml(pack_dir / "rules" / "greet.yaml", missing)

    result = load_packs(pg_database, tmp_path)

    assert len(result.errors) == 1
    assert "demo.nowhere" in str(result.errors[0])
    assert _counts(pg_database) == (0, 0, 0)
