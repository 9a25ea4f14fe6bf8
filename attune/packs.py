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
import json
import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeAlias, TypeVar

import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attune import params
from attune.db import Database
from attune.errors import ActionNotFoundError, PackError
from attune.models import (
    ACTION_REF_REGEX,
    PACK_REF_REGEX,
    Action,
    OutputFormat,
    Pack,
    ParameterDelivery,
    ParameterFormat,
    RunnerType,
)
from attune.sqltypes import db_now

MAX_FILE_BYTES = 1024 * 1024
"""Largest pack or action YAML file attune reads; anything bigger is refused unread."""

MAX_VALUES = 100_000
"""Most values one YAML document may expand to (counting every alias use): no alias bombs."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists allowed in one YAML document."""

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
    REMOVED = "removed"


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
    parameters: Mapping[str, Any] | None = None
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
            "parameters": dict(self.parameters or {}),
            "parameter_delivery": self.parameter_delivery,
            "parameter_format": self.parameter_format,
            "output_format": self.output_format,
            "timeout_s": self.timeout_s,
        }


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
        except IntegrityError as error:
            errors.append(
                PackError(pack_dir.name, [f"{pack_dir}: the database refused it: {error.orig}"])
            )
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
    changed, delete the pack's actions the spec no longer has, and leave the rest untouched."""
    pack = session.scalars(select(Pack).where(Pack.ref == spec.ref)).one_or_none()
    if pack is None:
        pack = Pack(**spec.columns())
        session.add(pack)
        session.flush()
        pack_change = Change.CREATED
    else:
        pack_change = Change.UPDATED if _assign(pack, spec.columns()) else Change.UNCHANGED
    rows = {
        row.ref: row for row in session.scalars(select(Action).where(Action.pack_id == pack.id))
    }
    counts = dict.fromkeys(Change, 0)
    for action in spec.actions:
        row = rows.pop(action.ref, None)
        if row is None:
            session.add(Action(pack_id=pack.id, **action.columns()))
            counts[Change.CREATED] += 1
        else:
            counts[Change.UPDATED if _assign(row, action.columns()) else Change.UNCHANGED] += 1
    for row in rows.values():
        session.delete(row)
    session.flush()
    return PackReport(
        ref=spec.ref,
        pack=pack_change,
        created=counts[Change.CREATED],
        updated=counts[Change.UPDATED],
        unchanged=counts[Change.UNCHANGED],
        removed=len(rows),
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


def _as_json(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _assign(row: Pack | Action, columns: Mapping[str, Any]) -> bool:
    """Set the columns whose value differs (as JSON: ``1`` is not ``true``); True if any did."""
    changed = {
        key: value
        for key, value in columns.items()
        if _as_json(getattr(row, key)) != _as_json(value)
    }
    for key, value in changed.items():
        setattr(row, key, value)
    if changed:
        row.updated_at = db_now()
    return bool(changed)


# --- reading and validation -------------------------------------------------------------------


class _UniqueKeys(yaml.constructor.SafeConstructor):
    """Refuses a mapping that repeats a key: YAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


class _PythonLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python safe loader (deep nesting ends in RecursionError, which is caught)."""


def _libyaml_version() -> tuple[int, ...]:
    try:
        from yaml import _yaml
    except ImportError:
        return ()
    return tuple(int(part) for part in _yaml.get_version_string().split(".")[:3])


if getattr(yaml, "__with_libyaml__", False) and _libyaml_version() >= (0, 2, 6):

    class _CLoader(_UniqueKeys, yaml.CSafeLoader):
        """libyaml's safe loader, about 8× faster; 0.2.6 caps nesting (older ones overflow)."""

    _Loader: type[yaml.SafeLoader] | type[_CLoader] = _CLoader
else:  # pragma: no cover - depends on how PyYAML was built
    _Loader = _PythonLoader


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
    pack_root = pack_dir.resolve()
    specs: list[ActionSpec] = []
    first_file: dict[str, Path] = {}
    for path in sorted(actions_dir.iterdir()):
        if path.suffix not in _ACTION_SUFFIXES:
            continue
        spec = _read_action(path, pack_dir.name, pack_root, problems)
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


def _read_action(path: Path, pack: str, pack_root: Path, problems: list[str]) -> ActionSpec | None:
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
        problem = _entry_point_problem(path.parent, pack_root, entry_point, runner_type)
        if problem:
            fields.problem("entry_point", problem)
    parameters = document.get("parameters", {})
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
    actions_dir: Path, pack_root: Path, entry_point: str, runner_type: str
) -> str | None:
    relative = PurePosixPath(entry_point)
    if relative.is_absolute():
        return f"{entry_point!r} is absolute; give a path relative to the pack's actions/"
    if ".." in relative.parts or "\0" in entry_point:
        return f"{entry_point!r} must not contain '..': it must stay under the pack's actions/"
    path = actions_dir / relative
    try:
        resolved = path.resolve(strict=True)
        info = resolved.stat()
    except (FileNotFoundError, NotADirectoryError):
        return f"{entry_point!r} does not exist (looked for {path})"
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop on older Pythons
        return f"{entry_point!r} cannot be resolved: {error}"
    if not resolved.is_relative_to(pack_root):
        return f"{entry_point!r} resolves to {resolved}, outside the pack {pack_root}"
    if stat.S_ISDIR(info.st_mode):
        return f"{entry_point!r} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{entry_point!r} is not a regular file"
    if runner_type == RunnerType.NATIVE and not os.access(resolved, os.X_OK):
        return f"{entry_point!r} is not executable, as a native action's file must be (chmod +x)"
    return None


def _read_document(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The mapping in YAML file ``path``, or None after appending why it cannot be had."""
    try:
        info = path.stat()
    except FileNotFoundError:
        problems.append(f"{path}: missing")
        return None
    except OSError as error:
        problems.append(f"{path}: cannot be read: {error.strerror}")
        return None
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{path}: not a regular file")
        return None
    if info.st_size > MAX_FILE_BYTES:
        problems.append(f"{path}: {info.st_size} bytes, over the {MAX_FILE_BYTES} byte limit")
        return None
    with path.open("rb") as stream:
        data = stream.read(MAX_FILE_BYTES + 1)
    text, problem = _decode(data)
    if text is not None:
        try:
            document: object = yaml.load(text, Loader=_Loader)
        except yaml.MarkedYAMLError as error:
            problem = _yaml_problem(error)
        except yaml.YAMLError as error:
            problem = f"invalid YAML: {error}"
        except RecursionError:
            problem = "invalid YAML: nested too deeply"
        else:
            problem = _shape_problem(document)
    if problem is not None:
        problems.append(f"{path}: {problem}")
        return None
    return document  # type: ignore[return-value]


def _decode(data: bytes) -> tuple[str | None, str | None]:
    """The text of a file's bytes, or None and the reason it is not usable text."""
    if len(data) > MAX_FILE_BYTES:
        return None, f"over the {MAX_FILE_BYTES} byte limit"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
    if not text.strip():
        return None, "the file is empty"
    return text, None


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(part for part in (error.context, error.problem) if part)
    return f"{where}invalid YAML: {what}"


_Path: TypeAlias = tuple[object, "_Path"] | None


def _shape_problem(document: object) -> str | None:
    """Why ``document`` is not a JSON-like mapping of bounded size and depth, or None.

    Walks the document as loaded, where an alias is one shared object visited again at each
    use, so ``MAX_VALUES`` bounds the work an alias bomb (or a recursive alias) can cause.
    """
    if document is None:
        return "the file is empty (no YAML document, only comments)"
    if type(document) is not dict:
        return f"the document must be a mapping of keys, got {_kind(document)}"
    budget = MAX_VALUES
    # Paths are linked (key, parent) pairs, spelled out only for a problem.
    stack: list[tuple[object, int, _Path]] = [(document, 1, None)]
    while stack:
        value, depth, path = stack.pop()
        budget -= 1
        if budget < 0:
            return f"expands to more than {MAX_VALUES} values (YAML aliases used as a bomb?)"
        if depth > MAX_DEPTH:
            return f"{_spelled(path)}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str):
                    return f"{_spelled(path) or 'top level'}: key {key!r} is not a string"
                stack.append((child, depth + 1, (key, path)))
        elif isinstance(value, list):
            stack.extend((child, depth + 1, (i, path)) for i, child in enumerate(value))
        elif isinstance(value, str):
            if "\0" in value:
                return f"{_spelled(path)}: a NUL character cannot be stored"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{_spelled(path)}: {value} is not a JSON number"
        elif value is not None and not isinstance(value, int):
            return f"{_spelled(path)}: a YAML {_kind(value)} is not JSON (quote it as a string)"
    return None


def _spelled(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        key, path = path
        parts.append(str(key))
    parts.reverse()
    return ".".join(parts) if len(parts) <= 10 else ".".join(parts[:9]) + "…"


def _kind(value: object) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer"}
    return names.get(type(value), type(value).__name__)


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
            self.problem(key, f"must be a string, got {_kind(value)} {value!r}")
            return ""
        if required and not value.strip():
            self.problem(key, "must not be empty")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """A boolean field: true or false, never a truthy string."""
        value = self.document.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {_kind(value)} {value!r}")
            return default
        return value

    def choice(self, key: str, choices: type[_E], *, required: bool = False) -> str:
        """One of an enum's values (its first member when absent and optional)."""
        allowed = [member.value for member in choices]
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
