"""Re-running an execution: its action and parameters again, secrets kept sealed server-side.

The stored parameters hold masks where secrets were; a re-run takes each secret from the
original's sealed secrets unless the caller supplies a new value, so no secret ever has to
travel back to a client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.errors import ExecutionNotFoundError
from attune.executions.secretbox import SecretBox
from attune.settings import Settings
from attune.store.models import EXECUTION_TABLE, MASK

_E = EXECUTION_TABLE.c


def rerun_request(
    session: Session, settings: Settings, execution_id: int, overrides: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The action ref and parameters of a re-run of ``execution_id`` with ``overrides`` applied."""
    row = session.execute(
        select(_E.action_ref, _E.parameters, _E.secrets).where(_E.id == execution_id)
    ).first()
    if row is None:
        raise ExecutionNotFoundError(execution_id)
    parameters = dict(row.parameters)
    if row.secrets is not None:
        sealed = SecretBox.for_settings(settings).decrypt(row.secrets)
        parameters.update(
            {name: value for name, value in sealed.items() if parameters.get(name) == MASK}
        )
    parameters.update(overrides)
    return row.action_ref, parameters
