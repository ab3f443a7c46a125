"""Syntax-tree edits of a config file's text (libcst): set a key, keep comments and layout.

Shared by the ``edit_config`` tool (the planner's changes to ``candidate.py``) and the
trainer (``config_used.py`` with the seed actually used). Values become nodes through
``python_literal``, never by parsing text that came from outside; nothing is executed. Pure
functions of text: writing and validating the result is the caller's job.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Sequence

import libcst as cst

from informer_nas.errors import ConfigError


def set_values(source: str, changes: Sequence[tuple[str, object]],
               comment_for: Callable[[str], str] = lambda key: "") -> str:
    """``source`` with each dotted key set to its value (a missing key is inserted into its
    section, with ``comment_for(key)`` as its line's comment in a one-key-per-line dict).

    Raises:
        ConfigError: the source cannot be parsed, has no ``CONFIG = {...}``, a section on a
            key's path is not a dict, or a value cannot be written (NaN, inf, non-scalar).
    """
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise ConfigError(f"config source cannot be parsed ({exc.message}); fix it") from None
    for key, value in changes:
        module = set_key(module, key.split("."), value_node(value), comment_for)
    return module.code


def python_literal(value: object) -> str:
    """The Python source of a config value, readable and exact.

    Floats use Python's shortest repr (``5e-05``, ``0.0001``), ints stay ints.

    Raises:
        ConfigError: a value a config cannot hold (NaN, inf, or another type).
    """
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value!r} cannot be written to a config; use a finite number")
        return repr(value)
    raise ConfigError(f"a config value cannot be a {type(value).__name__}")


def _string_literal(value: str) -> str:
    # Double quotes like the rest of the file; JSON escapes are Python escapes too, and the
    # round trip is checked so that a string can never turn into code.
    text = json.dumps(value)
    return text if ast.literal_eval(text) == value else repr(value)


def value_node(value: object) -> cst.BaseExpression:
    """A libcst node for a scalar, built from the value (never by parsing user text)."""
    text = python_literal(value)  # raises on NaN, inf and non-scalars
    if value is None or isinstance(value, bool):
        return cst.Name(text)
    if isinstance(value, str):
        return cst.SimpleString(text)
    assert isinstance(value, int | float)
    magnitude: cst.BaseExpression = (
        cst.Integer(str(abs(value))) if isinstance(value, int) else cst.Float(repr(abs(value)))
    )
    if value < 0 or (isinstance(value, float) and math.copysign(1.0, value) < 0):
        return cst.UnaryOperation(operator=cst.Minus(), expression=magnitude)
    return magnitude


def set_key(
    module: cst.Module,
    parts: list[str],
    value: cst.BaseExpression,
    comment_for: Callable[[str], str] = lambda key: "",
) -> cst.Module:
    """Set ``CONFIG[parts[0]][parts[1]]...`` to ``value``; insert the key if missing.

    Args:
        module: the parsed config file.
        parts: the dotted key, split.
        value: the new value's node.
        comment_for: the comment of an inserted line, from its dotted key.

    Raises:
        ConfigError: no ``CONFIG = {...}``, or a section in the path is not a dict.
    """
    config = _config_dict(module)
    updated = _set_in_dict(config, parts, value, comment_for, "")
    replaced = module.deep_replace(config, updated)
    assert isinstance(replaced, cst.Module)
    return replaced


def _config_dict(module: cst.Module) -> cst.Dict:
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if (isinstance(small, cst.Assign) and len(small.targets) == 1
                    and isinstance(small.targets[0].target, cst.Name)
                    and small.targets[0].target.value == "CONFIG"
                    and isinstance(small.value, cst.Dict)):
                return small.value
    raise ConfigError("no `CONFIG = {...}` dict in the config; recreate it with `nas init`")


def _set_in_dict(
    node: cst.Dict,
    parts: list[str],
    value: cst.BaseExpression,
    comment_for: Callable[[str], str],
    prefix: str,
) -> cst.Dict:
    key, rest = parts[0], parts[1:]
    elements = list(node.elements)
    # The last occurrence wins, as in literal evaluation.
    for i in reversed(range(len(elements))):
        element = elements[i]
        if isinstance(element, cst.DictElement) and _key_of(element) == key:
            if rest and not isinstance(element.value, cst.Dict):
                raise ConfigError(
                    f"{prefix}{key} in the config is not a dict, so {'.'.join(parts)} cannot "
                    f"be set inside it; fix config.py"
                )
            new_value = (_set_in_dict(element.value, rest, value, comment_for, f"{prefix}{key}.")
                         if rest and isinstance(element.value, cst.Dict) else value)
            elements[i] = element.with_changes(value=new_value)
            return node.with_changes(elements=elements)
    inserted = value if not rest else _nested(rest, value)
    element = cst.DictElement(_key_node(key), inserted)
    return insert_element(node, element, comment_for(f"{prefix}{key}"))


def _key_of(element: cst.DictElement) -> str | None:
    if isinstance(element.key, cst.SimpleString):
        evaluated = element.key.evaluated_value
        return evaluated if isinstance(evaluated, str) else None
    return None


def _key_node(key: str) -> cst.SimpleString:
    return cst.SimpleString(python_literal(key))


def _nested(parts: list[str], value: cst.BaseExpression) -> cst.Dict:
    inner = value if len(parts) == 1 else _nested(parts[1:], value)
    return cst.Dict([cst.DictElement(_key_node(parts[0]), inner)])


def insert_element(node: cst.Dict, element: cst.DictElement, comment: str) -> cst.Dict:
    """Append ``element`` to a dict, matching its layout (one key per line or inline)."""
    elements = list(node.elements)
    opening = node.lbrace.whitespace_after
    closing = node.rbrace.whitespace_before
    if not elements:
        return node.with_changes(elements=[element])
    last = elements[-1]
    last_comma = last.comma if isinstance(last.comma, cst.Comma) else None
    if not (isinstance(opening, cst.ParenthesizedWhitespace)
            and isinstance(closing, cst.ParenthesizedWhitespace)):
        # Inline dict: `{"a": 1, "b": 2}` -> `{"a": 1, "b": 2, "c": 3}`.
        space = cst.SimpleWhitespace(" ")
        elements[-1] = last.with_changes(comma=cst.Comma(whitespace_after=space))
        elements.append(element.with_changes(comma=last.comma))
        return node.with_changes(elements=elements)
    # One key per line: the old last line keeps its comment, the new line gets its own.
    separator = cst.ParenthesizedWhitespace(
        first_line=closing.first_line, indent=opening.indent, last_line=opening.last_line
    )
    elements[-1] = last.with_changes(comma=cst.Comma(
        whitespace_before=last_comma.whitespace_before if last_comma else cst.SimpleWhitespace(""),
        whitespace_after=separator,
    ))
    trailing = cst.Comma(whitespace_after=cst.SimpleWhitespace("")) if last_comma else None
    elements.append(element.with_changes(comma=trailing or cst.MaybeSentinel.DEFAULT))
    first_line = cst.TrailingWhitespace(
        whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(f"# {_one_line(comment)}")
    ) if comment else cst.TrailingWhitespace()
    new_closing = closing.with_changes(first_line=first_line)
    return node.with_changes(elements=elements,
                             rbrace=node.rbrace.with_changes(whitespace_before=new_closing))


def _one_line(text: str) -> str:
    return " ".join(text.split())
