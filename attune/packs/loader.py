"""Packs: discover pack folders, read and validate their YAML, upsert packs and actions by ref.

A pack is a folder ``<packs_dir>/<ref>/`` holding ``pack.yaml`` and ``actions/*.yaml``, each
action naming an entry point file under ``actions/``. :func:`read_pack` validates a whole pack
into a :class:`PackSpec` or raises one :class:`~attune.errors.PackError` listing every problem;
:func:`upsert_pack` writes a valid pack in the caller's transaction, touching only rows that
changed; :func:`load_packs` does both for each pack, one transaction per pack.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from attune.errors import ActionNotFoundError, DatabaseError, DocumentError, PackError
from attune.executions import params
from attune.packs.documents import kind_of, read_mapping
from attune.store.db import Database
from attune.store.models import (
    ACTION_REF_REGEX,
    PACK_REF_REGEX,
    Action,
    OutputFormat,
    Pack,
    ParameterDelivery,
    ParameterFormat,
    RunnerType,
)
from attune.store.sqltypes import db_now

MAX_TIMEOUT_S = 2**31 - 1
"""Largest ``timeout`` an action may declare (the column is a 32-bit integer)."""

PACK_KEYS = frozenset({"ref", "label", "description", "version", "author", "email", "tags"})
"""The keys a ``pack.yaml`` may have."""

ACTION_KEYS = frozenset(
    {
        "ref",
        "label",
        "description",
        "enabled",
        "tags",
        "runner_type",
        "entry_point",
        "parameters",
        "parameter_delivery",
        "parameter_format",
        "output_format",
        "timeout",
    }
)
"""The keys an action file may have."""

SEMVER_REGEX = (
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
    r"(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?"
)
"""A semantic version (semver.org 2.0.0), matched against the whole string."""

_MAX_REF_LENGTH = 255
_MAX_VERSION_LENGTH = 64
_PACK_REF = re.compile(PACK_REF_REGEX)
_ACTION_REF = re.compile(ACTION_REF_REGEX)
_SEMVER = re.compile(SEMVER_REGEX)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_ACTION_SUFFIXES = (".yaml", ".yml")
_E = TypeVar("_E", bound=enum.StrEnum)


class Change(enum.StrEnum):
    """What a load did to one row."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ActionSpec:
    """A validated action file: the values of one ``action`` row."""

    ref: str
    runner_type: str
    entry_point: str
    source: Path
    label: str = ""
    description: str = ""
    enabled: bool = True
    tags: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    parameter_delivery: str = ParameterDelivery.STDIN
    parameter_format: str = ParameterFormat.JSON
    output_format: str = OutputFormat.TEXT
    timeout_s: int | None = None

    @property
    def name(self) -> str:
        """The part of the ref after the pack's."""
        return self.ref.partition(".")[2]

    def columns(self) -> dict[str, Any]:
        """The ``action`` columns this spec sets (all but ids, pack_id and timestamps)."""
        return {
            "ref": self.ref,
            "label": self.label,
            "description": self.description,
            "enabled": self.enabled,
            "tags": list(self.tags),
            "runner_type": self.runner_type,
            "entry_point": self.entry_point,
            "parameters": dict(self.parameters),
            "parameter_delivery": self.parameter_delivery,
            "parameter_format": self.parameter_format,
            "output_format": self.output_format,
            "timeout_s": self.timeout_s,
        }


_ACTION_COLUMNS = tuple(ActionSpec(ref="", runner_type="", entry_point="", source=Path()).columns())


@dataclass(frozen=True)
class PackSpec:
    """A validated pack: its ``pack.yaml`` values and its actions."""

    ref: str
    label: str
    description: str
    version: str
    path: Path
    author: str | None = None
    email: str | None = None
    tags: tuple[str, ...] = ()
    actions: tuple[ActionSpec, ...] = ()

    def columns(self) -> dict[str, Any]:
        """The ``pack`` columns this spec sets (all but id and timestamps)."""
        return {
            "ref": self.ref,
            "label": self.label,
            "description": self.description,
            "version": self.version,
            "author": self.author,
            "email": self.email,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class PackReport:
    """What loading one pack did: the pack row's change and its actions' counts."""

    ref: str
    pack: Change
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    @property
    def wrote(self) -> bool:
        """True when the load changed any row."""
        return self.pack is not Change.UNCHANGED or bool(self.created + self.updated + self.removed)


@dataclass(frozen=True)
class LoadResult:
    """The outcome of :func:`load_packs`: a report per loaded pack, an error per refused one."""

    reports: tuple[PackReport, ...]
    errors: tuple[PackError, ...]

    @property
    def ok(self) -> bool:
        """True when every pack loaded."""
        return not self.errors


def load_packs(database: Database, packs_dir: Path, names: Sequence[str] = ()) -> LoadResult:
    """Load the packs ``names`` (every pack when empty) from ``packs_dir``.

    Each pack is validated whole and written in its own transaction; a pack with any problem
    writes nothing and is reported in ``errors`` while the others still load. Raises
    :class:`~attune.errors.DatabaseError` when the database is unreachable or not migrated.
    """
    database.require_schema()
    reports: list[PackReport] = []
    errors: list[PackError] = []
    for pack_dir in discover(packs_dir, names):
        try:
            spec = read_pack(pack_dir)
            with database.session_scope() as session:
                reports.append(upsert_pack(session, spec))
        except PackError as error:
            errors.append(error)
        except IntegrityError as error:  # another loader wrote the same pack meanwhile
            errors.append(
                PackError(pack_dir.name, [f"{pack_dir}: the database refused it: {error.orig}"])
            )
        except SQLAlchemyError as error:
            raise DatabaseError(f"loading pack {pack_dir.name!r} failed: {error}") from error
    return LoadResult(tuple(reports), tuple(errors))


def discover(packs_dir: Path, names: Sequence[str] = ()) -> list[Path]:
    """The pack folders to load: ``packs_dir/<name>`` for each name, else every visible folder.

    Raises :class:`~attune.errors.PackError` for a name that is not a pack ref, or when no
    names are given and ``packs_dir`` is not a directory.
    """
    if names:
        bad = [name for name in names if not _PACK_REF.fullmatch(name)]
        if bad:
            problems = [f"{name!r} is not a pack name ({PACK_REF_REGEX})" for name in bad]
            raise PackError(", ".join(bad) or "''", problems)
        return [packs_dir / name for name in dict.fromkeys(names)]
    if not packs_dir.is_dir():
        raise PackError(str(packs_dir), [f"{packs_dir}: the packs directory does not exist"])
    return sorted(
        entry for entry in packs_dir.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )


def read_pack(pack_dir: Path) -> PackSpec:
    """The validated pack in ``pack_dir``; raises :class:`~attune.errors.PackError` listing
    every problem of the pack (each naming its file and field) when there is any."""
    name = pack_dir.name
    if not _PACK_REF.fullmatch(name):
        raise PackError(name, [f"{pack_dir}: the folder name is not a pack ref ({PACK_REF_REGEX})"])
    if not pack_dir.is_dir():
        raise PackError(name, [f"{pack_dir}: no such pack directory"])
    problems: list[str] = []
    header = _read_header(pack_dir, problems)
    actions = _read_actions(pack_dir, problems)
    if problems or header is None:
        raise PackError(name, problems)
    return PackSpec(**header, path=pack_dir, actions=actions)


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
            select(Action.id, *(getattr(Action, name) for name in _ACTION_COLUMNS)).where(
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
    return PackReport(
        ref=spec.ref,
        pack=pack_change,
        created=len(created),
        updated=updated,
        unchanged=len(spec.actions) - len(created) - updated,
        removed=len(stored),
    )


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


def _read_header(pack_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    path = pack_dir / "pack.yaml"
    document = _read_document(path, problems)
    if document is None:
        return None
    fields = _Fields(path, document, PACK_KEYS, problems)
    ref = fields.text("ref", required=True)
    if ref and not _PACK_REF.fullmatch(ref):
        fields.problem("ref", f"{ref!r} does not match {PACK_REF_REGEX}")
    elif ref and ref != pack_dir.name:
        fields.problem("ref", f"{ref!r} differs from the pack's folder name {pack_dir.name!r}")
    version = fields.text("version", required=True)
    if version and (len(version) > _MAX_VERSION_LENGTH or not _SEMVER.fullmatch(version)):
        fields.problem("version", f"{version!r} is not a semantic version such as 1.0.0")
    email = fields.text("email") if "email" in document else None
    if email is not None and not _EMAIL.fullmatch(email):
        fields.problem("email", f"{email!r} is not an e-mail address")
    header = {
        "ref": ref,
        "label": fields.text("label", required=True),
        "description": fields.text("description", required=True),
        "version": version,
        "author": fields.text("author") if "author" in document else None,
        "email": email,
        "tags": fields.tags(),
    }
    return None if fields.failed else header


def _read_actions(pack_dir: Path, problems: list[str]) -> tuple[ActionSpec, ...]:
    actions_dir = pack_dir / "actions"
    if not actions_dir.exists():
        return ()
    if not actions_dir.is_dir():
        problems.append(f"{actions_dir}: must be a directory")
        return ()
    roots = (os.path.realpath(pack_dir), os.path.realpath(actions_dir))
    specs: list[ActionSpec] = []
    first_file: dict[str, Path] = {}
    names = sorted(name for name in os.listdir(actions_dir) if name.endswith(_ACTION_SUFFIXES))
    for name in names:
        path = actions_dir / name
        spec = _read_action(path, pack_dir.name, roots, problems)
        if spec is None:
            continue
        if spec.ref in first_file:
            problems.append(
                f"{path}: ref: {spec.ref!r} is already defined in {first_file[spec.ref]}"
            )
            continue
        first_file[spec.ref] = path
        specs.append(spec)
    return tuple(specs)


def _read_action(
    path: Path, pack: str, roots: tuple[str, str], problems: list[str]
) -> ActionSpec | None:
    document = _read_document(path, problems)
    if document is None:
        return None
    fields = _Fields(path, document, ACTION_KEYS, problems)
    ref = fields.text("ref", required=True)
    if ref and (len(ref) > _MAX_REF_LENGTH or not _ACTION_REF.fullmatch(ref)):
        fields.problem("ref", f"{ref!r} is not <pack>.<name> in lowercase ({ACTION_REF_REGEX})")
    elif ref and ref.partition(".")[0] != pack:
        fields.problem("ref", f"{ref!r} must start with the pack's ref: {pack}.<name>")
    runner_type = fields.choice("runner_type", RunnerType, required=True)
    entry_point = fields.text("entry_point", required=True)
    if entry_point:
        problem = _entry_point_problem(path.parent, roots, entry_point, runner_type)
        if problem:
            fields.problem("entry_point", problem)
    # ``parameters:`` left empty means none, as an empty mapping does.
    parameters = document.get("parameters") or {}
    fields.extend(params.definition_problems(parameters))
    timeout_s = fields.timeout()
    spec = ActionSpec(
        ref=ref,
        runner_type=runner_type,
        entry_point=entry_point,
        source=path,
        label=fields.text("label"),
        description=fields.text("description"),
        enabled=fields.flag("enabled", default=True),
        tags=fields.tags(),
        parameters=parameters,
        parameter_delivery=fields.choice("parameter_delivery", ParameterDelivery),
        parameter_format=fields.choice("parameter_format", ParameterFormat),
        output_format=fields.choice("output_format", OutputFormat),
        timeout_s=timeout_s,
    )
    return None if fields.failed else spec


def _entry_point_problem(
    actions_dir: Path, roots: tuple[str, str], entry_point: str, runner_type: str
) -> str | None:
    """Why ``entry_point`` is not a regular file under ``actions_dir`` that stays inside the
    pack (``roots``: the pack's and its actions/' resolved paths), or None."""
    pack_root, real_actions_dir = roots
    if entry_point.startswith("/"):
        return f"{entry_point!r} is absolute; give a path relative to the pack's actions/"
    if ".." in entry_point.split("/") or "\0" in entry_point:
        return f"{entry_point!r} must not contain '..': it must stay under the pack's actions/"
    path = os.path.join(actions_dir, entry_point)
    try:
        info = os.lstat(path)
        resolved = os.path.join(real_actions_dir, entry_point)
        # A plain file name that is no symlink is inside the already resolved actions/.
        if "/" in entry_point or stat.S_ISLNK(info.st_mode):
            resolved = os.path.realpath(path, strict=True)
            info = os.stat(resolved)
    except (FileNotFoundError, NotADirectoryError):
        return f"{entry_point!r} does not exist (looked for {path})"
    except OSError as error:  # a symlink loop, a permission denied
        return f"{entry_point!r} cannot be resolved: {error}"
    if not resolved.startswith(pack_root + os.sep):
        return f"{entry_point!r} resolves to {resolved}, outside the pack {pack_root}"
    if stat.S_ISDIR(info.st_mode):
        return f"{entry_point!r} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{entry_point!r} is not a regular file"
    if runner_type == RunnerType.NATIVE and not os.access(resolved, os.X_OK):
        return f"{entry_point!r} is not executable, as a native action's file must be (chmod +x)"
    return None


def _read_document(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The mapping in YAML file ``path``, or None after recording why there is none."""
    try:
        return read_mapping(path)
    except DocumentError as error:
        problems.append(str(error))
        return None


@functools.cache
def _values(choices: type[enum.StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in choices)


class _Fields:
    """Typed access to one YAML file's top-level keys, appending a problem per bad field."""

    def __init__(
        self, path: Path, document: Mapping[str, Any], allowed: frozenset[str], problems: list[str]
    ) -> None:
        self.path = path
        self.document = document
        self.problems = problems
        self.failed = False
        for key in document:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(key, f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")

    def problem(self, field: str, what: str) -> None:
        """Record that ``field`` is wrong, and how."""
        self.failed = True
        self.problems.append(f"{self.path}: {field}: {what}")

    def extend(self, problems: Sequence[str]) -> None:
        """Record problems that already name their field (``field: what``)."""
        self.failed = self.failed or bool(problems)
        self.problems.extend(f"{self.path}: {problem}" for problem in problems)

    def text(self, key: str, *, required: bool = False) -> str:
        """A string field ("" when absent and optional)."""
        if key not in self.document:
            if required:
                self.problem(key, "missing (required)")
            return ""
        value = self.document[key]
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {kind_of(value)} {value!r}")
            return ""
        if required and not value.strip():
            self.problem(key, "must not be empty")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """A boolean field: true or false, never a truthy string."""
        value = self.document.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {kind_of(value)} {value!r}")
            return default
        return value

    def choice(self, key: str, choices: type[_E], *, required: bool = False) -> str:
        """One of an enum's values (its first member when absent and optional)."""
        allowed = _values(choices)
        if key not in self.document:
            if required:
                self.problem(key, f"missing (required): one of {', '.join(allowed)}")
            return allowed[0]
        value = self.document[key]
        if value not in allowed:
            self.problem(key, f"{value!r} is not one of {', '.join(allowed)}")
            return allowed[0]
        return str(value)

    def tags(self) -> tuple[str, ...]:
        """The ``tags`` field: a list of non-empty strings."""
        value = self.document.get("tags", [])
        if not isinstance(value, list) or not all(isinstance(tag, str) and tag for tag in value):
            self.problem("tags", f"must be a list of non-empty strings, got {value!r}")
            return ()
        return tuple(value)

    def timeout(self) -> int | None:
        """The ``timeout`` field: whole seconds, 1 or more (None when absent)."""
        value = self.document.get("timeout")
        if value is None and "timeout" not in self.document:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_TIMEOUT_S:
            self.problem(
                "timeout", f"must be a whole number of seconds, 1 to {MAX_TIMEOUT_S}, got {value!r}"
            )
            return None
        return value
