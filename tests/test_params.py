"""Parameters: the flat map as JSON Schema, resolution, masking, CLI values, definition checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from attune.errors import ParameterError
from attune.executions.param_arguments import parse_cli_value
from attune.executions.param_definitions import definition_problems
from attune.executions.params import json_schema, mask, resolve, secret_names
from attune.store.models import MASK

PARAMETERS: dict[str, Any] = {
    "url": {"type": "string", "required": True, "description": "Where to send it."},
    "method": {"type": "string", "enum": ["GET", "POST"], "default": "GET"},
    "count": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
    "ratio": {"type": "number"},
    "verbose": {"type": "boolean", "default": False},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
    "tags": {"type": "array", "items": {"type": "string"}},
    "token": {"type": "string", "secret": True, "minLength": 8},
    "anything": {"description": "no type: any JSON value"},
    "maybe": {"type": ["integer", "null"]},
}


def problems_of(values: dict[str, Any], parameters: dict[str, Any] = PARAMETERS) -> list[str]:
    with pytest.raises(ParameterError) as caught:
        resolve("demo.act", parameters, values)
    assert caught.value.ref == "demo.act"
    return list(caught.value.problems)


# --- json_schema, secret_names, mask -----------------------------------------------------------


def test_json_schema_moves_the_inline_keys_out_of_the_properties() -> None:
    schema = json_schema(PARAMETERS)

    assert schema["type"] == "object"
    assert schema["required"] == ["url"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["url"] == {"type": "string", "description": "Where to send it."}
    assert schema["properties"]["token"] == {"type": "string", "minLength": 8}
    assert list(schema["properties"]) == list(PARAMETERS)


def test_json_schema_of_no_parameters_accepts_only_the_empty_object() -> None:
    assert json_schema({}) == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_secret_names_lists_only_parameters_marked_secret_true() -> None:
    parameters = {"a": {"secret": True}, "b": {"secret": False}, "c": {}}

    assert secret_names(parameters) == frozenset({"a"})
    assert secret_names(PARAMETERS) == frozenset({"token"})


def test_mask_replaces_secret_values_and_keeps_the_rest() -> None:
    values = {"url": "http://x", "token": "s3cr3t-value"}

    masked = mask(PARAMETERS, values)

    assert masked == {"url": "http://x", "token": MASK}
    assert values["token"] == "s3cr3t-value"


# --- resolve ----------------------------------------------------------------------------------


def test_resolve_fills_the_defaults_and_keeps_the_given_values() -> None:
    resolved = resolve("demo.act", PARAMETERS, {"url": "http://x", "count": 7})

    assert resolved == {
        "url": "http://x",
        "count": 7,
        "method": "GET",
        "verbose": False,
        "headers": {},
    }


def test_resolve_copies_mutable_defaults() -> None:
    parameters = copy.deepcopy(PARAMETERS)

    resolved = resolve("demo.act", parameters, {"url": "u"})
    resolved["headers"]["X-Changed"] = "yes"

    assert parameters["headers"]["default"] == {}


def test_a_required_parameter_with_a_default_is_satisfied_by_it() -> None:
    parameters = {"level": {"type": "integer", "required": True, "default": 3}}

    assert resolve("demo.act", parameters, {}) == {"level": 3}


def test_resolve_reports_every_problem_at_once_each_naming_its_parameter() -> None:
    problems = problems_of(
        {"count": 0, "method": "PUT", "verbose": "yes", "colour": "red", "tags": ["a", 1]}
    )

    assert len(problems) == 6
    joined = "\n".join(problems)
    assert "url: required parameter is missing" in joined
    assert "colour: unknown parameter" in joined
    assert any(p.startswith("count: ") and "minimum" in p for p in problems)
    assert any(p.startswith("method: ") and "'PUT'" in p for p in problems)
    assert any(p.startswith("verbose: ") and "boolean" in p for p in problems)
    assert any(p.startswith("tags.1: ") and "string" in p for p in problems)


def test_an_unknown_parameter_lists_the_known_ones() -> None:
    (problem,) = problems_of({"url": "u", "cuont": 3})

    assert problem.startswith("cuont: unknown parameter")
    assert "count" in problem


def test_an_action_without_parameters_refuses_any() -> None:
    (problem,) = problems_of({"x": 1}, parameters={})

    assert problem == "x: unknown parameter (the action takes: none)"


def test_a_secret_value_never_appears_in_a_problem() -> None:
    problems = problems_of({"url": "u", "token": "short"})

    assert problems == ["token: the value does not satisfy minLength=8"]


def test_a_boolean_is_not_an_integer_and_an_integer_is_a_number() -> None:
    assert problems_of({"url": "u", "count": True})[0].startswith("count: True is not of type")
    assert resolve("demo.act", PARAMETERS, {"url": "u", "ratio": 2})["ratio"] == 2


def test_a_union_type_accepts_each_of_its_types() -> None:
    assert resolve("demo.act", PARAMETERS, {"url": "u", "maybe": None})["maybe"] is None
    assert resolve("demo.act", PARAMETERS, {"url": "u", "maybe": 4})["maybe"] == 4
    assert problems_of({"url": "u", "maybe": "4"})[0].startswith("maybe: ")


def test_a_non_string_name_is_refused() -> None:
    assert problems_of({1: "x"})[0] == "1: a parameter name must be a string"  # type: ignore[dict-item]


def test_resolve_does_not_change_the_values_it_is_given() -> None:
    values = {"url": "u"}

    resolve("demo.act", PARAMETERS, values)

    assert values == {"url": "u"}


def test_a_very_long_bad_value_is_cut_short_in_the_message() -> None:
    (problem,) = problems_of({"url": "u", "count": "x" * 10_000})

    assert len(problem) < 300


def test_resolve_is_fast_on_the_hot_path() -> None:
    import time

    values = {"url": "http://x", "count": 3, "token": "abcdefghij"}
    resolve("demo.act", PARAMETERS, values)
    started = time.perf_counter()
    for _ in range(1000):
        resolve("demo.act", PARAMETERS, values)
    per_call_s = (time.perf_counter() - started) / 1000

    assert per_call_s < 0.001


# --- parse_cli_value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("count", "3", 3),
        ("count", " -12 ", -12),
        ("ratio", "2", 2),
        ("ratio", "0.25", 0.25),
        ("ratio", "1e3", 1000.0),
        ("verbose", "true", True),
        ("verbose", "False", False),
        ("verbose", "yes", True),
        ("verbose", "0", False),
        ("url", "123", "123"),
        ("url", " spaced ", " spaced "),
        ("method", "POST", "POST"),
        ("headers", '{"X-A": "1"}', {"X-A": "1"}),
        ("tags", '["a", "b"]', ["a", "b"]),
        ("anything", "[1, 2]", [1, 2]),
        ("anything", "7", 7),
        ("anything", "plain words", "plain words"),
        ("maybe", "5", 5),
        ("maybe", "null", None),
        ("maybe", "", None),
    ],
)
def test_a_cli_value_is_converted_by_the_parameter_type(name: str, raw: str, expected: Any) -> None:
    value = parse_cli_value("demo.act", PARAMETERS, name, raw)

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "raw", "needle"),
    [
        ("count", "three", "count: 'three' is not an integer"),
        ("count", "3.5", "count: '3.5' is not an integer"),
        ("count", "1_000", "is not an integer"),
        ("ratio", "nan", "ratio: 'nan' is not a number"),
        ("ratio", "inf", "is not a number"),
        ("verbose", "maybe", "verbose: 'maybe' is not a boolean"),
        ("headers", "{not json", "headers: '{not json' is not an object"),
        ("headers", "[1]", "is not an object"),
        ("tags", '{"a": 1}', "tags: '{\"a\": 1}' is not an array"),
        ("maybe", "x", "maybe: 'x' is not an integer or a null"),
    ],
)
def test_an_unparsable_cli_value_raises_naming_the_parameter(
    name: str, raw: str, needle: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_cli_value("demo.act", PARAMETERS, name, raw)

    assert needle in str(caught.value)
    assert caught.value.ref == "demo.act"


def test_an_unknown_cli_name_raises() -> None:
    with pytest.raises(ParameterError, match="colour: unknown parameter"):
        parse_cli_value("demo.act", PARAMETERS, "colour", "red")


def test_an_unparsable_secret_cli_value_is_not_echoed() -> None:
    parameters = {"pin": {"type": "integer", "secret": True}}

    with pytest.raises(ParameterError) as caught:
        parse_cli_value("demo.act", parameters, "pin", "hunter2")

    assert "hunter2" not in str(caught.value)
    assert "pin: the value is not an integer" in str(caught.value)


# --- definition_problems ----------------------------------------------------------------------


def test_a_valid_definition_has_no_problems() -> None:
    assert definition_problems(PARAMETERS) == []
    assert definition_problems({}) == []


@pytest.mark.parametrize(
    ("parameters", "needle"),
    [
        (["a", "b"], "parameters: must be a mapping of name → property, got a list"),
        ({"x": "string"}, "parameters.x: must be a mapping of JSON Schema keywords"),
        ({"my-param": {"type": "string"}}, "parameters.my-param: the name must match"),
        ({"x": {"type": "string", "required": "yes"}}, "parameters.x.required: must be true or"),
        ({"x": {"type": "string", "secret": 1}}, "parameters.x.secret: must be true or false"),
        ({"x": {"type": "intger"}}, "parameters.x.type: 'intger' is not valid"),
        ({"x": {"type": "integer", "minimum": "1"}}, "parameters.x.minimum: '1' is not of type"),
        ({"x": {"defualt": 3}}, "parameters.x.defualt: unknown keyword"),
        ({"x": {"type": "integer", "default": "3"}}, "parameters.x.default: '3' is not of type"),
        ({"x": {"type": "integer", "maximum": 5, "default": 9}}, "parameters.x.default: 9 is"),
        ({"x": {"enum": ["a", "b"], "default": "c"}}, "parameters.x.default: 'c' is not one of"),
        ({"x": {"type": "array", "items": {"type": "integer"}, "default": ["a"]}}, "default"),
        ({"x": {"description": 3}}, "parameters.x.description: must be a string, got an integer"),
        ({"x": {"examples": "a"}}, "parameters.x.examples: must be a list, got a string"),
    ],
)
def test_a_bad_definition_is_reported_naming_the_parameter_and_keyword(
    parameters: object, needle: str
) -> None:
    problems = definition_problems(parameters)

    assert any(needle in problem for problem in problems), problems


def test_definition_problems_lists_every_bad_parameter() -> None:
    problems = definition_problems(
        {"a": {"type": "nope"}, "b": {"required": "no"}, "c": {"type": "string"}}
    )

    assert [problem.split(":")[0] for problem in problems] == [
        "parameters.a.type",
        "parameters.b.required",
    ]


def test_a_value_that_is_not_json_is_a_problem_not_a_crash() -> None:
    import datetime

    day = datetime.date(2024, 1, 1)

    for spec in ({"default": day}, {"enum": [day]}):
        assert definition_problems({"x": spec})[0].startswith("parameters.x: not a JSON value")
