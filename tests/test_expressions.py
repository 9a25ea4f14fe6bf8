"""The expression sandbox on its own: dotted names read mapping keys first, escapes still fail."""

from __future__ import annotations

import pytest

from attune.errors import ExpressionError
from attune.expressions import compile_value


def test_a_parameter_named_like_a_dict_method_is_its_value() -> None:
    """Given inputs called items, keys and values, ``input.items`` is the list, not a method."""
    template = compile_value(
        {"all": "{{ input.items }}", "first": "{{ input.items[0] }}", "keys": "{{ input.keys }}"},
        ["input"],
    )
    context = {"input": {"items": ["a", "b"], "keys": 3}}

    assert template.render(context) == {"all": ["a", "b"], "first": "a", "keys": 3}


def test_a_name_a_mapping_lacks_is_still_an_error_and_escapes_still_fail() -> None:
    context = {"input": {"items": []}}

    with pytest.raises(ExpressionError, match="nothing"):
        compile_value("{{ input.nothing }}", ["input"], "tasks[0].input").render(context)
    with pytest.raises(ExpressionError, match="__class__"):
        compile_value("{{ input.__class__.__mro__ }}", ["input"]).render(context)


def test_a_dotted_name_renders_what_the_sandbox_renders() -> None:
    """Given dotted names (read key by key without Jinja), each value is the one Jinja gives,
    and whatever is not a mapping's key still goes through Jinja, with its error."""
    from attune.expressions import environment

    context = {
        "trigger": {"body": {"n": 3, "msg": "hi", "items": [1], "none": None}, "text": "ab"},
        "rule": {"ref": "core.r"},
    }
    paths = ["trigger.body.n", "trigger.body.msg", "trigger.body.items", " trigger.body.none "]
    paths += ["trigger", "rule.ref", "true", "none", "trigger.text.upper"]
    for path in paths:
        expected = environment().compile_expression(path, undefined_to_none=False)(**context)
        rendered = compile_value("{{" + path + "}}", ["trigger", "rule"]).render(context)
        assert rendered == expected or (callable(rendered) and callable(expected)), path
    with pytest.raises(ExpressionError, match="has no attribute 'nothing'"):
        compile_value("{{ trigger.body.msg.nothing }}", ["trigger"]).render(context)
    with pytest.raises(ExpressionError, match="missing"):
        compile_value("{{ trigger.missing }}", ["trigger"]).render(context)
