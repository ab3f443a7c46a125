"""Bad input: malicious and malformed config changes, and hand-edited config files.

Every change goes through the real ``edit_config`` tool on a tiny workspace. Each one
must be refused with a ``ConfigError`` whose message names the fix, leave ``config.py``,
``candidate.py`` and the state byte-identical, and execute nothing: the code payloads
would create ``PWNED`` in a temporary directory if anything ever evaluated them.

Duplicate keys in one edit are refused, even with equal values: which value was meant is
ambiguous, and a planner that sends one key twice should be told so, not guessed for.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import ConfigError, NasError
from informer_nas.informer.config import load_config, read_config_literal
from informer_nas.informer.train import load_run_config
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.records import ConfigChange
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.edit_config import apply_changes, edit_config

MARK = "<MARKER>"  # replaced by the path of a file that must never come to exist
TOUCH = f"__import__('pathlib').Path({MARK!r}).touch()"
OPEN = f"open({MARK!r}, 'w')"
SYSTEM = f"__import__('os').system('touch {MARK}')"
MEGABYTES = 5_000_000
# A message names the fix when it holds one of these (an example, a suggestion, the list).
FIX_PHRASES = ("e.g.", "did you mean", "tunable keys:", "change one of:", "send ", "pass ",
               "tune another key")


def change(key: Any, value: Any) -> ConfigChange:
    """A change as the tool receives it after the SDK built it (no validation yet)."""
    return ConfigChange.model_construct(key=key, value=value)


def wire(text: str) -> Any:
    """Changes as the model sends them: JSON text (Python's parser accepts NaN/Infinity)."""
    return json.loads(text)


CASES: list[tuple[str, Any, str]] = [
    # -- code as a value: it is a string, never evaluated, and not one of the choices
    ("value-import-call", [change("model.attn", TOUCH)], "must be one of 'prob', 'full'"),
    ("value-os-system", [change("model.activation", SYSTEM)], "must be one of 'gelu', 'relu'"),
    ("value-open-call", [change("model.attn", OPEN)], "must be one of 'prob', 'full'"),
    ("value-code-for-int", [change("model.e_layers", TOUCH)], "expected an integer"),
    ("value-lambda-for-float", [change("model.dropout", "lambda: 0.1")], "expected a number"),
    ("value-getattr", [change("model.d_model", "getattr(model, 'd_model')")],
     "must be one of 16, 32, 64"),
    # a number written as a string is not a number (no eval, no float())
    ("value-numeric-string", [change("training.optimizer_params.lr", "1e-3")],
     "expected a number, got '1e-3' (str)"),
    # -- code and dunders as keys: keys are looked up, never resolved as attributes
    ("key-dunder-class", [change("__class__", 1)], "unknown key '__class__'"),
    ("key-dunder-dict", [change("model.__dict__", 1)], "unknown key 'model.__dict__'"),
    ("key-dunder-below-leaf", [change("model.d_model.__class__", 1)],
     'did you mean "model.d_model"'),
    ("key-builtins", [change("__builtins__.open", 1)], "unknown key '__builtins__.open'"),
    ("key-import-call", [change(TOUCH, 1)], "unknown key \"__import__"),
    ("key-call-syntax", [change("model.d_model()", 64)], 'did you mean "model.d_model"'),
    # -- huge and negative numbers: ranges hold, the value is shown truncated
    ("int-10**100", [change("model.factor", 10**100)], "out of range; must be an integer in"),
    ("int-negative", [change("model.e_layers", -1)], "out of range; must be an integer in [1, 2]"),
    ("int-2**63", [change("training.max_epochs", 2**63)], "out of range"),
    ("float-1e308", [change("training.optimizer_params.lr", 1e308)], "out of range"),
    ("choice-negative", [change("model.d_model", -16)], "must be one of 16, 32, 64"),
    ("wire-1e999-is-inf", wire('[{"key": "model.dropout", "value": 1e999}]'),
     "must be a finite number"),
    # -- NaN and infinities: never a valid number
    ("nan", [change("model.dropout", math.nan)], "must be a finite number"),
    ("inf", [change("training.optimizer_params.lr", math.inf)], "must be a finite number"),
    ("minus-inf", [change("training.optimizer_params.weight_decay", -math.inf)],
     "must be a finite number"),
    ("nan-for-int", [change("model.e_layers", math.nan)], "expected an integer, got nan"),
    ("wire-NaN", wire('[{"key": "model.dropout", "value": NaN}]'), "must be a finite number"),
    ("wire-Infinity", wire('[{"key": "training.optimizer_params.lr", "value": -Infinity}]'),
     "must be a finite number"),
    # -- wrong types: no coercion (bool is not int, 2.0 is not 2, "2" is not 2)
    ("str-for-int", [change("model.e_layers", "2")], "expected an integer, got '2' (str)"),
    ("bool-for-int", [change("model.e_layers", True)], "expected an integer, got True (bool)"),
    ("float-for-int", [change("model.e_layers", 2.0)], "expected an integer, got 2.0 (float)"),
    ("none-for-int", [change("model.e_layers", None)], "expected an integer, got None"),
    ("int-for-bool", [change("model.distil", 1)], "expected true or false, got 1 (int)"),
    ("str-for-bool", [change("model.distil", "true")], "expected true or false, got 'true'"),
    ("wire-str-for-choice", wire('[{"key": "model.d_model", "value": "64"}]'),
     "must be one of 16, 32, 64"),
    # -- lists, dicts and nested mappings are not values
    # (the key's own rule, not one pydantic error per type the value is not)
    ("wire-list-value", wire('[{"key": "model.d_model", "value": [64]}]'),
     "model.d_model = [64] refused: must be one of 16, 32, 64"),
    ("dict-value", [change("model.d_model", {"a": 1})], "model.d_model = {'a': 1} refused"),
    ("wire-dict-value", wire('[{"key": "model.attn", "value": {"a": 1}}]'),
     "model.attn = {'a': 1} refused: must be one of 'prob', 'full'"),
    ("wire-nested-mapping", wire('[{"key": "model", "value": {"d_model": 64}}]'),
     "unknown key 'model'"),
    ("section-as-key", [change("model", 1)], "unknown key 'model'"),
    ("key-below-a-leaf", [change("model.d_model.extra", 1)], "unknown key 'model.d_model.extra'"),
    # -- unknown keys, and keys the search leaves alone
    ("unknown-typo", [change("model.dmodel", 32)], 'did you mean "model.d_model"'),
    ("not-tunable-embed", [change("model.embed", "fixed")], "model.embed is a config key but not"),
    ("not-tunable-seed", [change("training.seed", 1)], "training.seed is a config key but not"),
    # -- multi-megabyte input: refused fast, never echoed back whole
    ("megabyte-value", [change("model.attn", "p" * MEGABYTES)], "strings are at most 64"),
    ("megabyte-key", [change("k" * MEGABYTES, 1)], f"...({MEGABYTES + 2} chars)"),
    # -- unicode look-alikes: no normalisation, the real key is suggested
    ("cyrillic-o-in-key", [change("model.d_m\u043edel", 32)], 'did you mean "model.d_model"'),
    ("fullwidth-letter-in-key", [change("model.e_\uff4cayers", 2)],
     'did you mean "model.e_layers"'),
    ("zero-width-space-in-key", [change("model.d_\u200bmodel", 32)],
     'did you mean "model.d_model"'),
    ("fullwidth-digits-value", [change("model.d_model", "\uff16\uff14")],
     "must be one of 16, 32, 64"),
    # -- the forecasting task is fixed for the workspace
    ("fixed-pred-len", [change("data.pred_len", 48)], "data.pred_len is part of the forecasting"),
    ("fixed-features", [change("data.features", "S")], "data.features is part of the forecasting"),
    ("fixed-target", [change("data.target", TOUCH)], "data.target is part of the forecasting"),
    ("fixed-path", [change("data.path", "/etc/passwd")], "data.path is part of the forecasting"),
    # -- the list itself
    ("empty-list", [], "no changes given; pass at least one"),
    ("none-instead-of-list", None, "changes must be a list"),
    ("mapping-instead-of-list", {"model.d_model": 32}, "changes must be a list"),
    ("string-instead-of-list", "model.d_model=32", "changes must be a list"),
    ("tuple-change", [("model.d_model", 32)], "change 1 must be"),
    ("extra-field", wire('[{"key": "model.d_model", "value": 32, "exec": "x"}]'),
     "exec: unknown key"),
    ("int-key", wire('[{"key": 1, "value": 2}]'), "key: Input should be a valid string"),
    ("too-many", [change("model.dropout", 0.1)] * 33, "send at most 32"),
    # duplicates are refused, conflicting or not (see the module docstring)
    ("duplicate-conflicting", [change("model.d_model", 32), change("model.d_model", 64)],
     "appears twice in one edit; send each key once"),
    ("duplicate-equal", [change("model.d_model", 32), change("model.d_model", 32)],
     "appears twice in one edit"),
    # -- whitespace, empty and malformed dotted keys: no stripping, a suggestion instead
    ("empty-key", [change("", 1)], "unknown key ''; tunable keys:"),
    ("newline-key", [change("\n", 1)], "unknown key '\\n'"),
    ("leading-space", [change(" model.d_model", 32)], 'did you mean "model.d_model"'),
    ("trailing-space", [change("model.d_model ", 32)], 'did you mean "model.d_model"'),
    ("space-after-dot", [change("model. d_model", 32)], 'did you mean "model.d_model"'),
    ("double-dot", [change("model..d_model", 32)], 'did you mean "model.d_model"'),
    # -- each value valid, the combination not: the whole config is validated
    ("cross-field-rule", [change("data.label_len", 48), change("data.seq_len", 24)],
     "breaks a rule: data.label_len (48) must be <= data.seq_len (24)"),
]


def with_marker(value: Any, marker: Path) -> Any:
    """``value`` with every ``<MARKER>`` replaced by the marker file's path."""
    if isinstance(value, str):
        return value.replace(MARK, str(marker)) if MARK in value[:1000] else value
    if isinstance(value, ConfigChange):
        return change(with_marker(value.key, marker), with_marker(value.value, marker))
    if isinstance(value, list):
        return [with_marker(v, marker) for v in value]
    if isinstance(value, dict):
        return {k: with_marker(v, marker) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The file every payload tries to create; checked after each case and at the end."""
    path = tmp_path_factory.mktemp("payload") / "PWNED"
    yield path
    assert not path.exists(), "a payload was executed"


def make_context(root: Path) -> ToolContext:
    workspace = Workspace.create(root, "tiny")
    executor = CallableExecutor(lambda request: pytest.fail("no training for bad input"))
    return ToolContext(workspace, load_state(workspace.paths), SessionSettings(), executor)


@pytest.mark.parametrize(("changes", "phrase"), [(c, p) for _, c, p in CASES],
                         ids=[case_id for case_id, _, _ in CASES])
def test_bad_changes_are_refused_with_the_fix_and_change_nothing(
    tmp_path: Path, marker: Path, changes: Any, phrase: str
) -> None:
    ctx = make_context(tmp_path / "ws")
    paths = ctx.workspace.paths
    edit_config(ctx, [change("model.dropout", 0.1)], "a valid first edit: a candidate exists")
    before = (paths.config.read_bytes(), paths.candidate.read_bytes(),
              paths.state.read_bytes(), ctx.state.model_dump_json())
    with pytest.raises(ConfigError) as caught:
        edit_config(ctx, with_marker(changes, marker), with_marker(TOUCH, marker))
    message = str(caught.value)
    assert phrase in message, message
    assert any(fix in message for fix in FIX_PHRASES), message
    assert len(message) < 1200 and "\n" not in message.replace("'\\n'", "")
    assert (paths.config.read_bytes(), paths.candidate.read_bytes(),
            paths.state.read_bytes(), ctx.state.model_dump_json()) == before
    assert not marker.exists()


@pytest.mark.slow  # one trainer subprocess (importing torch takes seconds)
def test_a_code_string_written_as_a_value_stays_data_for_the_trainer(
    tmp_path: Path, marker: Path
) -> None:
    # Suppose a payload got past the tool into a config file (the pure editor writes it):
    # reading it, as the trainer does, yields a string and runs nothing.
    ctx = make_context(tmp_path / "ws")
    payload = with_marker(TOUCH, marker)
    source = ctx.workspace.paths.config.read_text()
    candidate = tmp_path / "candidate.py"
    candidate.write_text(apply_changes(source, [change("data.target", payload),
                                                change("model.attn", payload)]))
    assert read_config_literal(candidate)["data"]["target"] == payload
    with pytest.raises(ConfigError, match="model.attn"):
        load_run_config(candidate, seed=1)
    candidate.write_text(apply_changes(source, [change("data.target", payload)]))
    config, _ = load_run_config(candidate, seed=1)
    assert config.data.target == payload
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "informer_nas.informer.train", "--config", str(candidate),
         "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]  # invalid_config: no such column
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "invalid_config"
    assert not marker.exists()


def line_of(text: str, start: str) -> int:
    """The number of the first line that starts (after indentation) with ``start``."""
    return next(n for n, line in enumerate(text.splitlines(), start=1)
                if line.lstrip().startswith(start))


HAND_EDITS: list[tuple[str, str, str, str, str]] = [
    # (id, text to replace, replacement, start of the line named, phrase of the reason)
    # a call is not a literal (even a harmless one)
    ("call", '"d_model": 16,', '"d_model": int("16"),', '"d_model"',
     '`int("16")` is not a literal'),
    # a payload call: refused by the parser, never executed
    ("payload-call", '"attn": "prob",', f'"attn": {TOUCH},', '"attn"', "is not a literal"),
    # a name reference
    ("name", '"d_model": 16,', '"d_model": D_MODEL,', '"d_model"', "`D_MODEL` is not a literal"),
    # an f-string
    ("f-string", '"attn": "prob",', '"attn": f"{\'prob\'}",', '"attn"', "is not a literal"),
    # a sign on what is not a number (literal_eval refuses it: it was a traceback)
    ("signed-bool", '"distil": True,', '"distil": -True,', '"distil"',
     "`-True` is not a literal"),
    ("signed-none", '"d_model": 16,', '"d_model": +None,', '"d_model"',
     "`+None` is not a literal"),
    # arithmetic
    ("arithmetic", '"d_model": 16,', '"d_model": 8 * 2,', '"d_model"', "`8 * 2` is not a literal"),
    # attribute access
    ("attribute", '"attn": "prob",', '"attn": os.name,', '"attn"', "`os.name` is not a literal"),
    # a lambda, called
    ("lambda", '"dropout": 0.05,', '"dropout": (lambda: 0.05)(),', '"dropout"',
     "is not a literal"),
    # an import after CONFIG: only the assignment and comments are allowed
    ("import-after", "\n}\n", "\n}\nimport os\n", "import os",
     "found `import os`; remove that line"),
    # code before CONFIG
    ("statement-before", "\nCONFIG = {", f"\n{TOUCH}\nCONFIG = {{", "__import__",
     "only `CONFIG = {...}` and comments are allowed"),
    # a second assignment of CONFIG
    ("second-config", "\n}\n", "\n}\nCONFIG = {}\n", "CONFIG = {}", "only `CONFIG = {...}`"),
    # a syntax error
    ("syntax", '"d_model": 16,', '"d_model": 16,,', '"d_model"', "syntax error"),
    # schema: an unknown key, with its line
    ("schema-unknown-key", '"d_model": 16,', '"d_mdoel": 16,', '"d_mdoel"',
     "model.d_mdoel: unknown key; remove it or check the spelling"),
    # schema: out of range
    ("schema-range", '"dropout": 0.05,', '"dropout": 7.0,', '"dropout"',
     "model.dropout: Input should be less than or equal to 0.9"),
    # schema: a string where an int belongs
    ("schema-type", '"e_layers": 1,', '"e_layers": "one",', '"e_layers"',
     "model.e_layers: Input should be a valid integer"),
    # schema: 1e999 is a float literal that overflows to inf
    ("schema-inf", '"lr": 0.0001,', '"lr": 1e999,', '"lr"', "training.optimizer_params.lr"),
    # schema: a cross-field rule is reported at the CONFIG line
    ("schema-cross-field", '"n_heads": 2,', '"n_heads": 3,', "CONFIG = {",
     "must be divisible by model.n_heads (3); e.g. n_heads 4, a divisor of 16"),
]


@pytest.mark.parametrize(("old", "new", "line_start", "reason"), [c[1:] for c in HAND_EDITS],
                         ids=[c[0] for c in HAND_EDITS])
def test_a_hand_edited_config_is_refused_with_its_line_before_any_training(
    tmp_path: Path, marker: Path, old: str, new: str, line_start: str, reason: str
) -> None:
    workspace = Workspace.create(tmp_path / "ws", "tiny")
    path = workspace.paths.config
    text = path.read_text()
    assert text.count(old) == 1, old
    edited = text.replace(old, with_marker(new, marker))
    path.write_text(edited)
    with pytest.raises(ConfigError) as opened:
        Workspace.open(workspace.root)
    message = str(opened.value)
    assert f"config.py:{line_of(edited, line_start)}: " in message, message
    assert reason in message, message
    assert "no training was started" in message
    # doctor restores the incumbent's config: there is none yet, so it is not the advice
    assert "fix it by hand: there is no accepted run yet" in message
    assert "nas doctor" not in message
    with pytest.raises(ConfigError, match=re.escape(reason)):
        load_config(path)
    assert not marker.exists()


@pytest.mark.slow  # imports the whole session stack (the Agents SDK)
def test_the_session_stops_on_a_bad_config_before_any_training(tmp_path: Path) -> None:
    from informer_nas.api import run_nas_optimization

    workspace = Workspace.create(tmp_path / "ws", "tiny")
    text = workspace.paths.config.read_text()
    workspace.paths.config.write_text(text.replace('"d_model": 16,', '"d_model": 15 + 1,'))
    state_before = workspace.paths.state.read_bytes()
    calls: list[TrainRequest] = []

    def train(request: TrainRequest) -> TrainOutcome:
        calls.append(request)
        raise AssertionError("trained despite a bad config")

    with pytest.raises(NasError, match=r"config.py:\d+: `15 \+ 1` is not a literal"):
        run_nas_optimization(workspace.root, iters=1, planner="random",
                             executor=CallableExecutor(train), quiet=True)
    assert calls == [] and list(workspace.paths.runs.iterdir()) == []
    assert workspace.paths.state.read_bytes() == state_before
