"""The API processes relaying the database's event notifications to their streams."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import String, Table
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import Base, _created

RELAY_TTL_S = 60
"""How long a relay counts as listening after it was last seen (the triggers' bound)."""
RELAY_SETTING = "attune.relay_live"
"""The transaction's setting where the execution event trigger keeps whether a relay listens
(``on`` | ``off``, migration 20261201_0024): looked up once per transaction, not per row."""


class EventRelay(Base):
    """An API process that LISTENs for the execution events, seen at ``seen_at``.

    The execution event trigger notifies only while a relay was seen within
    :data:`RELAY_TTL_S` (migration 20261201_0018): with no API server, a transition sends no
    notification, whose commit-time queue lock every committing writer would wait for.
    """

    __tablename__ = "event_relay"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = _created()


EVENT_RELAY_TABLE = cast(Table, EventRelay.__table__)
"""The relay model's Core table, for statements built once."""
