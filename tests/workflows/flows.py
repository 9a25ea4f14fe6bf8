"""The workflow files of the ``wf`` test pack, as data (name → document): control flow, data
passing and expressions here, the hazards (kills, losses, time, failures) in
:mod:`tests.workflows.hazards`."""

from __future__ import annotations

from typing import Any

from tests.workflows.hazards import COMPLETED, FAILED, HAZARDS, NOOP_FAILING, SUCCEEDED


def handling(do: list[str]) -> dict[str, Any]:
    """A task that fails, and a transition on failure to ``do`` (``report``: a task)."""
    tasks = [{"name": "broken", **NOOP_FAILING, "next": [{"when": FAILED, "do": do}]}]
    if "report" in do:
        tasks.append({"name": "report", "action": "core.noop"})
    return {"version": 1, "tasks": tasks}


def _sequence() -> dict[str, Any]:
    return {
        "version": 1,
        "vars": {"base": "{{ input.start }}"},
        "tasks": [
            {
                "name": "first",
                "action": "wf.sh",
                "input": {"cmd": "echo '{\"n\": {{ vars.base + 1 }}}'"},
                "next": [{"when": SUCCEEDED, "publish": {"n": "{{ result.n }}"}, "do": ["second"]}],
            },
            {
                "name": "second",
                "action": "wf.sh",
                "input": {"cmd": 'echo \'{"n": {{ vars.n * 2 }}, "label": "n{{ vars.n }}"}\''},
                "next": [{"when": SUCCEEDED, "publish": {"m": "{{ result.n }}"}, "do": ["third"]}],
            },
            {"name": "third", "action": "core.noop", "input": {"message": "m={{ vars.m }}"}},
        ],
        "output": {
            "n": "{{ vars.n }}",
            "m": "{{ vars.m }}",
            "second": "{{ tasks.second.result }}",
            "first_id": "{{ tasks.first.execution_id }}",
        },
    }


def _branch() -> dict[str, Any]:
    probe = 'echo \'{"mode": "{{ input.mode }}"}\'; exit {{ input.code }}'
    return {
        "version": 1,
        "tasks": [
            {
                "name": "probe",
                "action": "wf.sh",
                "input": {"cmd": probe},
                "next": [
                    {"when": SUCCEEDED, "do": ["on_success"]},
                    {"when": FAILED, "do": ["on_failure"]},
                    {"when": "{{ succeeded() and result.mode == 'fast' }}", "do": ["on_fast"]},
                ],
            },
            {"name": "on_success", "action": "core.noop"},
            {"name": "on_failure", "action": "core.noop"},
            {"name": "on_fast", "action": "core.noop"},
        ],
    }


def _joins(inbound_when: str) -> dict[str, Any]:
    """``split`` → ``good`` and ``bad`` (which fails) → ``merge`` (join all)."""
    bad_next: list[dict[str, Any]] = [
        {"when": inbound_when, "publish": {"bad_ok": SUCCEEDED}, "do": ["merge"]}
    ]
    if inbound_when == SUCCEEDED:
        bad_next.append({"when": FAILED, "do": ["noop"]})
    return {
        "version": 1,
        "tasks": [
            {"name": "split", "action": "core.noop", "next": [{"do": ["good", "bad"]}]},
            {"name": "good", "action": "core.noop", "next": [{"when": COMPLETED, "do": ["merge"]}]},
            {"name": "bad", **NOOP_FAILING, "next": bad_next},
            {"name": "merge", "join": "all", "action": "core.noop"},
        ],
        "output": {"bad_ok": "{{ vars.bad_ok }}", "merge": "{{ tasks.merge.status }}"},
    }


def _nested() -> dict[str, dict[str, Any]]:
    inner = {
        "version": 1,
        "tasks": [
            {
                "name": "times_ten",
                "action": "wf.sh",
                "input": {"cmd": "echo '{\"y\": {{ input.x * 10 }}}'"},
                "next": [{"when": SUCCEEDED, "publish": {"y": "{{ result.y }}"}}],
            }
        ],
        "output": {"y": "{{ vars.y }}"},
    }
    outer = {
        "version": 1,
        "tasks": [
            {
                "name": "child",
                "action": "wf.inner",
                "input": {"x": "{{ input.x }}"},
                "next": [{"when": SUCCEEDED, "publish": {"inner": "{{ result }}"}}],
            }
        ],
        "output": {"inner_y": "{{ vars.inner.y }}", "nested": "{{ tasks.child.result }}"},
    }
    return {"inner": inner, "outer": outer}


def _fan() -> dict[str, Any]:
    return {
        "version": 1,
        "tasks": [
            {
                "name": "each",
                "action": "wf.sh",
                "with": {"items": "{{ input.numbers }}", "concurrency": 5},
                "input": {
                    "cmd": 'sleep 0.05; echo \'{"i": {{ index }}, "sq": {{ item * item }}}\''
                },
            }
        ],
        "output": {
            "squares": "{{ tasks.each.result | map(attribute='result.sq') | list }}",
            "items": "{{ tasks.each.result | map(attribute='item') | list }}",
        },
    }


def _failing_input(field: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "tasks": [{"name": "speak", "action": "core.echo", **field}]}


def _loop() -> dict[str, Any]:
    """``begin`` → ``count``, which names itself again while ``vars.n`` is below 3."""
    again = {"when": "{{ vars.n < 3 }}", "publish": {"n": "{{ vars.n + 1 }}"}, "do": ["count"]}
    count = {"name": "count", "action": "core.noop", "input": {"message": "n={{ vars.n }}"}}
    return {
        "version": 1,
        "vars": {"n": 0},
        "tasks": [
            {"name": "begin", "action": "core.noop", "next": [{"do": ["count"]}]},
            {**count, "next": [again]},
        ],
        "output": {"n": "{{ vars.n }}"},
    }


WORKFLOWS: dict[str, dict[str, Any]] = {
    "sequence": _sequence(),
    "branch": _branch(),
    "handled_noop": handling(["noop"]),
    "handled_fail": handling(["report", "fail"]),
    "unhandled": handling([]),
    "join_completed": _joins(COMPLETED),
    "join_unreachable": _joins(SUCCEEDED),
    **_nested(),
    "fan": _fan(),
    "loop": _loop(),
    **HAZARDS,
    "escape": _failing_input({"input": {"message": "{{ ''.__class__ }}"}}),
    "shaped": {
        "version": 1,
        "tasks": [{"name": "speak", "action": "core.noop"}],
        "output": {"count": "{{ input.count }}"},
    },
    "undefined_input": _failing_input({"input": {"message": "{{ input.nothing_here }}"}}),
    "undefined_when": _failing_input(
        {
            "input": {"message": "hi"},
            "next": [{"when": "{{ result.missing > 1 }}", "do": ["noop"]}],
        }
    ),
    "verbatim": {
        "version": 1,
        "tasks": [{"name": "say", "action": "core.echo", "input": {"message": "{{ input.text }}"}}],
        "output": {"text": "{{ input.text }}"},
    },
    "secret": {
        "version": 1,
        "vars": {"kept": "{{ input.token }}"},
        "tasks": [
            {
                "name": "show",
                "action": "testing.secret_echo",
                "input": {"token": "{{ input.token }}", "note": "about {{ input.token }}"},
                "next": [{"when": SUCCEEDED, "publish": {"seen": "token {{ input.token }}"}}],
            }
        ],
        "output": {"kept": "{{ vars.kept }}", "seen": "{{ vars.seen }}"},
    },
}
