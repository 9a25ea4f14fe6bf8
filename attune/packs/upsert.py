"""Write packs to the database by ref, touching only rows that changed; find loaded actions."""

from __future__ import annotations

import enum
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from attune.errors import ActionNotFoundError, PackError
from attune.packs.entrypoints import entry_point_problem
from attune.packs.fingerprint import PackFiles
from attune.packs.specs import ACTION_COLUMNS, ActionSpec, PackSpec
from attune.rules.upsert import RuleReport, action_problems, upsert_rules
from attune.rules.webhooks import hook_problems
from attune.store.models import ACTION_TABLE, PACK_TABLE, RULE_TABLE, Action, Pack
from attune.store.sqltypes import db_now


class Change(enum.StrEnum):
    """What a load did to one row."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class PackReport:
    """What loading one pack did: the pack row's change and its actions' counts."""

    ref: str
    pack: Change
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    rules: RuleReport = field(default_factory=RuleReport)

    @property
    def wrote(self) -> bool:
        """True when the load changed what any row says (a refreshed hash alone does not count)."""
        changed = self.created + self.updated + self.removed
        return self.pack is not Change.UNCHANGED or bool(changed) or self.rules.wrote


# What a reload compares with its files, in one statement (an outer join: a pack may have
# no actions). Built once, on the Core tables: an unchanged reload configures no ORM mapper.
_P = PACK_TABLE.c
_A = ACTION_TABLE.c
_RULES_OF_PACK = select(func.count()).where(RULE_TABLE.c.pack_id == _P.id).scalar_subquery()
_STORED_SOURCES = (
    select(
        _P.source_hash.label("pack_hash"),
        _RULES_OF_PACK.label("rules"),
        _A.source_hash,
        _A.entry_point,
        _A.runner_type,
    )
    .select_from(PACK_TABLE.outerjoin(ACTION_TABLE, _A.pack_id == _P.id))
    .where(_P.ref == bindparam("ref"))
)


_PACK_ID = select(_P.id).where(_P.ref == bindparam("ref"))


def pack_exists(session: Session, ref: str) -> bool:
    """Whether a pack of ``ref`` is stored."""
    return session.connection().execute(_PACK_ID, {"ref": ref}).first() is not None


def unchanged_report(session: Session, files: PackFiles) -> PackReport | None:
    """The report of a pack whose stored rows were loaded from exactly ``files`` (their
    hashes match, none missing or extra) and whose entry points still pass their check, or
    None when the pack must be parsed and upserted. One SELECT; writes nothing.
    """
    if not files.complete:
        return None
    ref = files.pack_dir.name
    rows = session.connection().execute(_STORED_SOURCES, {"ref": ref}).all()
    if not rows or rows[0].pack_hash != files.header_hash:
        return None
    actions = [row for row in rows if row.entry_point is not None]
    if sorted(row.source_hash or "" for row in actions) != files.action_hashes:
        return None
    actions_dir = files.pack_dir / "actions"
    roots = (os.path.realpath(files.pack_dir), os.path.realpath(actions_dir))
    for row in actions:
        if entry_point_problem(actions_dir, roots, row.entry_point, row.runner_type):
            return None
    rules = RuleReport(unchanged=rows[0].rules)
    return PackReport(ref=ref, pack=Change.UNCHANGED, unchanged=len(actions), rules=rules)


@dataclass(frozen=True)
class Streamed:
    """A new pack's row and actions inserted ahead, in the caller's transaction, while its
    files were still being read (:mod:`attune.packs.streaming`)."""

    pack_id: int
    refs: frozenset[str]


def upsert_pack(session: Session, spec: PackSpec, streamed: Streamed | None = None) -> PackReport:
    """Write ``spec`` by ref in the caller's transaction: insert what is new, update what
    changed, delete the pack's actions the spec no longer has, and leave the rest untouched.

    The pack, its actions and rules are read and written as plain rows of the Core tables
    (no ORM object, no mapper configured): a reload that changed one action costs a few
    statements, and none per unchanged action. ``streamed``: the pack is new and these of
    its rows are in already; the pack row gets its columns, the rest of the actions follow.
    """
    if streamed is not None:
        session.execute(
            update(PACK_TABLE).where(_P.id == streamed.pack_id).values(**spec.columns())
        )
        rest = [action for action in spec.actions if action.ref not in streamed.refs]
        if rest:
            insert_actions(session, streamed.pack_id, rest)
        rules = _write_rules(session, streamed.pack_id, spec)
        return PackReport(spec.ref, Change.CREATED, created=len(spec.actions), rules=rules)
    found = session.execute(select(PACK_TABLE).where(_P.ref == spec.ref)).one_or_none()
    pack_columns = spec.columns()
    if found is None:
        pack_id = insert_pack(session, pack_columns)
        pack_change = Change.CREATED
    else:
        pack_id = found.id
        changed = _changes(found._mapping, pack_columns)
        if changed:
            session.execute(update(PACK_TABLE).where(_P.id == pack_id).values(**changed))
        pack_change = Change.UPDATED if "updated_at" in changed else Change.UNCHANGED
    stored = (
        {}  # a pack created just now has no actions yet
        if pack_change is Change.CREATED
        else {
            row.ref: row
            for row in session.execute(
                select(_A.id, *(_A[name] for name in ACTION_COLUMNS)).where(_A.pack_id == pack_id)
            )
        }
    )
    created: list[dict[str, Any]] = []
    updated = 0
    for action in spec.actions:
        columns = action.columns()
        row = stored.pop(action.ref, None)
        if row is None:
            created.append({"pack_id": pack_id, **columns})
            continue
        changed = _changes(row._mapping, columns)
        if changed:
            session.execute(update(ACTION_TABLE).where(_A.id == row.id).values(**changed))
            updated += "updated_at" in changed
    if created:
        _insert_actions(session, created)
    if stored:
        session.execute(delete(ACTION_TABLE).where(_A.id.in_([row.id for row in stored.values()])))
    rules = _write_rules(session, pack_id, spec)
    return PackReport(
        ref=spec.ref,
        pack=pack_change,
        created=len(created),
        updated=updated,
        unchanged=len(spec.actions) - len(created) - updated,
        removed=len(stored),
        rules=rules,
    )


def _write_rules(session: Session, pack_id: int, spec: PackSpec) -> RuleReport:
    """Check and upsert the pack's rules, last: their actions (of this pack or another) must
    be loaded, else nothing is."""
    problems = action_problems(session, spec.rules) + hook_problems(session, pack_id, spec.rules)
    if problems:
        raise PackError(spec.ref, problems)
    return upsert_rules(session, pack_id, spec.rules)


def insert_pack(session: Session, columns: Mapping[str, Any]) -> int:
    """Insert a pack row of ``columns`` in the caller's transaction; its id."""
    pack_id: int = session.execute(
        insert(PACK_TABLE).values(**columns).returning(_P.id)
    ).scalar_one()
    return pack_id


def insert_actions(session: Session, pack_id: int, actions: Sequence[ActionSpec]) -> None:
    """Insert ``actions`` as new rows of pack ``pack_id``, in the caller's transaction."""
    _insert_actions(session, [{"pack_id": pack_id, **action.columns()} for action in actions])


def _insert_actions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the new action rows: on PostgreSQL in one statement from a JSON array of them
    (a thousand INSERTs, even pipelined, cost a first load more than parsing its files); on
    SQLite by the driver's executemany of plain tuples (SQLAlchemy's processing of each row's
    parameters costs a thousand-action load a third of its insert)."""
    connection = session.connection()
    names = list(rows[0])
    if connection.dialect.name != "postgresql":
        values = [tuple(_sqlite_value(name, row[name]) for name in names) for row in rows]
        connection.exec_driver_sql(_sqlite_insert(tuple(names)), values)
        return
    records = func.jsonb_populate_recordset(
        literal_column("NULL::action"), sql_cast(bindparam("rows"), JSONB)
    ).table_valued(*names, name="new")
    connection.execute(
        insert(ACTION_TABLE).from_select(names, select(*(records.c[name] for name in names))),
        {"rows": json.dumps(rows)},
    )


_JSON_COLUMNS = frozenset(
    column.name for column in ACTION_TABLE.columns if column.type._type_affinity is JSON
)


def _sqlite_value(name: str, value: Any) -> Any:
    """``value`` as SQLite's driver stores it in column ``name`` (JSON as text, None as NULL)."""
    return json.dumps(value) if name in _JSON_COLUMNS and value is not None else value


@functools.lru_cache(maxsize=8)
def _sqlite_insert(names: tuple[str, ...]) -> str:
    return f"INSERT INTO action ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def _differs(stored: object, value: object) -> bool:
    """True unless the two are the same JSON (Python's ``1 == True == 1.0`` is not enough;
    lists here are tags, strings only)."""
    if stored != value or type(stored) is not type(value):
        return True
    if isinstance(value, dict):
        return json.dumps(stored, sort_keys=True) != json.dumps(value, sort_keys=True)
    return False


def _changes(stored: Mapping[Any, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    """The columns whose value differs from ``stored`` (as JSON: ``1`` is not ``true``), plus
    ``updated_at`` when any does but the bookkeeping ``source_hash`` (a file whose bytes changed
    but not what they say gets its new hash written, and counts as unchanged)."""
    changed = {key: value for key, value in columns.items() if _differs(stored[key], value)}
    if changed.keys() - {"source_hash"}:
        changed["updated_at"] = db_now()
    return changed


def find_actions(session: Session, pack: str | None = None) -> list[Action]:
    """The loaded actions (of pack ``pack`` only, when given), ordered by ref."""
    query = select(Action).order_by(Action.ref)
    if pack is not None:
        query = query.join(Pack).where(Pack.ref == pack)
    return list(session.scalars(query))


def find_action(session: Session, ref: str) -> Action:
    """The loaded action ``ref``, enabled or not; raises ActionNotFoundError when none is."""
    action = session.scalars(select(Action).where(Action.ref == ref)).one_or_none()
    if action is None:
        raise ActionNotFoundError(ref, "no such action is loaded (run `attune packs load`)")
    return action
