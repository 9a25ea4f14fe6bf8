"""``Idempotency-Key``: the same principal's same key within 24 h starts one execution only.

The key is claimed (a row with no execution yet) before the execution is scheduled, so two
concurrent requests with one key cannot both start one: the second sees the claim.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attune.errors import IdempotencyKeyError
from attune.store.db import Database
from attune.store.models import IDEMPOTENCY_TABLE
from attune.store.sqltypes import cutoff

KEEP_S = 24 * 3600.0
"""How long a key keeps naming its execution."""

_K = IDEMPOTENCY_TABLE.c


@dataclass(frozen=True)
class Replay:
    """The key was used before with the same request: its execution (None while starting)."""

    execution_id: int | None


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _seen(session: Session, principal: str, key: str, digest: str) -> Replay | None:
    row = session.execute(
        select(_K.request_digest, _K.execution_id).where(_K.principal == principal, _K.key == key)
    ).first()
    if row is None:
        return None
    if row.request_digest != digest:
        raise IdempotencyKeyError(key)
    return Replay(row.execution_id)


def once(
    database: Database, principal: str, key: str, body: Any, start: Callable[[], int]
) -> tuple[int | None, bool]:
    """Run ``start`` (which returns an execution id) once per (principal, key, body).

    Returns the execution id and whether this call started it. The id is None while another
    request with the key is still starting its execution. Raises
    :class:`~attune.errors.IdempotencyKeyError` for the same key with another body. A claim
    whose start failed is released.
    """
    digest = _digest(body)
    with database.session_scope() as session:
        session.execute(
            delete(IDEMPOTENCY_TABLE).where(
                _K.principal == principal, _K.key == key, _K.created_at <= cutoff(KEEP_S)
            )
        )
        replay = _seen(session, principal, key, digest)
        if replay is None:
            try:
                with session.begin_nested():
                    session.execute(
                        insert(IDEMPOTENCY_TABLE).values(
                            principal=principal, key=key, request_digest=digest
                        )
                    )
            except IntegrityError:
                replay = _seen(session, principal, key, digest) or Replay(None)
    if replay is not None:
        return replay.execution_id, False
    claim = (_K.principal == principal, _K.key == key)
    try:
        execution_id = start()
    except BaseException:
        with database.session_scope() as session:
            session.execute(delete(IDEMPOTENCY_TABLE).where(*claim))
        raise
    with database.session_scope() as session:
        session.execute(update(IDEMPOTENCY_TABLE).where(*claim).values(execution_id=execution_id))
    return execution_id, True
