"""``/packs`` and ``/actions``: what is loaded, with each action's parameter schema."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette.exceptions import HTTPException

from attune.api.deps import DatabaseDep, Reader
from attune.api.problems import responses
from attune.api.schemas import ActionOut, PackOut
from attune.executions.params import json_schema
from attune.packs.upsert import find_action, find_actions
from attune.store.models import Action, Pack

router = APIRouter(tags=["catalog"], responses=responses(401, 403))


def _pack(pack: Pack) -> PackOut:
    return PackOut(
        ref=pack.ref,
        label=pack.label,
        description=pack.description,
        version=pack.version,
        author=pack.author,
        email=pack.email,
        tags=list(pack.tags),
        actions=sorted(action.ref for action in pack.actions),
    )


def _action(action: Action) -> ActionOut:
    return ActionOut(
        ref=action.ref,
        pack=action.ref.partition(".")[0],
        label=action.label,
        description=action.description,
        enabled=action.enabled,
        tags=list(action.tags),
        runner_type=action.runner_type,
        output_format=action.output_format,
        timeout_s=action.timeout_s,
        parameters=dict(action.parameters),
        parameters_schema=json_schema(action.parameters),
    )


@router.get("/packs", summary="List the loaded packs")
def list_packs(database: DatabaseDep, _: Reader) -> list[PackOut]:
    """Every loaded pack by ref."""
    with database.session_scope() as session:
        query = select(Pack).options(selectinload(Pack.actions)).order_by(Pack.ref)
        return [_pack(pack) for pack in session.scalars(query)]


@router.get("/packs/{ref}", summary="Show one pack", responses=responses(404))
def show_pack(ref: str, database: DatabaseDep, _: Reader) -> PackOut:
    """The pack ``ref`` and its actions' refs."""
    with database.session_scope() as session:
        query = select(Pack).options(selectinload(Pack.actions)).where(Pack.ref == ref)
        pack = session.scalars(query).one_or_none()
        if pack is None:
            raise HTTPException(404, f"pack {ref!r} is not loaded")
        return _pack(pack)


@router.get("/actions", summary="List the loaded actions")
def list_actions(database: DatabaseDep, _: Reader, pack: str | None = None) -> list[ActionOut]:
    """Every loaded action by ref, of one pack when ``pack`` is given."""
    with database.session_scope() as session:
        return [_action(action) for action in find_actions(session, pack)]


@router.get("/actions/{ref}", summary="Show one action", responses=responses(404))
def show_action(ref: str, database: DatabaseDep, _: Reader) -> ActionOut:
    """The action ``ref`` with its parameter schema."""
    with database.session_scope() as session:
        return _action(find_action(session, ref))
