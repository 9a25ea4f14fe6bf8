"""Route dependencies: the app's database and settings, and the principal per scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from attune.access.keys import Principal, Scope
from attune.api.auth import require
from attune.settings import Settings
from attune.store.asyncreader import AsyncReader
from attune.store.db import Database


async def _database(request: Request) -> Database:  # async: no thread hop
    database: Database = request.app.state.database
    return database


async def _async_reader(request: Request) -> AsyncReader | None:
    reader: AsyncReader | None = request.app.state.reader
    return reader


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(_database)]
"""The app's database."""
AsyncReaderDep = Annotated[AsyncReader | None, Depends(_async_reader)]
"""The app's asyncio reader of PostgreSQL (None on SQLite)."""
SettingsDep = Annotated[Settings, Depends(_settings)]
"""The app's settings."""
Reader = Annotated[Principal, Depends(require(Scope.READ))]
"""A principal with at least the ``read`` scope."""
Operator = Annotated[Principal, Depends(require(Scope.OPERATE))]
"""A principal with at least the ``operate`` scope."""
