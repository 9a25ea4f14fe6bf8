"""The one expression language of attune: Jinja2 in an immutable sandbox, strict about names.

Values are compiled once, when a pack is loaded (:func:`compile_value`), and rendered later
against a context (:meth:`Template.render`). A string that is exactly one ``{{ expr }}`` keeps
the native type of the expression's value (``"{{ trigger.count }}"`` gives an int, ``"42"``
stays a string); any other string with ``{{``/``{%`` renders to a string; everything else is
taken as it is. A rendered value is never rendered again, and inputs (payloads) never are.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from attune.errors import ExpressionError

MAX_RENDERED_CHARS = 65_536
"""Longest string one template may render to (64 KiB); longer is a render failure."""

_WHOLE = re.compile(r"\A\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*\Z", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")
_PATH = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\s*")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, where a dotted name reads a mapping's key before its attribute: a
    parameter named ``items`` is ``input.items``, not the ``dict.items`` method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj[attribute]`` for a mapping that has that key, else the sandbox's lookup."""
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """The shared sandbox: no attribute escapes, no mutation, a missing name is an error."""
    return _Sandbox(undefined=StrictUndefined, autoescape=False)


Renderer = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Template:
    """A compiled value: ``source`` as written, rendered by :meth:`render`."""

    source: Any
    _render: Renderer

    def render(self, context: Mapping[str, Any], field: str = "") -> Any:
        """The value for ``context``; :class:`ExpressionError` naming ``field`` when it fails."""
        try:
            return self._render(context)
        except ExpressionError:
            raise
        except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError) as error:
            raise ExpressionError(field, f"{error}") from error
        except Exception as error:  # a filter raised something else: still the template's fault
            raise ExpressionError(field, f"{type(error).__name__}: {error}") from error

    @property
    def is_static(self) -> bool:
        """True when no part of the value is an expression (it renders to its source)."""
        return not _has_template(self.source)


def compile_value(value: Any, roots: Collection[str], field: str = "") -> Template:
    """Compile ``value`` (a string, or lists/mappings of them) whose expressions may name only
    ``roots``; raises :class:`ExpressionError` naming the field (``a.b[2]``) that is wrong."""
    return Template(value, _compile(value, frozenset(roots), field))


def _compile(value: Any, roots: frozenset[str], field: str) -> Renderer:
    if isinstance(value, Mapping):
        parts = {key: _compile(item, roots, _join(field, str(key))) for key, item in value.items()}
        return lambda context: {key: part(context) for key, part in parts.items()}
    if isinstance(value, list):
        items = [_compile(item, roots, f"{field}[{n}]") for n, item in enumerate(value)]
        return lambda context: [item(context) for item in items]
    if isinstance(value, str) and _has_template(value):
        return _compile_text(value, roots, field)
    return lambda _context: value


def _compile_text(text: str, roots: frozenset[str], field: str) -> Renderer:
    env = environment()
    whole = _WHOLE.match(text)
    try:
        names = meta.find_undeclared_variables(env.parse(text))
        unknown = sorted(names - roots)
        if unknown:
            allowed = ", ".join(sorted(roots))
            raise ExpressionError(field, f"unknown name {', '.join(unknown)}; use only {allowed}")
        if whole is not None:
            expression = env.compile_expression(whole["expr"], undefined_to_none=False)
            path = _PATH.fullmatch(whole["expr"])
            if path is not None:
                return _looked_up(field, tuple(path[0].strip().split(".")), expression)
            return lambda context: _defined(field, expression(**context))
        template = env.from_string(text)
    except TemplateSyntaxError as error:
        raise ExpressionError(field, f"template does not parse: {error.message}") from error
    return lambda context: _capped(field, template.render(**context))


def _looked_up(field: str, names: tuple[str, ...], expression: Callable[..., Any]) -> Renderer:
    """A dotted name (``trigger.body.msg``) read key by key from the context's mappings, as the
    sandbox reads a mapping's key first; anything else (a missing key, an attribute) is left to
    the compiled ``expression``, which gives the same value or the same error."""

    def render(context: Mapping[str, Any]) -> Any:
        value: Any = context
        for name in names:
            if not isinstance(value, dict) or name not in value:
                return _defined(field, expression(**context))
            value = value[name]
        return _defined(field, value)

    return render


def _defined(field: str, value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, str):
        return _capped(field, value)
    return value


def _capped(field: str, text: str) -> str:
    if len(text) > MAX_RENDERED_CHARS:
        limit = MAX_RENDERED_CHARS
        raise ExpressionError(field, f"renders to {len(text)} characters (limit {limit})")
    return text


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return any(marker in value for marker in _MARKERS)
    if isinstance(value, Mapping):
        return any(_has_template(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_template(item) for item in value)
    return False


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key
