"""The hazard workflows of the ``wf`` test pack: held tasks for kills and lost messages,
retries, timeouts, cancels and failures across branches and items."""

from __future__ import annotations

from typing import Any

SUCCEEDED = "{{ succeeded() }}"
FAILED = "{{ failed() }}"
COMPLETED = "{{ completed() }}"
NOOP_FAILING = {"action": "core.noop", "input": {"exit_code": 3}}


def until_released(then: str) -> str:
    """A command line that waits for ``<input.dir>/release``, then runs ``then``."""
    return f'until [ -e "{{{{ input.dir }}}}/release" ]; do sleep 0.05; done; {then}'


def counting(succeed_from: int) -> str:
    """A command line that fails until its ``succeed_from``-th run (counted in input.dir)."""
    return (
        'n=$(ls "{{ input.dir }}" | wc -l); touch "{{ input.dir }}/run-$n"; '
        f"[ $n -ge {succeed_from - 1} ] || exit 1; echo '{{\"runs\": '$((n + 1))'}}'"
    )


def _held(retry: bool) -> dict[str, Any]:
    hold: dict[str, Any] = {
        "name": "hold",
        "action": "wf.hold",
        "input": {"dir": "{{ input.dir }}"},
        "next": [{"when": SUCCEEDED, "do": ["after"]}],
    }
    if retry:
        hold["retry"] = {"on": ["abandoned"], "max_attempts": 2}
    return {"version": 1, "tasks": [hold, {"name": "after", "action": "core.noop"}]}


def _relay(retry: bool) -> dict[str, Any]:
    """``first`` (a hold released beforehand, in ``<input.dir>/first``), then ``second`` (a
    hold in ``input.dir``), then ``after``: one runtime throughout (native)."""
    first = {
        "name": "first",
        "action": "wf.hold",
        "input": {"dir": "{{ input.dir }}/first"},
        "next": [{"when": SUCCEEDED, "do": ["second"]}],
    }
    second = {**_held(retry)["tasks"][0], "name": "second"}
    return {"version": 1, "tasks": [first, second, {"name": "after", "action": "core.noop"}]}


def _after(first: dict[str, Any]) -> dict[str, Any]:
    """``first`` (a task named ``first``), then ``after`` once it succeeded."""
    first = {**first, "name": "first", "next": [{"when": SUCCEEDED, "do": ["after"]}]}
    return {"version": 1, "tasks": [first, {"name": "after", "action": "core.noop"}]}


def _held_items(concurrency: int) -> dict[str, Any]:
    """A fan-out of 20 items that each wait for ``<input.dir>/release``."""
    return {
        "name": "each",
        "action": "wf.sh",
        "with": {"items": "{{ range(20) | list }}", "concurrency": concurrency},
        "input": {"cmd": until_released("echo '{}'")},
    }


def _nap(seconds: int, **workflow: Any) -> dict[str, Any]:
    nap = {"name": "nap", "action": "core.sleep", "input": {"seconds": seconds}}
    return {"version": 1, **workflow, "tasks": [nap]}


def _branches(fail_fast: bool) -> dict[str, Any]:
    """``split`` → ``bad`` (fails, unhandled) and ``slow`` → ``late``."""
    slow_next = [{"when": SUCCEEDED, "do": ["late"]}]
    return {
        "version": 1,
        "fail_fast": fail_fast,
        "tasks": [
            {"name": "split", "action": "core.noop", "next": [{"do": ["bad", "slow"]}]},
            {"name": "bad", **NOOP_FAILING},
            {"name": "slow", "action": "wf.sh", "input": {"cmd": SLOW}, "next": slow_next},
            {"name": "late", "action": "core.noop"},
        ],
    }


def _items(fail_fast: bool) -> dict[str, Any]:
    """Eight items two at a time; item 2 fails (item 3, its neighbour in flight, takes half a
    second, so the failure is taken in before a slot frees)."""
    each = {
        "name": "each",
        "action": "wf.sh",
        "with": {"items": "{{ range(8) | list }}", "concurrency": 2, "fail_fast": fail_fast},
        "input": {
            "cmd": "[ {{ item }} -ne 2 ] || exit 1; [ {{ item }} -ne 3 ] || sleep 0.5; "
            "echo '{\"i\": {{ item }}}'"
        },
    }
    return {"version": 1, "fail_fast": fail_fast, "tasks": [each]}


SLOW = "sleep 1; echo '{}'"

HAZARDS: dict[str, dict[str, Any]] = {
    "held": _held(retry=False),
    "held_retry": _held(retry=True),
    "lost": _after({"action": "wf.hold", "input": {"dir": "{{ input.dir }}"}}),
    "relay": _relay(retry=False),
    "relay_retry": _relay(retry=True),
    "race": _after(_held_items(concurrency=20)),
    "refill": {"version": 1, "tasks": [_held_items(concurrency=4)]},
    "backoff": _after(
        {
            "action": "wf.sh",
            "input": {"cmd": counting(3)},
            "retry": {
                "on": ["failed"],
                "max_attempts": 3,
                "delay_s": 0.5,
                "backoff": "exponential",
            },
        }
    ),
    "task_timeout": {
        "version": 1,
        "tasks": [
            {
                "name": "slow",
                "action": "core.sleep",
                "input": {"seconds": 30},
                "timeout": 1,
                "next": [
                    {"when": "{{ timed_out() }}", "publish": {"timed_out": True}, "do": ["noop"]}
                ],
            }
        ],
        "output": {"timed_out": "{{ vars.timed_out }}", "status": "{{ tasks.slow.status }}"},
    },
    "workflow_timeout": _nap(30, timeout=1),
    "cancel_inner": _nap(60),
    "cancel_outer": {"version": 1, "tasks": [{"name": "middle", "action": "wf.cancel_inner"}]},
    "timeout_nested": {
        "version": 1,
        "timeout": 1,
        "tasks": [{"name": "middle", "action": "wf.cancel_inner"}],
    },
    "branches_fail_fast": _branches(fail_fast=True),
    "branches_keep_going": _branches(fail_fast=False),
    "items_fail_fast": _items(fail_fast=True),
    "items_keep_going": _items(fail_fast=False),
}
