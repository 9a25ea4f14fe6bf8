"""execution_event: a transaction looks for a listening relay once, not once per row

The execution event trigger looked ``event_relay`` up for every execution row it saw: the
sweep abandoning a thousand executions ran a thousand lookups (about a tenth of its time, with
no API server listening). The first row a transaction changes now looks the relay up and keeps
the answer in the transaction's setting ``attune.relay_live`` (``on`` | ``off``, gone at its
end); the trigger's WHEN skips the function for every row while it is ``off``, and while it is
``on`` the function notifies without looking again. The sweep sets it before its one statement
(``attune.liveness.sweep``). Within a transaction ``now()`` does not move, so the answer only
changes if a relay registers meanwhile, which it follows with a reset of its streams anyway.
The payload is unchanged. SQLite: nothing (it has no such trigger).

Revision ID: 20261201_0024
Revises: 20261201_0023
Create Date: 2026-12-01 19:20:00
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "20261201_0024"
down_revision: str | None = "20261201_0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0018's function (its relay check, then the notification), edited: the relay is looked up
# once per transaction and its answer kept in the transaction's setting.
_LIVE = "    live text := current_setting('attune.relay_live', true);\n"
_ONCE_CHECK = """IF live IS NULL OR live = '' THEN
        live := CASE WHEN EXISTS (
            SELECT 1 FROM event_relay WHERE seen_at > now() - interval '60 seconds'
        ) THEN 'on' ELSE 'off' END;
        PERFORM set_config('attune.relay_live', live, true);
    END IF;
    IF live = 'off' THEN
        RETURN NULL;
    END IF;
    """


def _event_function(once: bool) -> str:
    """``attune_execution_event()`` as 0018 made it, or (``once``) looking the relay up once
    per transaction."""
    relays = context.script.get_revision("20261201_0018").module
    if not once:
        return str(relays._FUNCTION.format(check=relays._CHECK, notify=relays._NOTIFY))
    declared = "DECLARE\n    sent boolean;\n"
    function: str = relays._FUNCTION
    if function.count(declared) != 1:
        raise RuntimeError(f"attune_execution_event of 0018 has no single {declared!r}")
    function = function.replace(declared, declared + _LIVE)
    return function.format(check=_ONCE_CHECK, notify=relays._NOTIFY)


_TRIGGER = (
    "CREATE TRIGGER execution_event AFTER INSERT OR UPDATE OF status ON execution"
    " FOR EACH ROW{when} EXECUTE FUNCTION attune_execution_event()"
)
_WHEN = " WHEN (current_setting('attune.relay_live', true) IS DISTINCT FROM 'off')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_event_function(once=True))
    op.execute("DROP TRIGGER execution_event ON execution")
    op.execute(_TRIGGER.format(when=_WHEN))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER execution_event ON execution")
    op.execute(_TRIGGER.format(when=""))
    op.execute(_event_function(once=False))
