"""Workflow files read and validated into :class:`WorkflowSpec` values.

Every problem names the file and the field (``tasks[2].next[0].do``): closed keys, task names,
``do`` targets, joins, fan-out bounds, retry policies, and every expression compiled with the
names it may use. The loader stores the file as read; :func:`stored` builds the values again
from that copy for each run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attune.errors import AttuneError, ExpressionError
from attune.expressions import Template, compile_value
from attune.packs.documents import kind_of
from attune.packs.fields import Fields
from attune.packs.policies import read_retry
from attune.store.models import ACTION_REF_REGEX
from attune.workflows.spec import (
    INPUT_ROOTS,
    MAX_CONCURRENCY,
    NEXT_ROOTS,
    OUTPUT_ROOTS,
    RESERVED_TARGETS,
    VARS_ROOTS,
    FanOut,
    OnCancel,
    TaskSpec,
    Transition,
    WorkflowSpec,
)

WORKFLOW_KEYS = frozenset(
    {"version", "vars", "tasks", "output", "timeout", "fail_fast", "on_cancel"}
)
TASK_KEYS = frozenset(
    {"name", "action", "input", "with", "join", "retry", "timeout", "delay", "next"}
)
WITH_KEYS = frozenset({"items", "concurrency", "fail_fast"})
NEXT_KEYS = frozenset({"when", "publish", "do"})
MAX_DELAY_S = 86_400
"""Longest ``delay`` of a task."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ACTION_REF = re.compile(ACTION_REF_REGEX)


def read(path: Path, document: Mapping[str, Any], problems: list[str]) -> WorkflowSpec | None:
    """The workflow in ``document`` (read from ``path``); None after appending its problems."""
    before = len(problems)
    fields = Fields(path, document, WORKFLOW_KEYS, problems)
    if document.get("version") != 1:
        fields.problem("version", f"must be 1, got {document.get('version')!r}")
    raw_tasks = document.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        fields.problem("tasks", "must be a non-empty list of tasks")
        raw_tasks = []
    tasks: dict[str, TaskSpec] = {}
    for index, raw in enumerate(raw_tasks):
        task = _task(path, index, raw, problems)
        if task is None:
            continue
        if task.name in tasks:
            fields.problem(f"tasks[{index}].name", f"{task.name!r} is already a task's name")
            continue
        tasks[task.name] = task
    inbound = _inbound(fields, tasks)
    tasks = _joins(fields, tasks, raw_tasks, inbound)
    start = tuple(name for name in tasks if not inbound[name])
    if tasks and not start:
        fields.problem("tasks", "every task is named by a 'do': no task to start with")
    spec = WorkflowSpec(
        tasks=tasks,
        start=start,
        inbound=inbound,
        vars=_named(fields, "vars", VARS_ROOTS),
        output=_named(fields, "output", OUTPUT_ROOTS),
        timeout_s=fields.timeout(),
        fail_fast=fields.flag("fail_fast", default=True),
        on_cancel=OnCancel(fields.choice("on_cancel", OnCancel)),
        document=dict(document),
    )
    return None if len(problems) > before else spec


def stored(document: Mapping[str, Any]) -> WorkflowSpec:
    """The values of a workflow file stored by the loader (compiled once per process)."""
    return _stored(json.dumps(document, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _stored(text: str) -> WorkflowSpec:
    problems: list[str] = []
    spec = read(Path("<stored workflow>"), json.loads(text), problems)
    if spec is None:
        raise AttuneError("; ".join(problems))
    return spec


def _task(path: Path, index: int, raw: Any, problems: list[str]) -> TaskSpec | None:
    where = f"tasks[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{path}: {where}: must be a mapping, got {kind_of(raw)}")
        return None
    fields = Fields(path, raw, TASK_KEYS, problems, prefix=f"{where}.")
    name = fields.text("name", required=True)
    if name and (not _NAME.fullmatch(name) or len(name) > 64):
        fields.problem("name", f"{name!r} must match {_NAME.pattern} (at most 64 characters)")
    elif name in RESERVED_TARGETS:
        fields.problem("name", f"{name!r} is reserved (a 'do' target)")
    action = fields.text("action", required=True)
    if action and not _ACTION_REF.fullmatch(action):
        fields.problem("action", f"{action!r} is not an action ref <pack>.<name>")
    raw_input = raw.get("input", {})
    if not isinstance(raw_input, dict):
        fields.problem("input", f"must be a mapping, got {kind_of(raw_input)}")
        raw_input = {}
    task = TaskSpec(
        name=name,
        action=action,
        input=_compiled(fields, "input", raw_input, INPUT_ROOTS),
        fan_out=_fan_out(fields, raw["with"]) if "with" in raw else None,
        retry=read_retry(fields, idempotent=True) if "retry" in raw else None,
        timeout_s=fields.timeout(),
        delay_s=_delay(fields, raw.get("delay", 0)),
        next=_transitions(fields, raw.get("next", [])),
        field=where,
    )
    return None if fields.failed else task


def _compiled(fields: Fields, name: str, value: Any, roots: tuple[str, ...]) -> Template:
    try:
        return compile_value(value, roots, f"{fields.prefix}{name}")
    except ExpressionError as error:
        fields.problems.append(f"{fields.path}: {error}")
        fields.failed = True
        return compile_value(None, roots)


def _fan_out(fields: Fields, raw: Any) -> FanOut | None:
    if not isinstance(raw, dict):
        fields.problem("with", f"must be a mapping, got {kind_of(raw)}")
        return None
    for key in raw:
        if key not in WITH_KEYS:
            fields.problem(f"with.{key}", f"unknown key; allowed: {', '.join(sorted(WITH_KEYS))}")
    items = raw.get("items")
    if not isinstance(items, str) or not items.strip().startswith("{{"):
        fields.problem("with.items", f"must be an expression giving a list, got {items!r}")
        return None
    concurrency = raw.get("concurrency", MAX_CONCURRENCY)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        concurrency = 0
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        fields.problem("with.concurrency", f"must be a whole number 1 to {MAX_CONCURRENCY}")
    fail_fast = raw.get("fail_fast", True)
    if not isinstance(fail_fast, bool):
        fields.problem("with.fail_fast", f"must be true or false, got {fail_fast!r}")
        fail_fast = True
    return FanOut(_compiled(fields, "with.items", items, INPUT_ROOTS), concurrency, fail_fast)


def _delay(fields: Fields, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86_400:
        fields.problem("delay", f"must be a number of seconds 0 to {MAX_DELAY_S}, got {value!r}")
        return 0.0
    return float(value)


def _transitions(fields: Fields, raw: Any) -> tuple[Transition, ...]:
    if not isinstance(raw, list):
        fields.problem("next", f"must be a list of transitions, got {kind_of(raw)}")
        return ()
    transitions = []
    for n, entry in enumerate(raw):
        where = f"next[{n}]"
        if not isinstance(entry, dict):
            fields.problem(where, f"must be a mapping, got {kind_of(entry)}")
            continue
        for key in entry:
            if key not in NEXT_KEYS:
                allowed = ", ".join(sorted(NEXT_KEYS))
                fields.problem(f"{where}.{key}", f"unknown key; allowed: {allowed}")
        when = entry.get("when")
        publish = entry.get("publish", {})
        if not isinstance(publish, dict) or not all(_NAME.fullmatch(str(k)) for k in publish):
            fields.problem(f"{where}.publish", "must map variable names to values")
            publish = {}
        do = entry.get("do", [])
        do = [do] if isinstance(do, str) else do
        if not isinstance(do, list) or not all(isinstance(target, str) for target in do):
            fields.problem(f"{where}.do", f"must be a list of task names, got {do!r}")
            do = []
        transitions.append(
            Transition(
                when=None if when is None else _compiled(fields, f"{where}.when", when, NEXT_ROOTS),
                publish=tuple(
                    (key, _compiled(fields, f"{where}.publish.{key}", value, NEXT_ROOTS))
                    for key, value in publish.items()
                ),
                do=tuple(do),
                field=f"{fields.prefix}{where}",
            )
        )
    return tuple(transitions)


def _inbound(fields: Fields, tasks: Mapping[str, TaskSpec]) -> dict[str, tuple[str, ...]]:
    inbound: dict[str, list[str]] = {name: [] for name in tasks}
    for task in tasks.values():
        for n, transition in enumerate(task.next):
            for target in transition.do:
                if target in RESERVED_TARGETS:
                    continue
                if target not in tasks:
                    known = ", ".join(sorted((*tasks, *RESERVED_TARGETS)))
                    fields.problem(
                        f"{task.field}.next[{n}].do", f"{target!r} is not a task ({known})"
                    )
                elif task.name not in inbound[target]:
                    inbound[target].append(task.name)
    return {name: tuple(sources) for name, sources in inbound.items()}


def _joins(
    fields: Fields,
    tasks: dict[str, TaskSpec],
    raw_tasks: list[Any],
    inbound: Mapping[str, tuple[str, ...]],
) -> dict[str, TaskSpec]:
    """Each task's ``join`` resolved to a number of arrivals (``all``: its inbound tasks)."""
    joined = dict(tasks)
    for raw in raw_tasks:
        if not isinstance(raw, dict) or "join" not in raw or raw.get("name") not in tasks:
            continue
        task = tasks[raw["name"]]
        value, sources = raw["join"], len(inbound[task.name])
        count = sources if value == "all" else value
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            fields.problem(f"{task.field}.join", f"must be 'all' or a whole number, got {value!r}")
        elif count > sources:
            names = ", ".join(inbound[task.name]) or "none"
            fields.problem(
                f"{task.field}.join",
                f"waits for {count} arrivals but only {sources} task(s) lead here ({names})",
            )
        else:
            joined[task.name] = dataclasses.replace(task, join=count)
    return joined


def _named(fields: Fields, key: str, roots: tuple[str, ...]) -> tuple[tuple[str, Template], ...]:
    raw = fields.document.get(key, {})
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(_NAME.fullmatch(str(name)) for name in raw):
        fields.problem(key, "must map names (lowercase, digits, _) to values")
        return ()
    return tuple(
        (name, _compiled(fields, f"{key}.{name}", value, roots)) for name, value in raw.items()
    )
