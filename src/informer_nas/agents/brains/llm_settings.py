"""LLM endpoint settings from the environment or a ``.env`` file (no dependency, no SDK).

Variables: ``NAS_LLM_BASE_URL`` (any OpenAI-compatible endpoint: OpenAI, OpenRouter,
Ollama, vLLM, llama.cpp), ``OPENAI_API_KEY`` or ``OPENROUTER_API_KEY``,
``NAS_PLANNER_MODEL`` and ``NAS_EVALUATOR_MODEL`` (sent verbatim, slashes included),
``NAS_LLM_MAX_RETRIES``, ``NAS_LLM_TIMEOUT``, ``NAS_LLM_PRICE_IN`` / ``NAS_LLM_PRICE_OUT``
(USD per million tokens, for the cost estimate). The process environment wins over
``.env``; a blank value (spaces only) counts as unset.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from informer_nas.errors import ConfigError
from informer_nas.nas_system.secrets import dotenv_values

OPENROUTER_URL = "https://openrouter.ai/api/v1"
DEFAULT_MODEL = "gpt-4o-mini"
MAX_RETRIES = 100  # NAS_LLM_MAX_RETRIES above this is a typo, not a retry policy
# USD per million (input, output) tokens of a few common models, for the estimate only.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10.0), "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0), "anthropic/claude-3.5-sonnet": (3.0, 15.0),
}


def llm_environment(environ: Mapping[str, str] | None = None,
                    dotenv: Path | None = None) -> dict[str, str]:
    """``.env`` (default ``./.env``) overlaid by the process environment, values stripped;
    a blank value is dropped (it was set, but to nothing: unset, not ``" "``)."""
    merged = dotenv_values(dotenv)
    merged.update(os.environ if environ is None else environ)
    return {name: value.strip() for name, value in merged.items() if value.strip()}


def llm_configured(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> bool:
    """Whether an LLM endpoint is configured (a key, or a base URL such as Ollama's)."""
    env = llm_environment(environ, dotenv)
    return any(env.get(name) for name in ("OPENAI_API_KEY", "OPENROUTER_API_KEY",
                                          "NAS_LLM_BASE_URL"))


@dataclass(frozen=True)
class LlmSettings:
    """Where and how the LLM brain talks to its endpoint."""

    base_url: str | None
    api_key: str = field(repr=False)
    planner_model: str
    evaluator_model: str
    max_retries: int = 5
    timeout_s: float = 120.0
    price_in: float | None = None
    price_out: float | None = None

    def price(self, model: str) -> tuple[float, float]:
        """USD per million (input, output) tokens for ``model`` (0 when unknown)."""
        known = PRICES.get(model, (0.0, 0.0))
        return (self.price_in if self.price_in is not None else known[0],
                self.price_out if self.price_out is not None else known[1])


def _number(env: Mapping[str, str], name: str, default: float | None, *, example: str,
            minimum: float = 0.0, strict: bool = False, whole: bool = False,
            maximum: float = math.inf, unit: str = "") -> float | None:
    """``env[name]`` as a finite number in range (``strict``: above ``minimum``; ``whole``:
    an integer), else ``default`` when unset.

    Raises:
        ConfigError: one line naming the variable, its value and a valid example.
    """
    value = env.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    above = number > minimum if strict else number >= minimum
    if math.isfinite(number) and above and number <= maximum and (
            not whole or number.is_integer()):
        return number
    kind = "a whole number" if whole else f"a finite number{unit}"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    if maximum < math.inf:
        bound = f"in [{minimum:g}, {maximum:g}]"
    raise ConfigError(f"{name}={value!r} is not {kind} {bound}; e.g. {name}={example}")


def load_llm_settings(environ: Mapping[str, str] | None = None,
                      dotenv: Path | None = None) -> LlmSettings:
    """Read the settings.

    Raises:
        ConfigError: no endpoint configured, or a malformed number.
    """
    env = llm_environment(environ, dotenv)
    if not llm_configured(env, Path("/nonexistent")):
        raise ConfigError("no LLM endpoint configured; set OPENAI_API_KEY (or "
                          "OPENROUTER_API_KEY, or NAS_LLM_BASE_URL for a local server) in the "
                          "environment or .env, or use --planner tpe")
    key = env.get("OPENAI_API_KEY") or env.get("OPENROUTER_API_KEY") or "not-needed"
    base_url = env.get("NAS_LLM_BASE_URL") or (
        OPENROUTER_URL if env.get("OPENROUTER_API_KEY") and not env.get("OPENAI_API_KEY")
        else None)
    planner_model = env.get("NAS_PLANNER_MODEL") or DEFAULT_MODEL
    retries = _number(env, "NAS_LLM_MAX_RETRIES", 5.0, example="5", whole=True,
                      maximum=MAX_RETRIES)
    timeout = _number(env, "NAS_LLM_TIMEOUT", 120.0, example="120", strict=True,
                      unit=" of seconds")
    assert retries is not None and timeout is not None  # they have defaults
    return LlmSettings(
        base_url=base_url, api_key=key, planner_model=planner_model,
        evaluator_model=env.get("NAS_EVALUATOR_MODEL") or planner_model,
        max_retries=int(retries), timeout_s=timeout,
        price_in=_number(env, "NAS_LLM_PRICE_IN", None, example="0.15"),
        price_out=_number(env, "NAS_LLM_PRICE_OUT", None, example="0.6"),
    )
