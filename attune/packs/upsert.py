"""Write packs to the database by ref, touching only rows that changed; find loaded actions."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from attune.errors import ActionNotFoundError, PackError
from attune.packs.specs import ACTION_COLUMNS, PackSpec
from attune.rules.upsert import RuleReport, action_problems, upsert_rules
from attune.store.models import (
    Action,
    Pack,
)
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
        """True when the load changed any row."""
        changed = self.created + self.updated + self.removed
        return self.pack is not Change.UNCHANGED or bool(changed) or self.rules.wrote


def upsert_pack(session: Session, spec: PackSpec) -> PackReport:
    """Write ``spec`` by ref in the caller's transaction: insert what is new, update what
    changed, delete the pack's actions the spec no longer has, and leave the rest untouched.

    Actions are read and written as plain rows (no ORM objects): an unchanged reload of a
    large pack costs one SELECT and no write.
    """
    pack = session.scalars(select(Pack).where(Pack.ref == spec.ref)).one_or_none()
    if pack is None:
        pack = Pack(**spec.columns())
        session.add(pack)
        session.flush()
        pack_change = Change.CREATED
    else:
        pack_change = Change.UPDATED if _assign(pack, spec.columns()) else Change.UNCHANGED
    stored = {
        row.ref: row
        for row in session.execute(
            select(Action.id, *(getattr(Action, name) for name in ACTION_COLUMNS)).where(
                Action.pack_id == pack.id
            )
        )
    }
    created: list[dict[str, Any]] = []
    updated = 0
    for action in spec.actions:
        columns = action.columns()
        row = stored.pop(action.ref, None)
        if row is None:
            created.append({"pack_id": pack.id, **columns})
            continue
        changed = {
            key: value for key, value in columns.items() if _differs(row._mapping[key], value)
        }
        if changed:
            session.execute(
                update(Action).where(Action.id == row.id).values(**changed, updated_at=db_now())
            )
            updated += 1
    if created:
        session.execute(insert(Action), created)
    if stored:
        session.execute(delete(Action).where(Action.id.in_([row.id for row in stored.values()])))
    # Rules last: their actions (of this pack or another) must be loaded, else nothing is.
    problems = action_problems(session, spec.rules)
    if problems:
        raise PackError(spec.ref, problems)
    rules = upsert_rules(session, pack.id, spec.rules)
    return PackReport(
        ref=spec.ref,
        pack=pack_change,
        created=len(created),
        updated=updated,
        unchanged=len(spec.actions) - len(created) - updated,
        removed=len(stored),
        rules=rules,
    )


def _differs(stored: object, value: object) -> bool:
    """True unless the two are the same JSON (Python's ``1 == True == 1.0`` is not enough;
    lists here are tags, strings only)."""
    if stored != value or type(stored) is not type(value):
        return True
    if isinstance(value, dict):
        return json.dumps(stored, sort_keys=True) != json.dumps(value, sort_keys=True)
    return False


def _assign(row: Pack, columns: Mapping[str, Any]) -> bool:
    """Set the columns whose value differs (as JSON: ``1`` is not ``true``); True if any did."""
    changed = {key: value for key, value in columns.items() if _differs(getattr(row, key), value)}
    for key, value in changed.items():
        setattr(row, key, value)
    if changed:
        row.updated_at = db_now()
    return bool(changed)


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
