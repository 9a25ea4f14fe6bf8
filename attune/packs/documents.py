"""Documents: YAML files read safely into JSON-like values, hostile input refused cheaply.

A file is refused unread when it is not a regular file or is over :data:`MAX_DOCUMENT_BYTES`
(:func:`attune.packs.fingerprint.read_bytes`); then it must be UTF-8 and hold one YAML
document. libyaml composes the node graph (capping nesting at 1,000 levels; an older libyaml,
which does not, is not used) and this module builds the values itself, in one walk that:

- allows only JSON-like values: strings, integers, finite floats, booleans, null, lists and
  string-keyed mappings (a YAML date, a binary or any other tag is refused with its line);
- refuses a mapping that repeats a key, where YAML would silently keep the last one;
- visits an alias anew at each use and stops after :data:`MAX_VALUES` values or
  :data:`MAX_DEPTH` levels, so an alias bomb or a recursive alias costs a bounded walk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from attune.errors import DocumentError
from attune.packs.fingerprint import MAX_DOCUMENT_BYTES as MAX_DOCUMENT_BYTES
from attune.packs.fingerprint import read_bytes

MAX_VALUES = 100_000
"""Most values one document may hold, counting each use of an alias in full."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists in one document."""

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_BOOL = "tag:yaml.org,2002:bool"
_SCALAR_TAGS = {
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": bool,
    "tag:yaml.org,2002:null": type(None),
}
_NAMED_TAGS = {"tag:yaml.org,2002:timestamp": "date", "tag:yaml.org,2002:binary": "binary"}


def read_mapping(path: Path) -> dict[str, Any]:
    """The mapping held by YAML file ``path``; raises :class:`DocumentError` naming the file."""
    return mapping_of(read_bytes(path), str(path))


def mapping_of(data: bytes, source: str) -> dict[str, Any]:
    """The mapping held by the bytes ``data`` of YAML file ``source``; raises
    :class:`DocumentError` naming the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        raise DocumentError(source, problem) from None
    if not text or text.isspace():
        raise DocumentError(source, "the file is empty")
    document = parse(text, source)
    if document is None:
        raise DocumentError(source, "the file is empty (no YAML document, only comments)")
    if not isinstance(document, dict):
        raise DocumentError(source, f"the document must be a mapping, got {kind_of(document)}")
    return document


def parse(text: str, source: str = "<string>") -> Any:
    """The JSON-like value of the one YAML document in ``text`` (None when there is none)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        raise DocumentError(source, _yaml_problem(error)) from None
    except yaml.YAMLError as error:
        raise DocumentError(source, f"invalid YAML: {error}") from None
    except RecursionError:
        raise DocumentError(source, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    if node is None:
        return None
    return _Builder(source).build(node, (), 1)


def _libyaml_version() -> tuple[int, ...]:
    try:
        from yaml import _yaml
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return ()
    return tuple(int(part) for part in _yaml.get_version_string().split(".")[:3])


_CACHED_SCALAR_LENGTH = 64
_BASE_RESOLVE: Callable[..., Any] = yaml.resolver.BaseResolver.resolve


@functools.lru_cache(maxsize=4096)
def _plain_tag(value: str) -> str:
    """The tag YAML 1.1 gives plain scalar ``value`` (its regexes run once per value)."""
    return str(_BASE_RESOLVE(_RESOLVER, ScalarNode, value, (True, False)))


def _resolve(self: yaml.resolver.BaseResolver, kind: type[Node], value: Any, implicit: Any) -> Any:
    """A loader's ``resolve``, short-cut: the safe loaders have no path resolvers, so a node's
    tag depends on its kind and, for a plain scalar, on its value only (cached when short)."""
    if kind is not ScalarNode:
        return _MAP if kind is MappingNode else _SEQ
    if not implicit[0]:  # quoted: a string
        return _STR
    if len(value) <= _CACHED_SCALAR_LENGTH:
        return _plain_tag(value)
    return _BASE_RESOLVE(self, kind, value, implicit)


class _CLoader(yaml.CSafeLoader):
    """libyaml's safe loader, caching tags (:func:`_resolve`)."""

    resolve = _resolve


class _PyLoader(yaml.SafeLoader):
    """PyYAML's own safe loader, caching tags (:func:`_resolve`)."""

    resolve = _resolve


_RESOLVER = yaml.resolver.Resolver()

# libyaml 0.2.6 caps nesting; an older one can overflow the C stack on a deeply nested file.
_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = (
    _CLoader
    if getattr(yaml, "__with_libyaml__", False) and _libyaml_version() >= (0, 2, 6)
    else _PyLoader
)


class _Builder:
    """One walk over a composed node graph, building values and counting them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.budget = MAX_VALUES

    def build(self, node: Node, path: tuple[object, ...], depth: int) -> Any:
        """The value of ``node`` at ``path`` (keys from the top), ``depth`` levels down."""
        self.budget -= 1
        if self.budget < 0:
            raise self.refuse(node, path, f"expands to more than {MAX_VALUES} values (alias bomb?)")
        if depth > MAX_DEPTH:
            raise self.refuse(node, path, f"nested deeper than {MAX_DEPTH} levels")
        if type(node) is ScalarNode:
            if node.tag == _STR and "\0" not in node.value:  # the common case, inline
                return node.value
            return self.scalar(node, path)
        if type(node) is SequenceNode and node.tag == _SEQ:
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if type(node) is MappingNode and node.tag == _MAP:
            return self.mapping(node, path, depth)
        raise self.refuse(node, path, f"the YAML tag {node.tag} is not supported")

    def scalar(self, node: ScalarNode, path: tuple[object, ...]) -> Any:
        """A string as written, or a YAML 1.1 int, float, bool or null."""
        if node.tag == _STR:
            if "\0" in node.value:
                raise self.refuse(node, path, "a NUL character cannot be stored")
            return node.value
        if node.tag in _SCALAR_TAGS:
            value = (
                _scalar_value(node.tag, node.value)
                if len(node.value) <= _CACHED_SCALAR_LENGTH
                else _construct(node.tag, node.value)
            )
            if isinstance(value, float) and not math.isfinite(value):
                raise self.refuse(node, path, f"{node.value} is not a JSON number")
            return value
        name = _NAMED_TAGS.get(node.tag, f"value tagged {node.tag}")
        raise self.refuse(node, path, f"a YAML {name} is not JSON (quote it as a string)")

    def mapping(self, node: MappingNode, path: tuple[object, ...], depth: int) -> dict[str, Any]:
        """A string-keyed mapping; ``<<`` merges apply under the keys written beside them."""
        merged: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for source in self.merge_sources(value_node, path):
                    for key, value in self.build(source, path, depth + 1).items():
                        merged.setdefault(key, value)
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.refuse(key_node, path, "a key must be a string, not a list or mapping")
            if key_node.tag not in (_STR, _BOOL) or (key_node.tag == _BOOL and key_node.style):
                raise self.refuse(key_node, path, f"the key {key_node.value} is not a string")
            # YAML 1.1 reads a bare ``on:`` (``yes``, ``off``…) key as a boolean: keys are
            # names here, so the key is the word as written.
            key = key_node.value
            if key in own:
                raise self.refuse(key_node, path, f"duplicate key {key!r}")
            own[key] = self.build(value_node, (*path, key), depth + 1)
        return merged | own if merged else own

    def merge_sources(self, node: Node, path: tuple[object, ...]) -> list[MappingNode]:
        """The mappings a ``<<`` key merges: one mapping, or a list of them (first wins)."""
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        raise self.refuse(node, path, "a << merge takes a mapping or a list of mappings")

    def refuse(self, node: Node, path: tuple[object, ...], problem: str) -> DocumentError:
        """The error for ``problem`` at ``node``, naming its line and the keys leading to it."""
        keys = ".".join(str(part) for part in path[:10]) + ("…" if len(path) > 10 else "")
        where = f"line {node.start_mark.line + 1}: " + (f"{keys}: " if keys else "")
        return DocumentError(self.source, where + problem)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _construct(tag: str, value: str) -> Any:
    """The int, float, bool or None that YAML 1.1 makes of scalar ``value`` tagged ``tag``."""
    return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, value))


_scalar_value = functools.lru_cache(maxsize=4096)(_construct)
""":func:`_construct`, once per short value (counts, bounds and flags repeat across files)."""


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(part for part in (error.context, error.problem) if part)
    return f"{where}invalid YAML: {what}"


def kind_of(value: object) -> str:
    """How a message names the JSON type of ``value``: "a string", "an integer", "null", …"""
    return _KINDS.get(type(value), f"a {type(value).__name__}")


_KINDS = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}
