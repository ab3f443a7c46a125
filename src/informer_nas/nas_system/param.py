"""One tunable config key (``Param``): its kind, range or choices, and how a value is checked.

``Param.validate`` normalises a value or raises a ``ConfigError`` that names the key, the
value, the rule and a valid example. The keys themselves, presets and narrowings are in
``search_space.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

from informer_nas.errors import ConfigError

ParamKind = Literal["int", "float", "categorical", "bool"]
Scalar = int | float | str | bool
MAX_STRING_LENGTH = 64


def show_value(value: object, limit: int = 40) -> str:
    """A short ``repr`` for messages: a multi-megabyte value is never echoed back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def readable_float(value: float) -> float:
    """``value`` rounded to 12 significant digits, so that its repr is short (``5e-05``)."""
    return float(f"{value:.12g}")


@dataclass(frozen=True)
class Param:
    """One tunable key.

    Attributes:
        name: the dotted key, e.g. ``model.d_model``.
        kind: ``int`` / ``float`` (range ``low``..``high`` inclusive, optional ``step``,
            ``log`` scale), ``categorical`` (``choices``), ``bool`` (``choices`` empty: both
            values; a narrowing may pin it to one).
        description: what the key means, for comments and prompts.
    """

    name: str
    kind: ParamKind
    description: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()

    def validate(self, value: object) -> Scalar:
        """Check a value and return it normalised (an int accepted as a float becomes one).

        Raises:
            ConfigError: naming the key, the value, the rule and a valid example.
        """
        problem = self._problem(value)
        if problem:
            raise ConfigError(
                f"{self.name} = {show_value(value)} refused: {problem}; "
                f"e.g. {{\"key\": \"{self.name}\", \"value\": {json.dumps(self.example())}}}"
            )
        if self.kind == "float":
            return readable_float(float(value))  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    def example(self) -> Scalar:
        """A valid value (the middle of the range or choices)."""
        if self.kind == "bool":
            return bool(self.values[-1])
        if self.kind == "categorical":
            return self.choices[len(self.choices) // 2]
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return int(self.low + self.high) // 2
        mid = math.sqrt(self.low * self.high) if self.log and self.low > 0 else (
            (self.low + self.high) / 2
        )
        return float(f"{mid:.1g}")

    def rule(self) -> str:
        """The constraint in words, e.g. ``an integer in [1, 4]`` or ``one of 'prob', 'full'``."""
        if self.kind == "bool":
            return " or ".join(str(v).lower() for v in self.values)
        if self.kind == "categorical":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = "an integer" if self.kind == "int" else "a number"
        scale = ", log scale" if self.log else ""
        step = f", step {_number(self.step)}" if self.step else ""
        return f"{noun} in [{_number(self.low)}, {_number(self.high)}]{step}{scale}"

    def narrowed(self, **changes: object) -> Param:
        """A copy with some fields replaced (used by presets)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def values(self) -> tuple[Scalar, ...]:
        """The allowed values of a bool or categorical key."""
        return (False, True) if self.kind == "bool" and not self.choices else self.choices

    def _problem(self, value: object) -> str:
        if self.kind == "bool":
            if type(value) is not bool:
                return f"expected true or false, got {show_typed(value)}{_unquoted(value, self)}"
            return "" if value in self.values else f"must be {self.rule()}"
        if self.kind == "categorical":
            return self._categorical_problem(value)
        if self.kind == "int" and type(value) is not int:
            return f"expected an integer, got {show_typed(value)}{_unquoted(value, self)}"
        if self.kind == "float" and type(value) not in (int, float):
            return f"expected a number, got {show_typed(value)}{_unquoted(value, self)}"
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:  # an integer of hundreds of digits
            return f"out of range; must be {self.rule()}"
        return self._range_problem(number)

    def _categorical_problem(self, value: object) -> str:
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            return f"strings are at most {MAX_STRING_LENGTH} characters; must be {self.rule()}"
        # type() equality: True must not match the choice 1, nor 1 the choice 1.0.
        if any(type(value) is type(c) and value == c for c in self.choices):
            return ""
        return f"must be {self.rule()}{_unquoted(value, self)}"

    def _range_problem(self, number: float) -> str:
        assert self.low is not None and self.high is not None
        if not math.isfinite(number):
            return f"must be a finite number, {self.rule()}"
        if not self.low <= number <= self.high:
            return f"out of range; must be {self.rule()}"
        if self.step and abs(round((number - self.low) / self.step) * self.step
                             + self.low - number) > 1e-9:
            return f"not on the grid; must be {self.rule()}"
        return ""


def show_typed(value: object) -> str:
    """``show_value`` followed by the value's type name, e.g. ``'64' (str)``."""
    return f"{show_value(value)} ({type(value).__name__})"


def _unquoted(value: object, param: Param) -> str:
    """``; it is a string: send 64 without quotes`` when a quoted value would be valid as
    JSON (a model sending "64" or "true"), else ""."""
    if not isinstance(value, str) or len(value) > MAX_STRING_LENGTH:
        return ""
    try:
        parsed = json.loads(value)
    except ValueError:
        return ""
    if isinstance(parsed, str) or param._problem(parsed):
        return ""
    return f"; {show_value(value)} is a string: send {json.dumps(parsed)} without quotes"


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else repr(value)
