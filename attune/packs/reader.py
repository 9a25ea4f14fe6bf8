"""Read packs from disk: discover pack folders, read and validate their YAML into specs.

A pack is a folder ``<packs_dir>/<ref>/`` holding ``pack.yaml`` and ``actions/*.yaml``, each
action naming an entry point file under ``actions/``, and optionally ``rules/*.yaml``
(:mod:`attune.rules.spec`). :func:`read_pack` validates a whole pack
into a :class:`~attune.packs.specs.PackSpec` or raises one :class:`~attune.errors.PackError`
listing every problem, each naming its file and field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from attune.environments.interpreter import range_problem
from attune.environments.requirements import read_requirements
from attune.errors import DocumentError, PackError
from attune.packs.documents import mapping_of
from attune.packs.entrypoints import entry_point_problem
from attune.packs.fields import Fields
from attune.packs.fingerprint import PackFiles, action_file_names, content_hash, read_bytes
from attune.packs.policies import POLICY_KEYS, read_policy
from attune.packs.specs import ActionSpec, PackSpec
from attune.rules.spec import read_rules
from attune.rules.webhooks import unsigned_warnings
from attune.store.models import (
    ACTION_REF_REGEX,
    PACK_REF_REGEX,
    OutputFormat,
    ParameterDelivery,
    ParameterFormat,
    RunnerType,
)
from attune.workflows.files import abandoned_retry_problems, read_workflow_file

PACK_KEYS = frozenset(
    {"ref", "label", "description", "version", "author", "email", "tags", "python"}
)
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
        "output",
        *POLICY_KEYS,
    }
)
"""The keys an action file may have (``output``: a workflow action's output schema)."""


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


class PackSink(Protocol):
    """What :func:`read_pack` hands on while it reads, before it knows the whole pack is valid
    (:class:`attune.packs.streaming.ActionStream` writes it ahead, in the transaction that a
    problem found later rolls back)."""

    def header(self, columns: dict[str, Any]) -> None:
        """``pack.yaml``'s columns, once valid (not called when it has a problem)."""

    def action(self, spec: ActionSpec) -> None:
        """An action whose file is valid, in the order of the files."""


def read_pack(
    pack_dir: Path, files: PackFiles | None = None, sink: PackSink | None = None
) -> PackSpec:
    """The validated pack in ``pack_dir``; raises :class:`~attune.errors.PackError` listing
    every problem of the pack (each naming its file and field) when there is any.

    ``files``: the pack's files as already read (and hashed), parsed as they were read.
    ``sink``: told the header and each valid action as they are read.
    """
    name = pack_dir.name
    if not _PACK_REF.fullmatch(name):
        raise PackError(name, [f"{pack_dir}: the folder name is not a pack ref ({PACK_REF_REGEX})"])
    if not pack_dir.is_dir():
        raise PackError(name, [f"{pack_dir}: no such pack directory"])
    problems: list[str] = []
    read = files or PackFiles(pack_dir, {}, {}, complete=False)
    header = _read_header(pack_dir, problems, read)
    if sink is not None and header is not None:
        sink.header(header)
    actions = _read_actions(pack_dir, problems, read, sink)
    requirements, requirement_problems = read_requirements(pack_dir)
    problems.extend(requirement_problems)
    rules = read_rules(pack_dir, problems)
    if problems or header is None:
        raise PackError(name, problems)
    if files is not None:  # the pack's hash covers its rules and requirements too
        header["source_hash"] = files.header_hash
    environment = {} if requirements is None else requirements.declared()
    warnings = (*environment.pop("warnings", ()), *unsigned_warnings(rules))
    return PackSpec(
        **header, path=pack_dir, actions=actions, rules=rules, warnings=warnings, **environment
    )


def _read_header(pack_dir: Path, problems: list[str], files: PackFiles) -> dict[str, Any] | None:
    path = pack_dir / "pack.yaml"
    read = _read_document(path, problems, files)
    if read is None:
        return None
    document, source_hash = read
    fields = Fields(path, document, PACK_KEYS, problems)
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
        "python": _python_range(fields) if "python" in document else None,
        "source_hash": source_hash,
    }
    return None if fields.failed else header


def _python_range(fields: Fields) -> str | None:
    """The ``python:`` field: a PEP 440 version range such as ``>=3.11,<3.14``."""
    value = fields.text("python")  # a non-string is a problem recorded here
    problem = range_problem(value) if isinstance(fields.document["python"], str) else None
    if problem:
        fields.problem("python", problem)
    return value if value and not problem else None


def _read_actions(
    pack_dir: Path, problems: list[str], files: PackFiles, sink: PackSink | None
) -> tuple[ActionSpec, ...]:
    actions_dir = pack_dir / "actions"
    if not actions_dir.exists():
        return ()
    if not actions_dir.is_dir():
        problems.append(f"{actions_dir}: must be a directory")
        return ()
    roots = (os.path.realpath(pack_dir), os.path.realpath(actions_dir))
    specs: list[ActionSpec] = []
    first_file: dict[str, Path] = {}
    for name in action_file_names(actions_dir):
        path = actions_dir / name
        spec = _read_action(path, pack_dir.name, roots, problems, files)
        if spec is None:
            continue
        if spec.ref in first_file:
            problems.append(
                f"{path}: ref: {spec.ref!r} is already defined in {first_file[spec.ref]}"
            )
            continue
        first_file[spec.ref] = path
        specs.append(spec)
        if sink is not None:
            sink.action(spec)
    problems.extend(abandoned_retry_problems(specs))
    return tuple(specs)


def _read_action(
    path: Path, pack: str, roots: tuple[str, str], problems: list[str], files: PackFiles
) -> ActionSpec | None:
    read = _read_document(path, problems, files)
    if read is None:
        return None
    document, source_hash = read
    fields = Fields(path, document, ACTION_KEYS, problems)
    ref = fields.text("ref", required=True)
    if ref and (len(ref) > _MAX_REF_LENGTH or not _ACTION_REF.fullmatch(ref)):
        fields.problem("ref", f"{ref!r} is not <pack>.<name> in lowercase ({ACTION_REF_REGEX})")
    elif ref and ref.partition(".")[0] != pack:
        fields.problem("ref", f"{ref!r} must start with the pack's ref: {pack}.<name>")
    runner_type = fields.choice("runner_type", RunnerType, required=True)
    entry_point = fields.text("entry_point", required=True)
    if entry_point:
        problem = entry_point_problem(path.parent, roots, entry_point, runner_type)
        if problem:
            fields.problem("entry_point", problem)
    # Imported here: jsonschema costs a reload that parses nothing a fifth of its time.
    from attune.executions.param_definitions import definition_problems

    # ``parameters:`` left empty means none, as an empty mapping does.
    parameters = document.get("parameters") or {}
    fields.extend(definition_problems(parameters))
    timeout_s = fields.timeout()
    policy = read_policy(fields, parameters, timeout_s)
    workflow = None
    if "output" in document and runner_type != RunnerType.WORKFLOW:
        fields.problem("output", "only a workflow action has an output schema")
    if runner_type == RunnerType.WORKFLOW and entry_point and not fields.failed:
        workflow = read_workflow_file(fields, path.parent / entry_point, files)
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
        source_hash=source_hash,
        policy=None if policy is None else policy.to_json(),
        workflow=workflow,
    )
    return None if fields.failed else spec


def _read_document(
    path: Path, problems: list[str], files: PackFiles
) -> tuple[dict[str, Any], str] | None:
    """The mapping in YAML file ``path`` and the hash of its bytes (as in ``files`` when read
    there), or None after recording why there is none."""
    try:
        data = files.contents.get(path)
        if data is None:
            data = read_bytes(path)
            source_hash = content_hash(data)
        else:
            source_hash = files.hashes[path]
        return mapping_of(data, str(path)), source_hash
    except DocumentError as error:
        problems.append(str(error))
        return None
