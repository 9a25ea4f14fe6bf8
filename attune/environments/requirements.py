"""Requirements: a pack's ``requirements.txt`` (and the files it includes), validated and digested.

Only requirement specifiers, ``-r``/``-c`` to files inside the pack and a few resolver flags
are allowed; index options (``--index-url``, ``--find-links``, …) are refused: where packages
come from is a setting of the worker host (``ATTUNE_ENV_INDEX_URL``, ``ATTUNE_ENV_FIND_LINKS``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS_FILE = "requirements.txt"
"""The manifest at a pack's root that gives it a Python environment."""

MAX_FILE_BYTES = 1024 * 1024
"""Largest requirements file read (each included one too)."""

_INCLUDES = {"-r": False, "--requirement": False, "-c": True, "--constraint": True}
_INDEX_OPTIONS = frozenset(
    {"-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "--trusted-host"}
)
_FLAGS = frozenset({"--pre", "--prefer-binary", "--require-hashes"})
_VALUED_FLAGS = frozenset({"--only-binary", "--no-binary"})
_LINE_OPTIONS = ("--hash",)


@dataclass(frozen=True)
class Requirements:
    """A pack's validated requirements: the files read (pack-relative) and their digest."""

    files: tuple[str, ...]
    digest: str
    warnings: tuple[str, ...] = ()

    def declared(self) -> dict[str, Any]:
        """What a pack's spec keeps of them: the digest and the warnings."""
        return {"requirements_digest": self.digest, "warnings": self.warnings}


@dataclass
class _Reading:
    root: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hashes: list[tuple[str, str]] = field(default_factory=list)
    unpinned: list[tuple[str, str]] = field(default_factory=list)  # (name, where)
    constrained: set[str] = field(default_factory=set)


def read_requirements(pack_dir: Path) -> tuple[Requirements | None, list[str]]:
    """The pack's requirements (None without ``requirements.txt``) and every problem found,
    each naming file and line; the requirements are None whenever there is a problem."""
    top = pack_dir / REQUIREMENTS_FILE
    if not os.path.lexists(top):
        return None, []
    reading = _Reading(root=os.path.realpath(pack_dir))
    _read_file(reading, top, constraint=False, seen=())
    for name, where in reading.unpinned:
        if name not in reading.constrained:
            reading.warnings.append(
                f"{where}: {name} is not pinned with ==; it may resolve to other versions "
                "on other hosts and days"
            )
    if reading.problems:
        return None, reading.problems
    canonical = json.dumps(reading.hashes, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    files = tuple(path for path, _ in reading.hashes)
    return Requirements(files=files, digest=digest, warnings=tuple(reading.warnings)), []


def _read_file(reading: _Reading, path: Path, *, constraint: bool, seen: tuple[str, ...]) -> None:
    real = os.path.realpath(path)
    relative = os.path.relpath(real, reading.root)
    if real in seen:
        reading.problems.append(f"{path}: includes itself (through {' -> '.join(seen)})")
        return
    try:
        with open(real, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reading.problems.append(f"{path}: cannot be read: {exc.strerror or exc}")
        return
    if len(data) > MAX_FILE_BYTES:
        reading.problems.append(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reading.problems.append(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})")
        return
    reading.hashes.append((relative, hashlib.sha256(data).hexdigest()))
    for number, line in _logical_lines(text):
        where = f"{path}: line {number}"
        if line.startswith("-"):
            _option(reading, path, where, line, (*seen, real))
        else:
            _requirement(reading, where, line, constraint)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments stripped and ``\\`` continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = _strip_comment(pending + raw).strip()
        pending = ""
        if line:
            lines.append((start, line))
    if pending.strip():
        lines.append((start, _strip_comment(pending).strip()))
    return lines


def _strip_comment(line: str) -> str:
    """pip's rule: ``#`` starts a comment at the line's start or after whitespace."""
    if line.lstrip().startswith("#"):
        return ""
    for index in range(1, len(line)):
        if line[index] == "#" and line[index - 1].isspace():
            return line[:index]
    return line


def _option(reading: _Reading, path: Path, where: str, line: str, seen: tuple[str, ...]) -> None:
    option, _, value = line.replace("=", " ", 1).partition(" ")
    value = value.strip()
    if option in _INDEX_OPTIONS:
        reading.problems.append(
            f"{where}: {option} is refused: where packages come from is a worker setting "
            "(ATTUNE_ENV_INDEX_URL, ATTUNE_ENV_FIND_LINKS, ATTUNE_ENV_OFFLINE)"
        )
    elif option in _INCLUDES:
        _include(reading, path, where, option, value, seen)
    elif option in ("-e", "--editable"):
        reading.problems.append(f"{where}: editable installs ({option}) are not supported")
    elif (option in _FLAGS and not value) or (option in _VALUED_FLAGS and value):
        return
    else:
        reading.problems.append(f"{where}: option {option!r} is not allowed in requirements")


def _include(
    reading: _Reading, path: Path, where: str, option: str, value: str, seen: tuple[str, ...]
) -> None:
    if not value or "://" in value:
        reading.problems.append(f"{where}: {option} needs a file inside the pack, got {value!r}")
        return
    target = Path(os.path.join(path.parent, value))
    real = os.path.realpath(target)
    if not real.startswith(reading.root + os.sep):
        reading.problems.append(
            f"{where}: {option} {value!r} resolves to {real}, outside the pack {reading.root}"
        )
        return
    if not os.path.isfile(real):
        reading.problems.append(f"{where}: {option} {value!r}: no such file ({real})")
        return
    _read_file(reading, target, constraint=_INCLUDES[option], seen=seen)


def _requirement(reading: _Reading, where: str, line: str, constraint: bool) -> None:
    spec, _, options = line.partition(" --")
    if options and not options.startswith(tuple(option[2:] for option in _LINE_OPTIONS)):
        reading.problems.append(f"{where}: only --hash may follow a requirement, got --{options}")
        return
    try:
        requirement = Requirement(spec.strip())
    except InvalidRequirement as exc:
        problem = f"{spec.strip()!r} is not a requirement specifier ({exc})"
        if spec.startswith((".", "/")) or "://" in spec:
            problem = f"{spec.strip()!r}: paths and URLs are not allowed; name a package"
        reading.problems.append(f"{where}: {problem}")
        return
    name = canonicalize_name(requirement.name)
    pinned = requirement.url is not None or (
        len(requirement.specifier) == 1
        and all(
            item.operator in ("==", "===") and "*" not in item.version
            for item in requirement.specifier
        )
    )
    if constraint:
        if pinned:
            reading.constrained.add(name)
    elif not pinned:
        reading.unpinned.append((name, where))
