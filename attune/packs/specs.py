"""Validated packs and actions as values: :class:`PackSpec` and :class:`ActionSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attune.store.models import (
    OutputFormat,
    ParameterDelivery,
    ParameterFormat,
)

if TYPE_CHECKING:
    from attune.rules.spec import RuleSpec

MAX_TIMEOUT_S = 2**31 - 1
"""Largest ``timeout`` an action may declare (the column is a 32-bit integer)."""


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
    source_hash: str | None = None
    """The content hash of the action file (:func:`attune.packs.fingerprint.content_hash`)."""
    policy: Mapping[str, Any] | None = None
    """The validated ``idempotent``/``retry``/``concurrency`` as stored (None: none set)."""
    workflow: Mapping[str, Any] | None = None
    """A workflow action's file as read and validated (:mod:`attune.workflows.reader`)."""

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
            "source_hash": self.source_hash,
            "policy": None if self.policy is None else dict(self.policy),
            "workflow": None if self.workflow is None else dict(self.workflow),
        }


ACTION_COLUMNS = tuple(ActionSpec(ref="", runner_type="", entry_point="", source=Path()).columns())


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
    rules: tuple[RuleSpec, ...] = ()
    requirements_digest: str | None = None
    """sha256 of ``requirements.txt`` and the files it includes; None without one."""
    python: str | None = None
    """The ``python:`` version range of ``pack.yaml`` (PEP 440), if any."""
    warnings: tuple[str, ...] = ()
    """What loads but deserves a look (requirements not pinned with ``==``)."""
    source_hash: str | None = None
    """The content hash of ``pack.yaml`` with the pack's rules and requirements."""

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
            "requirements_digest": self.requirements_digest,
            "python": self.python,
            "source_hash": self.source_hash,
        }
