"""What a workflow's expressions see: ``input``, ``vars``, ``tasks``, ``result``, the outcome
functions, and the redaction of the run's secret values from whatever it stores."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.store.models import MASK, WORKFLOW_TASK_TABLE, ExecutionStatus

_T = WORKFLOW_TASK_TABLE.c
_FAILED = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.ABANDONED})


class TaskResults(Mapping[str, Any]):
    """``tasks.<name>``: the latest activation of a task, read from SQL only when named."""

    def __init__(self, session: Session, workflow_id: int, names: tuple[str, ...]) -> None:
        self._session = session
        self._workflow_id = workflow_id
        self._names = names
        self._seen: dict[str, dict[str, Any]] = {}

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._seen:
            self._session.flush()  # this advance's own changes first
            row = self._session.execute(
                select(_T.state, _T.result, _T.execution_id)
                .where(_T.workflow_id == self._workflow_id, _T.task == name)
                .order_by(_T.occurrence.desc())
                .limit(1)
            ).first()
            self._seen[name] = {
                "status": None if row is None else row.state,
                "result": None if row is None else row.result,
                "execution_id": None if row is None else row.execution_id,
            }
        return self._seen[name]

    def forget(self) -> None:
        """Read again on next use: an activation changed."""
        self._seen.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def outcome_functions(status: str) -> dict[str, Any]:
    """``succeeded()`` … ``completed()`` for a task that ended ``status``."""
    ended = ExecutionStatus(status) if status in set(ExecutionStatus) else None
    return {
        "succeeded": lambda: ended is ExecutionStatus.SUCCEEDED,
        "failed": lambda: ended in _FAILED,
        "timed_out": lambda: ended is ExecutionStatus.TIMEOUT,
        "abandoned": lambda: ended is ExecutionStatus.ABANDONED,
        "canceled": lambda: ended is ExecutionStatus.CANCELED,
        "completed": lambda: ended is not None and ended.is_terminal,
    }


class Redactor:
    """Masks the run's secret parameter values in what it stores (vars, output, errors)."""

    def __init__(self, secrets: Mapping[str, Any]) -> None:
        self._values = sorted(
            {str(value) for value in secrets.values() if str(value)}, key=len, reverse=True
        )

    def __call__(self, value: Any) -> Any:
        if not self._values:
            return value
        if isinstance(value, str):
            for secret in self._values:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, Mapping):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        if not isinstance(value, bool) and str(value) in self._values:
            return MASK
        return value


def json_size(value: Any) -> int:
    """Bytes of ``value`` as stored JSON."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())
