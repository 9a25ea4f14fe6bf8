"""The run form: generated from a parameter map, read back and validated like ``attune run``."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.datastructures import FormData

from attune.access.keys import Scope, create_key
from attune.store.db import Database
from attune.store.models import MASK, Execution
from attune.web import forms
from tests.web.conftest import sign_in

PARAMETERS = {
    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8, "required": True},
    "count": {"type": "integer", "minimum": 1, "default": 3, "description": "How many."},
    "ratio": {"type": "number"},
    "dry_run": {"type": "boolean", "default": False},
    "color": {"enum": ["red", "green"]},
    "tags": {"type": "array"},
    "extra": {"type": "object"},
    "token": {"type": "string", "secret": True, "default": "hidden"},
}


def test_each_type_gets_its_widget_and_html_constraints() -> None:
    made = {field.name: field for field in forms.fields(PARAMETERS)}
    assert {name: field.widget for name, field in made.items()} == {
        "name": "text",
        "count": "integer",
        "ratio": "number",
        "dry_run": "checkbox",
        "color": "select",
        "tags": "json",
        "extra": "json",
        "token": "password",
    }
    assert made["name"].attributes == {"pattern": "^[a-z]+$", "maxlength": "8"}
    assert made["name"].required
    assert not made["count"].required
    assert made["count"].attributes == {"min": "1", "step": "1"}
    assert made["ratio"].attributes == {"step": "any"}
    assert made["color"].choices == (('"red"', "red"), ('"green"', "green"))
    assert made["count"].description == "How many."
    shown = forms.shown(PARAMETERS, {"tags": ["a"], "token": MASK})
    assert shown == {"count": "3", "dry_run": "false", "tags": '["a"]'}  # never the secret


def test_posted_text_is_parsed_per_type_and_problems_land_on_their_field() -> None:
    posted = FormData(
        [
            ("name", "abc"),
            ("count", "seven"),
            ("ratio", ""),
            ("dry_run", "false"),
            ("dry_run", "true"),
            ("color", '"blue"'),
            ("tags", '["x", 1]'),
            ("token", "s3cret"),
        ]
    )
    values, problems = forms.parse("t.a", PARAMETERS, posted)
    assert values == {"name": "abc", "dry_run": True, "tags": ["x", 1], "token": "s3cret"}
    assert problems == {
        "count": ["count: 'seven' is not an integer"],
        "color": ["color: not one of the offered choices"],
    }
    grouped = forms.by_field(["count: 0 is less than the minimum of 1", "odd"], PARAMETERS)
    assert grouped == {"count": ["count: 0 is less than the minimum of 1"], "": ["odd"]}


pg = pytest.mark.postgres


def _operator(web: TestClient, database: Database) -> str:
    with database.session_scope() as session:
        token = create_key(session, "ops", Scope.OPERATE)
    return sign_in(web, token)


@pg
def test_an_invalid_form_is_422_with_a_message_per_field_and_creates_nothing(
    web: TestClient, pg_database: Database
) -> None:
    csrf = _operator(web, pg_database)
    page = web.get("/actions/examples.list_example").text
    assert re.search(r'<input id="p-count" name="count"\s+type="number"', page)
    refused = web.post("/actions/examples.list_example", data={"csrf_token": csrf, "count": "0"})
    assert refused.status_code == 422
    assert 'id="p-count-error" role="alert">count: 0 is less than the minimum of 1' in refused.text
    assert 'value="0"' in refused.text  # what was typed stays in the field
    missing = web.post("/actions/core.echo", data={"csrf_token": csrf})
    assert missing.status_code == 422
    assert "message: required parameter is missing" in missing.text
    with pg_database.session_scope() as session:
        assert session.scalars(select(Execution)).all() == []


@pg
def test_a_valid_form_goes_to_the_new_execution_whose_page_masks_the_secret(
    web: TestClient, pg_database: Database
) -> None:
    csrf = _operator(web, pg_database)
    form = web.get("/actions/testing.secret_echo").text
    assert re.search(r'name="token"\s+type="password" autocomplete="off"', form)
    started = web.post(
        "/actions/testing.secret_echo",
        data={"csrf_token": csrf, "token": "s3cr3t-value", "note": "n"},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    execution_id = int(started.headers["location"].rsplit("/", 1)[1])
    with pg_database.session_scope() as session:
        row = session.get(Execution, execution_id)
        assert row is not None
        assert row.requested_by == "ops"
    page = web.get(started.headers["location"]).text
    assert MASK in page
    assert "s3cr3t-value" not in page
    # No worker serves this app: the page says why the execution failed, in its colour
    assert 'class="badge s-failed"' in page
    assert 'id="error" role="alert"' in page
    again = web.get(f"/executions/{execution_id}/rerun").text
    assert 'placeholder="unchanged"' in again
    assert "s3cr3t-value" not in again
