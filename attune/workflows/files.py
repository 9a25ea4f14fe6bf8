"""A workflow action's file, read and validated when its pack is loaded."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attune.errors import DocumentError
from attune.executions.policies import Policy, RetryOn
from attune.packs.documents import mapping_of
from attune.packs.fields import Fields
from attune.packs.fingerprint import PackFiles, read_bytes
from attune.packs.specs import ActionSpec
from attune.workflows.reader import read

if TYPE_CHECKING:
    from jsonschema import Draft7Validator

WORKFLOW_SUFFIXES = (".yaml", ".yml")
"""What a workflow file's name ends with."""
ACTION_ONLY_KEYS = ("retry", "concurrency")
"""Policy keys a workflow action may not have (its tasks have ``retry``)."""


def read_workflow_file(fields: Fields, path: Path, files: PackFiles) -> dict[str, Any] | None:
    """What the ``workflow`` column of an action of ``fields`` holds: the file it names, as
    read (``file``), and the action's ``output`` JSON Schema (``output``, None when it has
    none); None after recording problems."""
    schema = fields.document.get("output")
    if schema is not None:
        from jsonschema import Draft7Validator  # only when a file is parsed (reloads: never)

        meta = Draft7Validator(Draft7Validator.META_SCHEMA)
        for error in meta.iter_errors(schema):
            fields.problem("output", f"not a JSON Schema (Draft 7): {error.message}")
    for key in ACTION_ONLY_KEYS:
        if key in fields.document:
            fields.problem(key, f"a workflow action takes no {key}: give its tasks one")
    if not path.name.endswith(WORKFLOW_SUFFIXES):
        fields.problem("entry_point", f"a workflow's file is YAML (.yaml), got {path.name!r}")
        return None
    try:
        data = files.contents.get(path) or read_bytes(path)
        document = mapping_of(data, str(path))
    except DocumentError as error:
        fields.problem("entry_point", str(error))
        return None
    before = len(fields.problems)
    spec = read(path, document, fields.problems)
    if spec is None or len(fields.problems) > before:
        fields.failed = True
        return None
    return {"file": dict(spec.document), "output": schema}


def output_problems(column: Mapping[str, Any], output: Any) -> list[str]:
    """Why a run's rendered ``output`` does not satisfy its action's ``output`` schema."""
    schema = column.get("output")
    if schema is None:
        return []
    errors = _validator(json.dumps(schema, sort_keys=True)).iter_errors(output)
    return [f"output{_dotted(error.absolute_path)}: {error.message}" for error in errors]


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> Draft7Validator:
    from jsonschema import Draft7Validator

    return Draft7Validator(json.loads(schema))


def _dotted(path: Sequence[Any]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def abandoned_retry_problems(actions: Sequence[ActionSpec]) -> list[str]:
    """A problem for each workflow task that retries ``abandoned`` on an action of the same
    pack that is not idempotent (other packs' actions are checked when the task starts)."""
    idempotent = {spec.ref: Policy.from_json(spec.policy).idempotent for spec in actions}
    problems = []
    for spec in actions:
        for index, task in enumerate((spec.workflow or {}).get("file", {}).get("tasks", ())):
            on = (task.get("retry") or {}).get("on") or ()
            if RetryOn.ABANDONED.value in on and idempotent.get(task.get("action")) is False:
                problems.append(
                    f"{spec.source.parent / spec.entry_point}: tasks[{index}].retry.on: "
                    f"abandoned needs an idempotent action; {task['action']} is not idempotent "
                    "(idempotent: true)"
                )
    return problems
