"""``/rules``: every rule with its trigger, next fire time, and its last events and verdicts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from attune.api.deps import DatabaseDep
from attune.rules import catalog
from attune.store.sqltypes import db_now
from attune.web.pages import render
from attune.web.viewer import ViewerDep

router = APIRouter()

RECENT = 5
"""How many of a rule's latest events its section lists."""


@router.get("/rules")
def rules_page(request: Request, viewer: ViewerDep, database: DatabaseDep) -> HTMLResponse:
    """Rules by ref; next fire times against the database clock; why nothing ran, when not."""
    with database.session_scope() as session:
        now = session.scalar(select(db_now()))
        views = catalog.list_rules(session)
        recent = {view.rule.id: catalog.activity(session, view, RECENT) for view in views}
    return render(request, viewer, "rules.html", now=now, views=views, recent=recent)
