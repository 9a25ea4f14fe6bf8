"""worker_event: a worker's status change notifies only while an API relay may listen

The worker event trigger notified ``attune_worker_event`` for every worker row whose status
or pid changed, whether or not an API server was there to relay it: the sweep deactivating a
thousand dead workers built and sent a thousand notifications nobody read (about a third of
its worker UPDATE). Its WHEN now also skips the function while the transaction's setting
``attune.relay_live`` is ``off``: the answer the execution event trigger (revision 0024) or
the sweep (``attune.liveness.sweep``) found for "is a relay listening?". A transaction that
has not asked (the setting unset) notifies as before; the payload is unchanged. SQLite:
nothing (it has no such trigger).

Revision ID: 20261202_0028
Revises: 20261201_0024
Create Date: 2026-12-02 01:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_0028"
down_revision: str | None = "20261201_0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGER = (
    "CREATE TRIGGER worker_event_update AFTER UPDATE OF status, pid ON worker FOR EACH ROW"
    " WHEN ((OLD.status IS DISTINCT FROM NEW.status OR OLD.pid IS DISTINCT FROM NEW.pid){relay})"
    " EXECUTE FUNCTION attune_worker_event()"
)
_RELAY = " AND current_setting('attune.relay_live', true) IS DISTINCT FROM 'off'"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER worker_event_update ON worker")
    op.execute(_TRIGGER.format(relay=_RELAY))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER worker_event_update ON worker")
    op.execute(_TRIGGER.format(relay=""))
