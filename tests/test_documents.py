"""YAML documents: JSON-like values only, merges and aliases within bounds, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from attune.errors import DocumentError
from attune.packs.documents import MAX_VALUES, parse, read_mapping


def refused(text: str) -> str:
    with pytest.raises(DocumentError) as caught:
        parse(text, "doc.yaml")
    assert caught.value.source == "doc.yaml"
    return caught.value.problem


def test_scalars_follow_yaml_1_1_as_pyyaml_reads_them() -> None:
    document = parse("a: 1\nb: 1.5\nc: true\nd: null\ne: '1'\nf: yes\ng: 0x10\nh: ~\ni: text\n")

    assert document == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": "1",
        "f": True,
        "g": 16,
        "h": None,
        "i": "text",
    }


def test_an_empty_text_has_no_document() -> None:
    assert parse("") is None
    assert parse("# only a comment\n") is None


def test_aliases_and_merge_keys_work_within_bounds() -> None:
    text = (
        "base: &base {type: integer, minimum: 0}\n"
        "other: &other {minimum: 5, maximum: 9}\n"
        "count: {<<: *base, default: 3}\n"
        "ranged: {<<: [*other, *base], minimum: 1}\n"
        "copy: *base\n"
    )

    document = parse(text)

    assert document["count"] == {"type": "integer", "minimum": 0, "default": 3}
    assert document["ranged"] == {"type": "integer", "minimum": 1, "maximum": 9}
    assert document["copy"] == document["base"]
    assert document["copy"] is not document["base"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: !!set {x, y}\n", "line 1: a: the YAML tag tag:yaml.org,2002:set is not supported"),
        ("a: !custom x\n", "line 1: a: a YAML value tagged !custom is not JSON"),
        ("a: !!binary aGk=\n", "line 1: a: a YAML binary is not JSON"),
        ("a: !!python/object:os.system x\n", "a YAML value tagged tag:yaml.org,2002:python/object"),
        ("a: 2024-01-01\n", "line 1: a: a YAML date is not JSON (quote it as a string)"),
        ("a:\n  b: [1, .inf]\n", "line 2: a.b.1: .inf is not a JSON number"),
        ("[1, 2]: x\n", "line 1: a key must be a string, not a list or mapping"),
        ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a'"),
        ("1: one\n", "line 1: the key 1 is not a string"),
        ("a: {<<: 3}\n", "line 1: a: a << merge takes a mapping or a list of mappings"),
        ("a: &a {<<: *a}\n", "nested deeper than 64 levels"),
        ("a: [unclosed\n", "line 2, column 1: invalid YAML"),
    ],
)
def test_what_json_cannot_hold_is_refused_with_its_line(text: str, problem: str) -> None:
    assert problem in refused(text)


def test_an_alias_bomb_stops_at_the_value_budget() -> None:
    layers = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    layers += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)
    ]

    assert f"expands to more than {MAX_VALUES} values" in refused("\n".join(layers) + "\n")


def test_read_mapping_refuses_a_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")

    with pytest.raises(DocumentError, match="the document must be a mapping, got a list"):
        read_mapping(path)


def test_read_mapping_reads_a_mapping_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffref: demo\n".encode())

    assert read_mapping(path) == {"ref": "demo"}


def test_read_mapping_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"nope\.yaml: missing"):
        read_mapping(tmp_path / "nope.yaml")
