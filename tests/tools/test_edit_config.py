"""edit_config: layout kept, insertion, readable numbers, every refusal, fuzz, nothing run."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from informer_nas.errors import ConfigError
from informer_nas.informer.config import load_config, read_config_literal
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.param import Param
from informer_nas.nas_system.records import ConfigChange
from informer_nas.nas_system.search_space import DEFAULT_SPACE, FIXED_KEYS
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import IterationScratch, load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.edit_config import apply_changes, edit_config


def make_context(root: Path, preset: str = "tiny") -> ToolContext:
    workspace = Workspace.create(root, preset)
    executor = CallableExecutor(lambda request: pytest.fail("no training here"))
    return ToolContext(workspace, load_state(workspace.paths), SessionSettings(), executor)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return make_context(tmp_path / "ws")


def change(key: str, value: Any) -> ConfigChange:
    return ConfigChange.model_construct(key=key, value=value)


def test_an_edit_changes_only_its_lines_and_keeps_comments(ctx: ToolContext) -> None:
    paths = ctx.workspace.paths
    incumbent = paths.config.read_text()
    diff = edit_config(ctx, [change("model.d_model", 32), change("model.dropout", 0.1)], "wider")
    candidate = paths.candidate.read_text()
    assert paths.config.read_text() == incumbent  # the incumbent is never edited
    old, new = incumbent.splitlines(), candidate.splitlines()
    differing = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert differing == [
        (line, line.replace("16,", "32,", 1)) for line in old if '"d_model": 16,' in line
    ] + [(line, line.replace("0.05,", "0.1,", 1)) for line in old if '"dropout": 0.05,' in line]
    assert "-        \"d_model\": 16," in diff and "+        \"d_model\": 32," in diff
    assert load_config(paths.candidate).model.d_model == 32


def test_edits_accumulate_and_the_diff_is_against_the_candidate(ctx: ToolContext) -> None:
    edit_config(ctx, [change("model.d_model", 32)], "first")
    diff = edit_config(ctx, [change("training.optimizer_params.lr", 5.000000000000001e-05)], "lr")
    assert "d_model" not in diff and '+            "lr": 5e-05,' in diff
    current = ctx.state.current
    assert current is not None and current.rationale == "first | lr"
    assert [(c.key, c.value) for c in current.changes] == [
        ("model.d_model", 32), ("training.optimizer_params.lr", 5e-05)
    ]
    edit_config(ctx, [change("model.d_model", 16)], "back to the incumbent's value")
    current = ctx.state.current
    assert current is not None
    assert [c.key for c in current.changes] == ["training.optimizer_params.lr"]
    assert load_state(ctx.workspace.paths).current == ctx.state.current  # saved


def test_a_missing_key_is_inserted_into_its_nested_section(ctx: ToolContext) -> None:
    paths = ctx.workspace.paths
    lines = paths.config.read_text().splitlines(keepends=True)
    paths.config.write_text("".join(line for line in lines if '"weight_decay"' not in line))
    edit_config(ctx, [change("training.optimizer_params.weight_decay", 0.01)], "regularise")
    text = paths.candidate.read_text()
    assert '            "weight_decay": 0.01,  # L2 weight decay' in text
    assert '            "lr": 0.0001,  # learning rate' in text
    assert read_config_literal(paths.candidate)["training"]["optimizer_params"] == {
        "lr": 0.0001, "momentum": 0.0, "weight_decay": 0.01
    }


def test_a_missing_section_is_inserted_too() -> None:
    source = 'CONFIG = {\n    "training": {\n        "max_epochs": 2,  # epochs\n    },\n}\n'
    out = apply_changes(source, [change("training.optimizer_params.lr", 0.001)])
    assert '        "max_epochs": 2,  # epochs\n' in out
    assert '"optimizer_params": {"lr": 0.001},' in out


def test_edit_is_refused_after_launch(ctx: ToolContext) -> None:
    edit_config(ctx, [change("model.d_model", 32)], "wider")
    assert ctx.state.current is not None
    ctx.state.current.launched_run_id = "run_0000"
    before = ctx.workspace.paths.candidate.read_bytes()
    with pytest.raises(ConfigError, match="already been launched this iteration"):
        edit_config(ctx, [change("model.d_model", 64)], "wider still")
    assert ctx.workspace.paths.candidate.read_bytes() == before


def test_a_crash_before_the_rename_leaves_the_candidate(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_config(ctx, [change("model.d_model", 32)], "wider")
    before = ctx.workspace.paths.candidate.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        edit_config(ctx, [change("model.d_model", 64)], "wider still")
    assert ctx.workspace.paths.candidate.read_bytes() == before
    assert not [p for p in ctx.workspace.root.iterdir() if p.name.endswith(".tmp")]


REFUSALS: list[tuple[Any, str]] = [
    # unknown keys get the closest valid key
    ([change("model.dmodel", 32)], 'did you mean "model.d_model"'),
    # the forecasting task is fixed
    ([change("data.pred_len", 48)], "data.pred_len is part of the forecasting task"),
    ([change("data.target", "HUFL")], "data.target is part of the forecasting task"),
    # a config key the search leaves alone
    ([change("training.seed", 1)], "training.seed is a config key but not tunable"),
    # bool is not int
    ([change("model.e_layers", True)], "expected an integer, got True (bool)"),
    # an int key wants an int, and ranges hold
    ([change("model.e_layers", 1.5)], "expected an integer"),
    ([change("model.e_layers", -1)], "out of range; must be an integer in [1, 2]"),
    ([change("model.factor", 10**100)], "out of range"),
    # an integer too large for a float (OverflowError lost the iteration)
    ([change("model.dropout", 10**400)], "out of range; must be a number in [0.0, 0.5]"),
    # NaN and inf
    ([change("model.dropout", math.nan)], "must be a finite number"),
    ([change("training.optimizer_params.lr", -math.inf)], "must be a finite number"),
    # choices, and a string where a number belongs
    ([change("model.n_heads", 3)], "must be one of 1, 2, 4, 8"),
    ([change("model.d_model", "64")], "must be one of 16, 32, 64"),
    # a quoted value that would be valid unquoted: say so (else '64' looks like a choice)
    ([change("model.d_model", "64")], "'64' is a string: send 64 without quotes"),
    ([change("training.optimizer_params.lr", "0.001")],
     "'0.001' is a string: send 0.001 without quotes"),
    ([change("model.distil", "false")], "'false' is a string: send false without quotes"),
    ([change("model.e_layers", "2")], "'2' is a string: send 2 without quotes"),
    # code strings are just wrong values, shown truncated
    ([change("model.attn", "__import__('os').system('id')")], "must be one of 'prob', 'full'"),
    ([change("model.attn", "p" * 5_000_000)], "strings are at most 64 characters"),
    # nested mappings and lists are not values
    ([change("model.d_model", {"a": 1})], "model.d_model = {'a': 1} refused: must be one of"),
    ([change("model.factor", {"a": 1})], "expected an integer, got {'a': 1} (dict)"),
    # ... as sent (a JSON object): the key and what it takes, once (pydantic had one error
    # per type of the union the value is not)
    ([{"key": "model.d_model", "value": [64]}],
     "model.d_model = [64] refused: must be one of 16, 32, 64; e.g."),
    ([{"key": "model.attn", "value": {"a": 1}}],
     "model.attn = {'a': 1} refused: must be one of 'prob', 'full'; e.g."),
    ([{"key": "model.distil", "value": {"a": 1}}],
     "model.distil = {'a': 1} refused: expected true or false, got {'a': 1} (dict); e.g."),
    # ... with no value at all: the change's form
    ([{"key": "model.attn"}], 'change 1 must be {"key": <dotted key>, "value": <number, string '
                              "or boolean>} ('value: Field required')"),
    # the list itself: empty, a mapping, duplicated keys, too many
    ([], "no changes given"),
    ({"model.d_model": 32}, "changes must be a list"),
    ([change("model.d_model", 32), change("model.d_model", 64)], "appears twice"),
    ([change("model.dropout", 0.1)] * 33, "send at most 32"),
    # a cross-field rule of InformerConfig, with the rule and an example
    ([change("data.label_len", 48), change("data.seq_len", 24)],
     "breaks a rule: data.label_len (48) must be <= data.seq_len (24); e.g. label_len 12"),
]


@pytest.mark.parametrize(("changes", "fragment"), REFUSALS,
                         ids=[f"{i}:{str(c)[:40]}" for i, (c, _) in enumerate(REFUSALS)])
def test_every_refusal_names_the_fix_and_leaves_the_files_byte_identical(
    ctx: ToolContext, changes: Any, fragment: str
) -> None:
    paths = ctx.workspace.paths
    edit_config(ctx, [change("model.dropout", 0.1)], "a first edit")
    before = paths.config.read_bytes(), paths.candidate.read_bytes(), ctx.state.model_dump()
    with pytest.raises(ConfigError) as caught:
        edit_config(ctx, changes, "bad")
    message = str(caught.value)
    assert fragment in message, message
    assert len(message) < 1200
    assert (paths.config.read_bytes(), paths.candidate.read_bytes(),
            ctx.state.model_dump()) == before


def test_nothing_in_a_change_is_executed(ctx: ToolContext, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for bad in (change(payload, 1), change("model.attn", payload),
                change("model.d_model", payload), change(f"model.{payload}", 1)):
        with pytest.raises(ConfigError):
            edit_config(ctx, [bad], payload)
    # Even written by the pure editor, a code string stays a string literal.
    out = apply_changes(ctx.workspace.paths.config.read_text(), [change("model.attn", payload)])
    path = tmp_path / "out.py"
    path.write_text(out)
    assert read_config_literal(path)["model"]["attn"] == payload
    assert not marker.exists()


def test_a_repeated_key_in_config_py_is_caught_by_the_read_back(ctx: ToolContext) -> None:
    paths = ctx.workspace.paths
    text = paths.config.read_text().replace('"d_model": 16,', '"d_model": 16, "d_model": 16,')
    paths.config.write_text(text)
    edit_config(ctx, [change("model.d_model", 32)], "the last occurrence is the one read")
    assert read_config_literal(paths.candidate)["model"]["d_model"] == 32


# Values of every type, including the awkward ones.
VALUES = st.one_of(
    st.integers(-(10**6), 10**6), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=80),
    st.sampled_from([c for p in DEFAULT_SPACE for c in p.choices]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
)
KEYS = st.one_of(
    st.sampled_from(DEFAULT_SPACE.keys), st.sampled_from(sorted(FIXED_KEYS)),
    st.sampled_from(["model", "model.embed", "training.optimizer_params", "", "model.d_model.x"]),
    st.text(max_size=30),
)




def _valid_values(param: Param) -> st.SearchStrategy[Any]:
    if param.choices:
        return st.sampled_from(param.choices)
    if param.kind == "bool":
        return st.booleans()
    if param.kind == "int":
        return st.integers(int(param.low or 0), int(param.high or 0))
    return st.floats(param.low, param.high)


# Mostly-valid pairs, so that successful edits are exercised as much as refusals.
PAIRS = st.one_of(
    st.tuples(KEYS, VALUES),
    st.sampled_from(list(DEFAULT_SPACE)).flatmap(
        lambda param: st.tuples(st.just(param.name), _valid_values(param))
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.lists(PAIRS, min_size=1, max_size=4), max_size=3))
def test_fuzz_the_candidate_is_valid_and_as_asked_or_byte_identical(
    edits: list[list[tuple[str, Any]]]
) -> None:
    with tempfile.TemporaryDirectory() as root:
        ctx = make_context(Path(root) / "ws")
        paths = ctx.workspace.paths
        expected = read_config_literal(paths.config)
        for batch in edits:
            before = paths.candidate.read_bytes() if paths.candidate.exists() else None
            try:
                edit_config(ctx, [change(k, v) for k, v in batch], "fuzz")
            except ConfigError:
                after = paths.candidate.read_bytes() if paths.candidate.exists() else None
                assert after == before
                continue
            for key, value in batch:
                section, *rest = key.split(".")
                node = expected[section]
                for part in rest[:-1]:
                    node = node[part]
                node[rest[-1]] = DEFAULT_SPACE.validate(key, value)  # normalised
            written = read_config_literal(paths.candidate)
            assert repr(written) == repr(expected)  # types too: 1, 1.0 and True differ
            event("edit applied")
            load_config(paths.candidate)  # and it passes the schema


def test_a_fresh_iteration_starts_again_from_the_incumbent(ctx: ToolContext) -> None:
    edit_config(ctx, [change("model.d_model", 32)], "wider")
    ctx.state.iteration += 1  # the session committed the iteration ...
    ctx.state.current = IterationScratch(iteration=2)  # ... and opened the next one
    diff = edit_config(ctx, [change("model.dropout", 0.1)], "more dropout")
    assert "d_model" not in diff
    assert load_config(ctx.workspace.paths.candidate).model.d_model == 16
