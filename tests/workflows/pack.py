"""The ``wf`` pack of the workflow tests: a few leaf actions and the workflows of
:mod:`tests.workflows.flows`, written with :mod:`tests.pack_builder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pack_builder import header, workflow_action, write_pack, write_workflows
from tests.workflows.flows import WORKFLOWS

PACK = "wf"

SH = """#!/usr/bin/env bash
# Parameters arrive as dotenv on stdin; run the command line the workflow gave.
set -uo pipefail
source /dev/stdin
bash -c "$cmd"
"""

HOLD = """#!/usr/bin/env bash
# Mark the start, hold until the test releases it, mark a successful end.
set -uo pipefail
source /dev/stdin
touch "$dir/started-$$"
until [ -e "$dir/release" ]; do sleep 0.05; done
touch "$dir/done-$$"
echo '{"held": true}'
"""

ACTIONS: dict[str, dict[str, Any]] = {
    "sh": {
        "ref": "wf.sh",
        "description": "Run a command line; its stdout is parsed as JSON.",
        "runner_type": "shell",
        "entry_point": "sh.sh",
        "parameter_format": "dotenv",
        "output_format": "json",
        "parameters": {"cmd": {"type": "string", "required": True}},
    },
    "hold": {
        "ref": "wf.hold",
        "description": "Hold until released (native: only the kill tests' workers run it).",
        "runner_type": "native",
        "entry_point": "hold.sh",
        "parameter_format": "dotenv",
        "output_format": "json",
        "idempotent": True,
        "timeout": 3,
        "parameters": {"dir": {"type": "string", "required": True}},
    },
}

STRING = {"type": "string", "required": True}
INTEGER = {"type": "integer", "required": True}
PARAMETERS: dict[str, dict[str, Any]] = {
    "sequence": {"start": INTEGER},
    "branch": {"code": INTEGER, "mode": STRING},
    "inner": {"x": INTEGER},
    "outer": {"x": INTEGER},
    "fan": {"numbers": {"type": "array", "required": True}},
    "held": {"dir": STRING},
    "held_retry": {"dir": STRING},
    "lost": {"dir": STRING},
    "relay": {"dir": STRING},
    "relay_retry": {"dir": STRING},
    "race": {"dir": STRING},
    "refill": {"dir": STRING},
    "backoff": {"dir": STRING},
    "verbatim": {"text": STRING},
    "secret": {"token": {"type": "string", "secret": True, "required": True}},
    "shaped": {"count": {"type": "string", "required": True}},
}
OUTPUTS: dict[str, dict[str, Any]] = {
    "shaped": {"type": "object", "properties": {"count": {"pattern": "^[0-9]+$"}}},
}
"""The output schemas of the workflow actions that have one."""


def write_wf_pack(packs_dir: Path) -> Path:
    """Write pack ``wf`` under ``packs_dir``; returns its folder."""
    actions: dict[str, dict[str, Any]] = dict(ACTIONS)
    for name in WORKFLOWS:
        actions[name] = workflow_action(f"{PACK}.{name}", PARAMETERS.get(name))
        if name in OUTPUTS:
            actions[name]["output"] = OUTPUTS[name]
    pack_dir = write_pack(packs_dir, PACK, actions, header(PACK))
    for name, text in (("sh.sh", SH), ("hold.sh", HOLD)):
        (pack_dir / "actions" / name).write_text(text, encoding="utf-8")
        (pack_dir / "actions" / name).chmod(0o755)
    write_workflows(pack_dir, WORKFLOWS)
    return pack_dir
