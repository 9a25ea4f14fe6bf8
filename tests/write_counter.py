"""Counting the rows a block of code writes, from the SQL statements the engine sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE")
"""Statements that write rows."""


@dataclass
class WriteCounter:
    """Statements and parameter sets of every INSERT, UPDATE and DELETE seen, by verb."""

    statements: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WRITE_VERBS, 0))
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WRITE_VERBS, 0))

    @property
    def total_rows(self) -> int:
        """Row writes of any kind (an executemany counts each parameter set)."""
        return sum(self.rows.values())

    def seen(self, statement: str, parameters: Any, executemany: bool) -> None:
        """Count one statement sent to the database."""
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb in self.statements:
            self.statements[verb] += 1
            self.rows[verb] += len(parameters) if executemany else 1


@contextmanager
def counting_writes(engine: Engine) -> Iterator[WriteCounter]:
    """Count the writes ``engine`` sends while the block runs."""
    counter = WriteCounter()

    def listener(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        counter.seen(statement, parameters, many)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", listener)
