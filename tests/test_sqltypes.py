"""Statement pieces of attune.store.sqltypes, as each database receives them."""

from __future__ import annotations

import pytest
from sqlalchemy import Dialect, column, select
from sqlalchemy.dialects import postgresql, sqlite

from attune.store.models import HELD_STATUSES
from attune.store.sqltypes import in_constants, in_literals


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
def test_in_constants_writes_the_words_into_the_sql(dialect: Dialect) -> None:
    statement = select(column("id")).where(in_constants(column("status"), HELD_STATUSES))

    compiled = statement.compile(dialect=dialect)

    assert "status IN ('canceling', 'running')" in str(compiled)
    assert compiled.params == {}


def test_in_literals_binds_each_value() -> None:
    statement = select(column("id")).where(in_literals(column("status"), HELD_STATUSES))

    compiled = statement.compile(dialect=postgresql.dialect())

    assert sorted(compiled.params.values()) == ["canceling", "running"]
    assert "'running'" not in str(compiled)


def test_in_constants_refuses_anything_but_a_plain_word() -> None:
    with pytest.raises(ValueError, match="plain words"):
        in_constants(column("status"), ["running') OR ('1' = '1"])
