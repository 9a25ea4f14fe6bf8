"""Packs on disk for the tests and the benchmark: write a pack folder from plain data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SCRIPT = "#!/bin/sh\necho hello\n"


def header(ref: str = "demo", **changes: Any) -> dict[str, Any]:
    """A valid ``pack.yaml`` for pack ``ref``, with ``changes`` applied."""
    return {
        "ref": ref,
        "label": ref.title(),
        "description": f"The {ref} pack.",
        "version": "1.0.0",
        **changes,
    }


def action(ref: str = "demo.hello", **changes: Any) -> dict[str, Any]:
    """A valid action file for ``ref`` (entry point ``<name>.sh``), with ``changes`` applied."""
    name = ref.partition(".")[2]
    return {
        "ref": ref,
        "label": name.title(),
        "description": f"Say hello ({name}).",
        "runner_type": "shell",
        "entry_point": f"{name}.sh",
        "parameters": {
            "who": {"type": "string", "default": "world", "description": "Who to greet."},
            "times": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
        },
        **changes,
    }


def write_yaml(path: Path, document: object) -> None:
    """Write ``document`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def write_pack(
    packs_dir: Path,
    ref: str = "demo",
    actions: Mapping[str, Mapping[str, Any]] | None = None,
    pack_yaml: Mapping[str, Any] | None = None,
) -> Path:
    """Write pack ``ref`` under ``packs_dir``: its pack.yaml and ``actions`` (file stem → action,
    default: one valid ``hello`` action), each with a script at its entry point when that is a
    plain file name. Returns the pack's folder."""
    pack_dir = packs_dir / ref
    actions_dir = pack_dir / "actions"
    actions_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(pack_dir / "pack.yaml", header(ref) if pack_yaml is None else pack_yaml)
    if actions is None:
        actions = {"hello": action(f"{ref}.hello")}
    for stem, document in actions.items():
        write_yaml(actions_dir / f"{stem}.yaml", document)
        entry_point = document.get("entry_point")
        if isinstance(entry_point, str) and entry_point and "/" not in entry_point:
            script = actions_dir / entry_point
            if not script.exists():
                script.write_text(SCRIPT, encoding="utf-8")
                script.chmod(0o755)
    return pack_dir


def rule(ref: str = "demo.greet", **changes: Any) -> dict[str, Any]:
    """A valid interval-timer rule running ``demo.hello``, with ``changes`` applied."""
    return {
        "ref": ref,
        "description": "Greet every minute.",
        "trigger": {"type": "core.intervaltimer", "params": {"interval": 1, "unit": "minutes"}},
        "action": {"ref": "demo.hello", "parameters": {"who": "{{ trigger.scheduled_at }}"}},
        **changes,
    }


def write_rules(packs_dir: Path, rules: dict[str, dict[str, Any]]) -> Path:
    """Write pack ``demo`` (action ``hello``) with exactly ``rules`` (file stem → rule)."""
    pack_dir = write_pack(packs_dir)
    rules_dir = pack_dir / "rules"
    rules_dir.mkdir(exist_ok=True)
    for path in rules_dir.iterdir():
        path.unlink()
    for stem, document in rules.items():
        write_yaml(rules_dir / f"{stem}.yaml", document)
    return pack_dir


def workflow_action(ref: str, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A workflow action ``ref`` whose file is ``workflows/<name>.yaml``."""
    name = ref.partition(".")[2]
    return {
        "ref": ref,
        "description": f"The {name} workflow.",
        "runner_type": "workflow",
        "entry_point": f"workflows/{name}.yaml",
        "parameters": dict(parameters or {}),
    }


def write_workflows(pack_dir: Path, workflows: Mapping[str, Mapping[str, Any]]) -> None:
    """Write each workflow file (name → document) under the pack's ``actions/workflows/``."""
    folder = pack_dir / "actions" / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in workflows.items():
        write_yaml(folder / f"{name}.yaml", document)
