"""The rows gated claims lock: one per (action, key) of a concurrency policy."""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    String,
    Table,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import (
    Base,
)


class ConcurrencyGate(Base):
    """One row per (action, key) of a concurrency policy: the row gated claims lock."""

    __tablename__ = "concurrency_gate"

    action_ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    gate_key: Mapped[str] = mapped_column(String(64), primary_key=True)


GATE_TABLE = cast(Table, ConcurrencyGate.__table__)
"""These models' Core tables, for statements built once (:meth:`attune.store.db.Database.run`)."""
