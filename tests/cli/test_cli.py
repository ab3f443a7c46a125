"""The ``nas`` command line through Typer's CliRunner: exit codes, phrases, files.

The end-to-end tests train the ``tiny`` preset for real (seconds per run, one thread).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from informer_nas.cli import app
from informer_nas.display import SessionDisplay
from informer_nas.informer.config import read_config_literal
from informer_nas.informer.presets import preset_config
from informer_nas.informer.run_files import EXIT_CODES
from informer_nas.log_setup import Verbosity
from informer_nas.nas_system.config_file import render_config
from informer_nas.nas_system.session import StopReason

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LLM_ENV_KEYS = ("NAS_LLM_BASE_URL", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "NAS_PLANNER_MODEL")


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(arg) for arg in args])


def assert_one_line_error(result: Any, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LLM endpoint and no stray .env: the tpe brain, never the network."""
    for key in LLM_ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


# Start-up ---------------------------------------------------------------------------------


def test_import_is_light_and_fast() -> None:
    # `nas --help` must answer in under a second: nothing heavy at import time.
    code = (
        "import sys, time; t = time.perf_counter(); import informer_nas.cli; "
        "print(time.perf_counter() - t); print(' '.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, modules = out.stdout.splitlines()
    loaded = set(modules.split())
    heavy = {"torch", "agents", "informer_nas.agents", "optuna", "pandas", "matplotlib"}
    assert not heavy & loaded
    assert float(seconds) < 1.0


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"import sys; {code}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    return set(out.stdout.split())


def test_the_session_side_never_imports_torch_or_pandas() -> None:
    # The parent of a session, `nas doctor` and `nas replay` check the data file and record its
    # digest but never read the series (the trainer subprocess does): torch and pandas would
    # cost them about 2 s of CPU at every start.
    loaded = modules_after(
        "import informer_nas.api, informer_nas.nas_system.session, "
        "informer_nas.nas_system.doctor, informer_nas.tools.launch_training, "
        "informer_nas.agents.replay")
    assert not {"torch", "pandas"} & loaded


def test_checking_a_data_file_never_imports_torch() -> None:
    # `nas init --data` and a workspace's first session read and check the file (pandas)
    # without training on it
    loaded = modules_after(
        "from informer_nas.informer.config import DataSection; "
        "from informer_nas.informer.data import check_data_file, fit_csv; "
        "check_data_file(DataSection()); fit_csv(DataSection())")
    assert "torch" not in loaded and "pandas" in loaded


@pytest.mark.parametrize(("argv", "message"), [
    (["run"], "error: Missing option '--iters' / '-n'; see `nas run --help`"),
    (["frob"], "error: No such command 'frob'; see `nas --help`"),
    # an unknown choice: Typer's pydantic check, without pydantic's "Value error, "
    (["run", "--iters", "1", "--planner", "gpt"], "error: Invalid value for '--planner': 'gpt' "
     "is not one of 'tpe', 'random', 'llm', 'hybrid'; see `nas run --help`"),
    (["init", "--preset", "huge"], "error: Invalid value for '--preset': 'huge' is not one of "
     "'tiny', 'quick', 'paper'; see `nas init --help`"),
], ids=["missing-option", "unknown-command", "unknown-planner", "unknown-preset"])
def test_usage_error_is_one_line(argv: list[str], message: str) -> None:
    """The installed `nas` (cli.main), not Typer's boxed usage message."""
    out = subprocess.run([sys.executable, "-c", "from informer_nas.cli import main; main()",
                          *argv], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [message]


def test_a_closed_output_pipe_does_not_stop_the_search(tmp_path: Path) -> None:
    """`nas run ... | head -1`: the reader goes away after the first line; the search must
    go on (rich ended it with exit 1 and no message, budget 0/2)."""
    root = tmp_path / "ws"
    process = subprocess.Popen(
        [sys.executable, "-m", "informer_nas", "run", "--iters", "2", "--preset", "tiny",
         "--workspace", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"new workspace ")  # then "planner: tpe"
    process.stdout.close()  # as `head -1` exits
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    status = json.loads(invoke("status", "--workspace", root, "--json").stdout)
    assert status["budget"]["iterations_done"] == 2


@pytest.mark.parametrize(("code", "advice"), [
    ("ENOSPC", "free disk space, then run the command again (a session: `nas resume`)"),
    ("EFBIG", "a file-size limit was reached (ulimit -f)"),
    ("EACCES", "check that the path is a directory you can write to")])
def test_a_full_disk_is_one_line_with_what_to_do(tmp_path: Path, code: str, advice: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """'File too large' said to check the path was a writable directory."""
    import errno

    import informer_nas.api

    def fails(**_: Any) -> None:
        number = getattr(errno, code)
        raise OSError(number, os.strerror(number), str(tmp_path / "ws" / "agent_state.json"))

    monkeypatch.setattr(informer_nas.api, "run_nas_optimization", fails)
    result = invoke("run", "--iters", "1", "--preset", "tiny", "--workspace", tmp_path / "ws")
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "agent_state.json" in line and advice in line


def test_python_dash_m_informer_nas_is_the_nas_command(tmp_path: Path) -> None:
    """`python -m informer_nas` was "No module named informer_nas.__main__"."""
    def nas(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "informer_nas", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    out = nas("frob")
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: No such command 'frob'; see `nas --help`"]
    out = nas("--help")
    assert out.returncode == 0 and "Usage: nas " in out.stdout and "resume" in out.stdout
    out = nas()  # the help, and no "error: ; see `nas --help`" after it
    assert "Usage: nas " in out.stdout and "resume" in out.stdout and out.stderr == ""


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("init", "run", "resume", "status", "report", "replay", "train", "doctor"):
        assert command in result.output


def test_every_option_help_is_shown_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # The help is rendered as rich markup: a "[...]" in an option's text would vanish
    import typer.main

    monkeypatch.setenv("COLUMNS", "400")  # wide: few help texts wrap
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        # a wrapped help text continues after the panel's border on the next line
        rendered = " ".join(invoke(name, "--help").output.replace("│", " ").split())
        for param in command.params:
            text = " ".join((getattr(param, "help", None) or "").split())
            assert text in rendered, f"nas {name} --help lost part of {param.name}'s help"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["run"], id="run-needs-iters"),  # --iters is required
        pytest.param(["run", "--iters", "0"], id="iters-positive"),  # budget >= 1
        pytest.param(["run", "--iters", "2", "--planner", "gpt"], id="unknown-planner"),
        pytest.param(["init", "--preset", "huge"], id="unknown-preset"),
        pytest.param(["run", "--iters", "1", "-q", "-v"], id="quiet-and-verbose"),
        pytest.param(["status", "--bogus"], id="unknown-option"),
        pytest.param(["train", "config.py"], id="train-needs-run-dir"),
    ],
)
def test_bad_options_exit_2(args: list[str]) -> None:
    assert invoke(*args).exit_code == 2


# User errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "report", "resume"])
def test_missing_workspace_is_one_line_error(command: str, tmp_path: Path) -> None:
    # Not a workspace: what happened and what to do, one line, exit 1.
    result = invoke(command, "--workspace", tmp_path / "nowhere")
    assert_one_line_error(result)
    # what to do is a command that works: it creates the workspace
    advice = result.stderr.split("`")[1]
    assert advice.startswith("nas init ")
    assert invoke(*shlex.split(advice)[1:]).exit_code == 0
    assert invoke("status", "--workspace", tmp_path / "nowhere").exit_code == 0


def test_error_is_one_line_outside_pytest(tmp_path: Path) -> None:
    # A real process, without pytest's log capture: the message is printed exactly once.
    result = subprocess.run(
        [sys.executable, "-m", "informer_nas.cli", "status", "--workspace", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_train_missing_config_is_one_line_error(tmp_path: Path) -> None:
    result = invoke("train", tmp_path / "missing.py", "--run-dir", tmp_path / "r")
    assert_one_line_error(result, code=EXIT_CODES["invalid_config"])


def test_train_non_literal_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "evil.py"
    config.write_text("CONFIG = __import__('os').system('touch pwned')\n")
    assert_one_line_error(invoke("train", config, "--run-dir", tmp_path / "r"),
                          code=EXIT_CODES["invalid_config"])
    assert not (tmp_path / "pwned").exists()


def test_train_exits_as_the_trainer_on_an_invalid_config(tmp_path: Path) -> None:
    """`nas train` exited 1 where the trainer it runs exits 2 (invalid_config)."""
    config = tmp_path / "config.py"
    config.write_text(render_config(preset_config("tiny")).replace('"d_model": 16,',
                                                                   '"d_model": 15,'))
    trainer = subprocess.run(
        [sys.executable, "-m", "informer_nas.informer.train", "--config", str(config),
         "--run-dir", str(tmp_path / "by-trainer")], capture_output=True, text=True, timeout=60)
    result = invoke("train", config, "--run-dir", tmp_path / "by-nas")
    assert trainer.returncode == EXIT_CODES["invalid_config"], trainer.stderr
    assert_one_line_error(result, code=trainer.returncode)
    assert "model.d_model (15) must be divisible by model.n_heads" in result.stderr


@pytest.mark.parametrize("status", ["crashed", "diverged", "oom", "pruned", "interrupted"])
def test_train_exits_with_the_trainer_code_of_each_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    # every failed outcome of the subprocess: its own exit code, so scripts can tell them apart
    from informer_nas.nas_system import executor, local_executor
    from informer_nas.nas_system.records import RunStatus

    def finished(*_: Any, **__: Any) -> executor.TrainOutcome:
        return executor.TrainOutcome(RunStatus(status), "as the test says",
                                     exit_code=EXIT_CODES[status])

    monkeypatch.setattr(local_executor.LocalSubprocessExecutor, "run", finished)
    config = tmp_path / "config.py"
    config.write_text(render_config(preset_config("tiny")))
    result = invoke("train", config, "--run-dir", tmp_path / "run")
    assert result.exit_code == EXIT_CODES[status], result.output
    assert f"error: training {status}: as the test says" in result.stderr


def test_replay_missing_trace_is_one_line_error(tmp_path: Path) -> None:
    assert_one_line_error(invoke("replay", tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("text", [
    b"[]\n", b'{"kind": "header"}\n', b'{"kind": "header", "state": {"x": 1}, "config": ""}\n',
    b'{"kind": "header", "settings": "oops", "state": {}, "config": ""}\n', b"\xff\xfe\n",
], ids=["list", "bare-header", "bad-state", "bad-settings", "not-utf8"])
def test_malformed_trace_is_one_line_error(text: bytes, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_bytes(text)
    assert_one_line_error(invoke("replay", trace, "--workspace", tmp_path / "replayed"))
    assert not (tmp_path / "replayed").exists()


@pytest.mark.parametrize("text", [b"", b'{"kind": "header", "state": {"iter'],
                         ids=["empty", "torn-header"])
def test_trace_of_a_session_killed_as_it_started_says_nothing_to_replay(
        text: bytes, tmp_path: Path) -> None:
    """A SIGKILL as a session starts leaves its trace empty or with a torn header (found
    among the traces of a workspace killed 22 times): the message said only "no header
    line; it is not a session trace", not why nor what to do."""
    trace = tmp_path / "20261127T204854-random-5263.jsonl"
    trace.write_bytes(text)
    result = invoke("replay", trace, "--workspace", tmp_path / "replayed")
    assert_one_line_error(result)
    assert "stopped as it started and recorded nothing" in result.stderr
    assert "replay another traces/<session>.jsonl" in result.stderr


def test_paths_that_cannot_be_created_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    assert_one_line_error(invoke("init", "--workspace", tmp_path / "afile" / "ws"))
    assert_one_line_error(invoke("run", "--iters", "1", "--workspace", tmp_path / "afile" / "ws"))
    config = tmp_path / "config.py"
    config.write_bytes(b'CONFIG = {"model": {}}  # caf\xe9\n')
    assert_one_line_error(invoke("train", config, "--run-dir", tmp_path / "run"),
                          code=EXIT_CODES["invalid_config"])


def test_train_never_overwrites_a_finished_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"status": "ok"}')
    config = tmp_path / "config.py"  # tiny: were the run trained anyway, it takes seconds
    config.write_text(render_config(preset_config("tiny")))
    result = invoke("train", config, "--run-dir", run_dir)
    assert_one_line_error(result)
    assert "already holds a run" in result.stderr
    assert (run_dir / "metrics.json").read_text() == '{"status": "ok"}'


def test_a_trace_with_a_malformed_state_names_the_field_in_plain_words(tmp_path: Path) -> None:
    """It was pydantic's report on one line: "1 validation error for AgentState x Extra
    inputs are not permitted [type=extra_forbidden, ...] For further information visit"."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"kind": "header", "state": {"x": 1, "preset": 5}, "config": ""}\n')
    result = invoke("replay", trace, "--workspace", tmp_path / "replayed")
    assert_one_line_error(result)
    assert ("its header is malformed (state: preset: Input should be a valid string (got 5); x: "
            "unknown key; remove it or check the spelling); it cannot be replayed"
            ) in result.stderr


def test_failed_replay_leaves_no_temporary_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without --workspace the replay goes to a fresh temporary directory, whose path is only
    # printed on success; a replay that fails must not leave it behind.
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text('{"kind": "session_start"\n')
    assert_one_line_error(invoke("replay", garbled))
    assert list(temp_root.iterdir()) == []


# init / status / report on a fresh workspace ---------------------------------------------


@pytest.fixture
def fresh_workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    result = invoke("init", "--workspace", root, "--preset", "tiny")
    assert result.exit_code == 0, result.output
    return root


def test_init_creates_workspace(fresh_workspace: Path) -> None:
    assert (fresh_workspace / "config.py").is_file()
    assert (fresh_workspace / "agent_state.json").is_file()


def test_status_json_of_fresh_workspace(fresh_workspace: Path) -> None:
    result = invoke("status", "--workspace", fresh_workspace, "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["runs"] == [] and status["incumbent"] is None
    assert status["usage"]["total"]["input_tokens"] == 0


def test_status_table_of_fresh_workspace(fresh_workspace: Path) -> None:
    result = invoke("status", "--workspace", fresh_workspace)
    assert result.exit_code == 0, result.output
    assert "incumbent none yet" in result.stdout and "budget" in result.stdout
    assert "planner not chosen yet; budget 0/0" in result.stdout  # it read "planner ;"


@pytest.mark.parametrize("name", ["q[/red]w", "p[red]"])
def test_brackets_in_a_workspace_path_are_printed_as_written(tmp_path: Path, name: str) -> None:
    """Rich read them as markup: "[/red]" ended `nas status` in a traceback and "[red]"
    vanished from the path shown."""
    root = tmp_path / name / "ws"
    assert invoke("init", "--workspace", root, "--preset", "tiny").exit_code == 0
    result = invoke("status", "--workspace", root)
    assert result.exit_code == 0, result.output
    assert str(root) in "".join(result.stdout.split())  # wrapped at any character


def test_report_of_fresh_workspace(fresh_workspace: Path) -> None:
    result = invoke("report", "--workspace", fresh_workspace)
    assert result.exit_code == 0, result.output
    assert "report written" in result.stdout
    assert "Planner: not chosen yet" in (fresh_workspace / "report" / "report.md").read_text()
    assert (fresh_workspace / "report" / "progress.png").stat().st_size > 1000
    assert (fresh_workspace / "nas.log").is_file()


# status and report of a workspace with recorded runs (no training) -------------------------


@pytest.fixture
def populated(fresh_workspace: Path) -> Path:
    """Three recorded runs: an accepted baseline, a rejected one, an accepted improvement."""
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.records import ConfigChange, RunRecord, RunStatus
    from informer_nas.nas_system.state import load_state, save_state

    paths = WorkspacePaths(fresh_workspace.resolve())
    state = load_state(paths)
    for number, (val_mse, accepted) in enumerate([(0.5, True), (0.6, False), (0.4, True)]):
        run_id = f"run_{number:04d}"
        state.runs.append(RunRecord(
            run_id=run_id, iteration=number + 1, status=RunStatus.OK, accepted=accepted,
            verdict="accept" if accepted else "reject", val_mse=val_mse, test_mse=val_mse + 0.1,
            step_type="small", changes=[ConfigChange(key="model.dropout", value=0.1 * number)],
        ))
        epochs = [{"epoch": e, "train_loss": 1 / e, "val_loss": val_mse + 0.1 / e,
                   "val_mse": val_mse + 0.1 / e, "test_mse": val_mse + 0.2 / e} for e in (1, 2, 3)]
        paths.run_dir(run_id).mkdir(parents=True)
        (paths.run_dir(run_id) / "history.json").write_text(json.dumps({"epochs": epochs}))
        (paths.run_dir(run_id) / "config_used.py").write_text(paths.config.read_text())
        (paths.run_dir(run_id) / "metrics.json").write_text(json.dumps(
            {"status": "ok", "val_mse": val_mse, "test_mse": val_mse + 0.1, "seed": 0}))
    state.iteration, state.max_iterations, state.incumbent_run_id = 3, 5, "run_0002"
    state.planner = "tpe"
    save_state(paths, state)
    return fresh_workspace


def test_status_and_report_work_while_config_py_is_broken(populated: Path) -> None:
    """They read the records, not config.py: a hand edit that breaks it stopped both ("no
    training was started"). A session still refuses it."""
    config = populated / "config.py"
    config.write_text(config.read_text().replace("\nCONFIG = {", "\nCONFIG = {0.1 / 2: 1,"))
    status = invoke("status", "--workspace", populated, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["incumbent"]["run_id"] == "run_0002"
    report = invoke("report", "--workspace", populated, "--no-baseline")
    assert report.exit_code == 0, report.output
    assert "run_0002" in (populated / "report" / "report.md").read_text()
    refused = invoke("resume", "--workspace", populated, "--iters", "4")
    assert_one_line_error(refused)
    assert "is not a literal" in refused.stderr


def test_status_json_of_recorded_runs(populated: Path) -> None:
    result = invoke("status", "--workspace", populated, "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert [run["verdict"] for run in status["runs"]] == ["accept", "reject", "accept"]
    assert status["incumbent"]["run_id"] == "run_0002" and status["incumbent"]["val_mse"] == 0.4
    assert status["budget"]["iterations_left"] == 2
    assert status["runs"][1]["changes"] == [{"key": "model.dropout", "value": 0.1}]


def test_status_and_report_say_how_borderline_runs_were_decided(populated: Path) -> None:
    """A borderline result is accepted or rejected by the evaluator (or, when it fails, by
    the policy): the tables say which, and the confirmation seeds' mean beside the value."""
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.records import RunStatus, SeedResult
    from informer_nas.nas_system.state import load_state, save_state

    paths = WorkspacePaths(populated.resolve())
    state = load_state(paths)
    rejected, accepted = state.runs[1], state.runs[2]
    rejected.verdict, rejected.decided_by = "borderline", "policy"
    accepted.verdict, accepted.decided_by = "borderline", "evaluator"
    accepted.seeds = [SeedResult(seed=7, status=RunStatus.OK, val_mse=0.44,
                                 run_dir="runs/run_0002/seed_7")]
    accepted.mean_val_mse = 0.42
    save_state(paths, state)
    monkeypatch_width = {"COLUMNS": "140"}
    result = runner.invoke(app, ["status", "--workspace", str(populated)], env=monkeypatch_width)
    assert result.exit_code == 0, result.output
    assert re.search(r"run_0001\W.*reject \(policy\)", result.stdout), result.stdout
    assert re.search(r"run_0002\W.*0\.4 \(mean of 2: 0\.42\).*accept \(evaluator\)",
                     result.stdout), result.stdout
    status = json.loads(invoke("status", "--workspace", populated, "--json").stdout)
    assert [run["decided_by"] for run in status["runs"]] == [None, "policy", "evaluator"]
    assert status["runs"][2]["seeds"] == [{"seed": 7, "status": "ok", "val_mse": 0.44,
                                            "seconds": 0.0}]
    assert invoke("report", "--workspace", populated, "--no-baseline").exit_code == 0
    markdown = (populated / "report" / "report.md").read_text()
    assert "| reject (policy) |" in markdown and "| accept (evaluator) |" in markdown


def test_status_lists_the_last_runs_and_the_incumbent(fresh_workspace: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 rows pushed the summary off the screen: the last runs and the incumbent are
    listed, --all lists every run."""
    from informer_nas.cli.inspection_commands import STATUS_RUNS
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.records import RunRecord, RunStatus
    from informer_nas.nas_system.state import load_state, save_state

    paths = WorkspacePaths(fresh_workspace.resolve())
    state = load_state(paths)
    count = STATUS_RUNS + 20
    for number in range(count):
        state.runs.append(RunRecord(run_id=f"run_{number:04d}", iteration=number + 1,
                                    status=RunStatus.OK, accepted=number == 3,
                                    verdict="accept" if number == 3 else "reject",
                                    val_mse=0.5 + number / 1000))
    state.iteration, state.max_iterations, state.incumbent_run_id = count, count, "run_0003"
    save_state(paths, state)
    monkeypatch.setenv("COLUMNS", "120")
    listed = re.findall(r"run_\d{4}", invoke("status", "--workspace", fresh_workspace).stdout)
    assert listed == ["run_0003", *(f"run_{n:04d}" for n in range(count - STATUS_RUNS, count)),
                      "run_0003"]  # the table, then the incumbent's summary line
    shown = invoke("status", "--workspace", fresh_workspace).stdout
    assert f"({count - STATUS_RUNS - 1} earlier runs left out; nas status --all" in shown
    every = invoke("status", "--workspace", fresh_workspace, "--all").stdout
    assert len(set(re.findall(r"run_\d{4}", every))) == count and "left out" not in every


@pytest.mark.parametrize("columns", [60, 70, 120])
def test_status_table_never_cuts_run_ids_or_figures(populated: Path, columns: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the changes column gives way first (70 columns), then the step type (60)
    monkeypatch.setenv("COLUMNS", str(columns))
    result = invoke("status", "--workspace", populated)
    assert result.exit_code == 0, result.output
    for run_id, val_mse in (("run_0000", "0.5"), ("run_0001", "0.6"), ("run_0002", "0.4")):
        assert re.search(rf"{run_id}\W.*\W{val_mse}\W", result.stdout), result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    assert ("dropout=0.1" in result.stdout) == (columns == 120), result.stdout
    assert ("small" in result.stdout) == (columns > 60), result.stdout
    assert ("left out for the width" in result.stdout) == (columns < 120), result.stdout


def test_report_of_recorded_runs(populated: Path) -> None:
    result = invoke("report", "--workspace", populated)
    assert result.exit_code == 0, result.output
    report = populated / "report"
    assert (report / "incumbent_curve.png").stat().st_size > 1000
    markdown = (report / "report.md").read_text()
    assert "| run_0001 | 2 | small | dropout=0.1 | 0.6 |" in markdown
    assert "Incumbent: run_0002 (val MSE 0.4, test MSE 0.5)" in markdown
    page = (report / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 2
    assert not re.search(r"""src=['"](?!data:)""", page)  # nothing outside the file


def test_report_sets_the_linear_baseline_against_the_incumbent(
        populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("report", "--workspace", populated).exit_code == 0
    saved = json.loads((populated / "report" / "baseline.json").read_text())
    val_mse = saved["result"]["val_mse"]
    assert 0 < val_mse < 5 and saved["key"]["data"]["seq_len"] == 48  # the incumbent's
    line = next(line for line in (populated / "report" / "report.md").read_text().splitlines()
                if "Linear baseline" in line)
    change = abs(0.4 - val_mse) / val_mse  # the recorded incumbent's val MSE is 0.4
    assert f"val MSE {val_mse:.4g}" in line and f"{change:.1%}" in line
    assert ("lower" in line) == (0.4 < val_mse)
    assert "Linear baseline" in (populated / "report" / "report.html").read_text()

    # a second report reuses it: nothing is trained
    import informer_nas.informer.baseline as baseline

    def no_training(*_: Any, **__: Any) -> None:
        raise AssertionError("trained again")

    monkeypatch.setattr(baseline, "train_baseline", no_training)
    assert invoke("report", "--workspace", populated).exit_code == 0
    assert f"val MSE {val_mse:.4g}" in (populated / "report" / "report.md").read_text()

    # --no-baseline leaves it out
    assert invoke("report", "--workspace", populated, "--no-baseline").exit_code == 0
    assert "Linear baseline" not in (populated / "report" / "report.md").read_text()


def test_report_logs_the_baseline_in_one_line_not_its_epochs(populated: Path) -> None:
    """nas.log got about 200 INFO lines per baseline (its start, every epoch, its end)."""
    log = populated / "nas.log"
    log.unlink(missing_ok=True)
    assert invoke("report", "--workspace", populated).exit_code == 0
    lines = log.read_text().splitlines()
    assert not [line for line in lines if "informer_nas.informer.training" in line], lines
    (trained,) = [line for line in lines if "linear baseline" in line]
    val_mse = json.loads((populated / "report" / "baseline.json").read_text())["result"]["val_mse"]
    assert f"val MSE {val_mse:.4g}" in trained and "seq_len 48" in trained
    assert str(populated / "report" / "baseline.json") in trained
    assert len(lines) <= 4, lines  # the data read, the baseline, "report written"

    log.unlink()
    assert invoke("report", "--workspace", populated).exit_code == 0
    (reused,) = [line for line in log.read_text().splitlines() if "linear baseline" in line]
    assert "reused" in reused and f"val MSE {val_mse:.4g}" in reused


def test_report_retrains_the_baseline_for_another_data_section(populated: Path) -> None:
    assert invoke("report", "--workspace", populated).exit_code == 0
    config = populated / "runs" / "run_0002" / "config_used.py"  # the incumbent's snapshot
    config.write_text(config.read_text().replace('"seq_len": 48', '"seq_len": 36'))
    assert invoke("report", "--workspace", populated).exit_code == 0
    saved = json.loads((populated / "report" / "baseline.json").read_text())
    assert saved["key"]["data"]["seq_len"] == 36
    # a damaged or older cache is trained again, not trusted
    for damaged in ("{not json", json.dumps({"key": saved["key"], "result": {"val_mse": 1}})):
        (populated / "report" / "baseline.json").write_text(damaged)
        assert invoke("report", "--workspace", populated).exit_code == 0
        assert json.loads((populated / "report" / "baseline.json").read_text()) == {
            **saved, "result": {**saved["result"],
                                "train_seconds": pytest.approx(saved["result"]["train_seconds"],
                                                               abs=100)}}


def test_report_without_usable_data_says_why_there_is_no_baseline(populated: Path) -> None:
    config = populated / "runs" / "run_0002" / "config_used.py"
    config.write_text(config.read_text().replace('"path": None', '"path": "gone.csv"'))
    result = invoke("report", "--workspace", populated)
    assert result.exit_code == 0, result.output
    line = next(line for line in (populated / "report" / "report.md").read_text().splitlines()
                if "Linear baseline" in line)
    assert "not available" in line and "gone.csv" in line


def test_report_sets_no_baseline_on_data_the_incumbent_was_not_trained_on(
        populated: Path) -> None:
    """A data file changed since the incumbent trained: the baseline trained on it was
    called "on the incumbent's data" and its verdict could flip."""
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.state import load_state, save_state

    paths = WorkspacePaths(populated.resolve())
    state = load_state(paths)
    state.runs[2].data_digest = "sha256:" + "0" * 64  # the incumbent trained on other bytes
    save_state(paths, state)
    result = invoke("report", "--workspace", populated)
    assert result.exit_code == 0, result.output
    line = next(line for line in (populated / "report" / "report.md").read_text().splitlines()
                if "Linear baseline" in line)
    assert "not available" in line and "not the one the incumbent was trained on" in line
    assert not (populated / "report" / "baseline.json").exists()


def test_status_and_report_take_the_incumbent_config_from_its_run(
        populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # config.py edited by hand since: the incumbent's scores are for its own config
    config = populated / "config.py"
    config.write_text(config.read_text().replace('"seq_len": 48', '"seq_len": 36'))
    status = json.loads(invoke("status", "--workspace", populated, "--json").stdout)
    assert status["incumbent"]["config"]["data"]["seq_len"] == 48
    assert invoke("report", "--workspace", populated).exit_code == 0
    saved = json.loads((populated / "report" / "baseline.json").read_text())
    assert saved["key"]["data"]["seq_len"] == 48
    assert '"seq_len": 48' in (populated / "report" / "report.md").read_text()
    # without the run's snapshot, config.py is what there is
    (populated / "runs" / "run_0002" / "config_used.py").unlink()
    status = json.loads(invoke("status", "--workspace", populated, "--json").stdout)
    assert status["incumbent"]["config"]["data"]["seq_len"] == 36


def test_status_and_report_beside_a_running_session(
        populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import informer_nas.informer.baseline as baseline
    from informer_nas.nas_system.lock import workspace_lock
    from informer_nas.nas_system.paths import WorkspacePaths

    snapshot = populated / "runs" / "run_0002" / "config_used.py"
    snapshot.write_text(re.sub(r'"num_threads": \w+', '"num_threads": 2', snapshot.read_text()))
    threads: list[int | None] = []

    def record_threads(config: Any, **_: Any) -> None:
        threads.append(config.training.num_threads)
        raise RuntimeError("not trained in this test")

    monkeypatch.setattr(baseline, "train_baseline", record_threads)
    with workspace_lock(WorkspacePaths(populated.resolve())):  # a session holds it
        assert invoke("report", "--workspace", populated).exit_code == 0
        assert "- Session: running (pid " in (populated / "report" / "report.md").read_text()
        status = json.loads(invoke("status", "--workspace", populated, "--json").stdout)
        assert status["session"]["running"] and status["session"]["pid"] == os.getpid()
        assert "a session is running: pid" in invoke("status", "--workspace", populated).stdout
    assert invoke("report", "--workspace", populated).exit_code == 0
    assert threads == [1, 2]  # alone: the incumbent's own setting
    assert "Session:" not in (populated / "report" / "report.md").read_text()
    status = json.loads(invoke("status", "--workspace", populated, "--json").stdout)
    assert status["session"] == {"running": False, "pid": None, "since": None}
    assert "a session is running" not in invoke("status", "--workspace", populated).stdout


def test_report_html_images_decode_in_chromium(populated: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    assert invoke("report", "--workspace", populated).exit_code == 0
    page = (populated / "report" / "report.html").read_text()
    probe = ("<script>window.addEventListener('load', () => document.body.setAttribute("
             "'data-widths', [...document.images].map(i => i.naturalWidth).join(',')));"
             "</script></body>")
    probed = tmp_path / "probe.html"
    probed.write_text(page.replace("</body>", probe))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    widths = re.search(r'data-widths="([^"]*)"', dom)
    assert widths, dom[:500]
    assert [int(width) for width in widths.group(1).split(",")] == [800, 800]


def test_doctor_explains_and_repairs(populated: Path) -> None:
    assert invoke("doctor", "--workspace", populated).exit_code == 0
    (populated / "config.py").write_text("CONFIG = {'model': __import__('os')}\n")
    found = invoke("doctor", "--workspace", populated)
    assert found.exit_code == 1 and "config.py" in found.stdout and "--repair" in found.stdout
    repaired = invoke("doctor", "--workspace", populated, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "healthy" in repaired.stdout
    assert invoke("status", "--workspace", populated).exit_code == 0


# Planner choice and Ctrl+C (the session itself is replaced: these test the CLI's wiring) ---


@pytest.fixture
def recorded_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the session by one that records its options and reports a Ctrl+C."""
    import informer_nas.api
    from informer_nas.nas_system.session import SessionResult

    calls: list[dict[str, Any]] = []

    def fake_run(**kwargs: Any) -> SessionResult:
        calls.append(kwargs)
        if kwargs["planner"] == "random":  # Ctrl+C outside the session loop
            raise KeyboardInterrupt
        return SessionResult("interrupted", 0, 0, kwargs["iters"], None)

    monkeypatch.setattr(informer_nas.api, "run_nas_optimization", fake_run)
    return calls


def test_default_planner_is_tpe_offline(recorded_calls: list[dict[str, Any]]) -> None:
    result = invoke("run", "--iters", "2")
    assert "planner: tpe (default: no LLM endpoint configured)" in result.stdout
    assert recorded_calls[0]["planner"] == "tpe"


def test_run_says_when_it_creates_a_workspace(recorded_calls: list[dict[str, Any]],
                                              tmp_path: Path) -> None:
    # a misspelt --workspace started a new search with no word about it
    result = invoke("run", "--iters", "2", "--workspace", tmp_path / "ws_mispelt")
    assert f"new workspace {tmp_path / 'ws_mispelt'} (preset quick)" in result.stdout
    _with_a_session(tmp_path / "ws")
    result = invoke("run", "--iters", "2", "--workspace", tmp_path / "ws")
    assert "new workspace" not in result.stdout


def test_status_shows_a_run_left_running_by_a_killed_session_as_stopped(
        tmp_path: Path) -> None:
    """A session killed (SIGKILL) while training left its run "running" in the table,
    beside "no session running"; the next `nas resume` trains it again."""
    from informer_nas.nas_system.lock import workspace_lock
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.records import RunRecord, RunStatus
    from informer_nas.nas_system.state import load_state, save_state

    root = tmp_path / "ws"
    _with_a_session(root)
    paths = WorkspacePaths(root)
    state = load_state(paths)
    state.runs.append(RunRecord(run_id="run_0000", iteration=1, status=RunStatus.RUNNING))
    save_state(paths, state)
    summary = json.loads(invoke("status", "--workspace", root, "--json").stdout)
    assert summary["runs"][0]["orphaned"] is True and not summary["session"]["running"]
    assert "stopped (resume)" in invoke("status", "--workspace", root).stdout
    with workspace_lock(paths):  # a live session trains it
        summary = json.loads(invoke("status", "--workspace", root, "--json").stdout)
    assert summary["runs"][0]["orphaned"] is False


def test_a_workspace_path_that_does_not_exist_is_named_as_such(tmp_path: Path) -> None:
    result = invoke("status", "--workspace", tmp_path / "nowhere")
    assert_one_line_error(result)
    assert f"{tmp_path / 'nowhere'} does not exist; check the path" in result.stderr


def test_default_planner_is_hybrid_with_dotenv(
    recorded_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("NAS_LLM_BASE_URL=http://127.0.0.1:9/v1\n")
    result = invoke("run", "--iters", "2")
    assert "planner: hybrid (default: an LLM endpoint is configured)" in result.stdout
    assert recorded_calls[0]["planner"] == "hybrid"


def test_options_reach_the_session(recorded_calls: list[dict[str, Any]]) -> None:
    invoke("run", "--iters", "4", "--planner", "tpe", "--seed", "7", "--confirm-seeds", "2",
           "--timeout", "60", "--no-prune", "--fallback", "tpe", "--preset", "tiny")
    options = recorded_calls[0]
    assert (options["iters"], options["seed"], options["confirm_seeds"]) == (4, 7, 2)
    assert (options["timeout"], options["prune"], options["fallback"]) == (60, False, "tpe")
    assert options["preset"] == "tiny"


@pytest.mark.parametrize(("name", "value"), [
    ("NAS_LLM_MAX_RETRIES", "nan"), ("NAS_LLM_MAX_RETRIES", "1e400"),
    ("NAS_LLM_MAX_RETRIES", "-1"), ("NAS_LLM_TIMEOUT", "nan"), ("NAS_LLM_TIMEOUT", "-5"),
    ("NAS_LLM_PRICE_OUT", "inf"),
])
def test_malformed_llm_setting_is_refused_before_the_session(
    name: str, value: str, recorded_calls: list[dict[str, Any]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was a traceback (or a message blaming NAS_LLM_BASE_URL) after the session and its
    trace were recorded; now one line naming the variable, and no workspace."""
    monkeypatch.setenv("NAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv(name, value)
    root = tmp_path / "ws"
    result = invoke("run", "-n", "1", "--preset", "tiny", "--workspace", root)
    assert_one_line_error(result)
    assert f"{name}={value!r} is not " in result.stderr and f"e.g. {name}=" in result.stderr
    assert not root.exists() and not recorded_calls


def test_malformed_llm_setting_is_refused_before_a_resume(
    recorded_calls: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    _with_a_session(root)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test-0123456789")
    monkeypatch.setenv("NAS_LLM_TIMEOUT", "nan")
    before = sorted(path.name for path in root.rglob("*"))
    result = invoke("resume", "--workspace", root)
    assert_one_line_error(result)
    assert "NAS_LLM_TIMEOUT='nan' is not a finite number of seconds > 0" in result.stderr
    assert sorted(path.name for path in root.rglob("*")) == before and not recorded_calls


def test_a_malformed_llm_setting_is_ignored_by_the_tpe_planner(
    recorded_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("NAS_LLM_MAX_RETRIES", "nan")
    invoke("run", "-n", "1", "--planner", "tpe")
    assert recorded_calls[0]["planner"] == "tpe"


def test_blank_llm_variables_mean_no_endpoint(
    recorded_calls: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NAS_LLM_BASE_URL=" " or OPENAI_API_KEY=" " chose the hybrid planner ("Connection
    error" next); blank is unset, in the environment and in .env."""
    monkeypatch.setenv("NAS_LLM_BASE_URL", " ")
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    (tmp_path / ".env").write_text('OPENROUTER_API_KEY=" "\n')
    result = invoke("run", "--iters", "2")
    assert "planner: tpe (default: no LLM endpoint configured)" in result.stdout
    assert recorded_calls[0]["planner"] == "tpe"


@pytest.mark.parametrize(("value", "message"), [
    ("inf", "must be a finite number of seconds >= 1, got inf"),
    ("1e400", "must be a finite number of seconds >= 1, got inf"),
    ("nan", "'--timeout'"), ("0", "'--timeout'"), ("-5", "'--timeout'"),
])
@pytest.mark.parametrize("command", ["run", "train"])
def test_timeout_out_of_range_is_a_usage_error(
    command: str, value: str, message: str, tmp_path: Path
) -> None:
    """--timeout inf was "timeout must be > 0 seconds, got inf", exit 1, and left an empty
    workspace behind (nas train: no limit at all); now exit 2, nothing created."""
    root = tmp_path / "ws"
    args = (["run", "-n", "1", "--preset", "tiny", "--workspace", str(root)]
            if command == "run" else ["train", "config.py", "--run-dir", str(root)])
    out = subprocess.run([sys.executable, "-c", "from informer_nas.cli import main; main()",
                          *args, "--timeout", value], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--timeout'")
    assert message in lines[0] and f"see `nas {command} --help`" in lines[0]
    assert not root.exists()


def _with_a_session(root: Path) -> None:
    """A workspace whose first session was recorded (then it can be resumed)."""
    from informer_nas.nas_system.state import SessionInfo, load_state, now_iso, save_state
    from informer_nas.nas_system.workspace import Workspace

    paths = Workspace.create(root, "tiny").paths
    state = load_state(paths)
    state.sessions.append(SessionInfo(session_id="s", started_at=now_iso(), planner="tpe",
                                      trace_file="traces/s.jsonl"))
    save_state(paths, state)


@pytest.mark.parametrize("planner", [
    pytest.param("tpe", id="session-saved-state"),  # the loop caught Ctrl+C and saved
    pytest.param("random", id="keyboard-interrupt"),  # Ctrl+C before the loop started
])
def test_ctrl_c_names_resume_command(
    planner: str, recorded_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    _with_a_session(tmp_path / "ws")
    result = invoke("run", "--iters", "2", "--workspace", tmp_path / "ws", "--planner", planner)
    assert result.exit_code == 130
    assert f"nas resume --workspace {tmp_path / 'ws'}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("made", ["nothing", "workspace"])
def test_ctrl_c_before_the_first_session_says_to_run_the_command_again(
    made: str, recorded_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    # stopped before the workspace, or its first session, was recorded: `nas resume` would
    # fail (no workspace) or run nothing (no budget), so it must not be the advice
    if made == "workspace":
        from informer_nas.nas_system.workspace import Workspace

        Workspace.create(tmp_path / "ws", "tiny")
    result = invoke("run", "--iters", "2", "--workspace", tmp_path / "ws", "--planner", "random")
    assert result.exit_code == 130
    assert "interrupted before the search started" in result.stderr
    assert "run the same command again" in result.stderr and "nas resume" not in result.stderr


@pytest.mark.parametrize(("stop", "message"), [
    ("budget", "no iteration of this session trained a candidate (the last: planning "
               "failure: Invalid JSON when parsing model output); fix the cause"),
    ("no_candidates", "stopped: 3 iterations in a row ended without a candidate"),
])
def test_a_session_that_searched_nothing_fails_with_what_to_do(
        stop: StopReason, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It printed "done: 2/2 iterations, 0 runs" and exited 0; three failures in a row said
    the model was unavailable (it answered) and named a resume with no budget left."""
    import informer_nas.api
    from informer_nas.nas_system.session import SessionResult

    root = tmp_path / "ws"
    _with_a_session(root)
    why = "planning failure: Invalid JSON when parsing model output"
    done = SessionResult(stop, 2, 2, 2, None, f"3 iterations in a row ended without a "
                         f"candidate; the last: {why}" if stop != "budget" else why, 2)
    monkeypatch.setattr(informer_nas.api, "run_nas_optimization", lambda **_: done)
    result = invoke("run", "--iters", "2", "--workspace", root)
    assert_one_line_error(result)
    assert message in result.stderr
    assert f"nas resume --workspace {root} --iters 12" in result.stderr  # the budget is spent


def test_a_count_of_one_is_singular(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of one iteration with one run and one LLM request read "1/1 iterations, 1
    runs", "1 requests" (and "the budget of 1 iteration is spent" beside it); "1 problem(s)
    left", "narrowed on 1 keys"."""
    import informer_nas.api
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.records import RoleUsage, RunRecord, RunStatus
    from informer_nas.nas_system.session import SessionResult
    from informer_nas.nas_system.state import load_state, save_state

    root = tmp_path / "ws"
    _with_a_session(root)
    paths = WorkspacePaths(root.resolve())
    state = load_state(paths)
    state.iteration = state.max_iterations = 1
    state.runs.append(RunRecord(run_id="run_0000", iteration=1, status=RunStatus.OK,
                                accepted=True, verdict="accept", val_mse=0.5, test_mse=0.6))
    state.incumbent_run_id = "run_0000"
    state.usage["planner"] = RoleUsage(requests=1, input_tokens=10, output_tokens=2)
    save_state(paths, state)
    spent = SessionResult("budget", 0, 1, 1, "run_0000")
    monkeypatch.setattr(informer_nas.api, "run_nas_optimization", lambda **_: spent)
    result = invoke("resume", "--workspace", root)
    assert result.exit_code == 0, result.output
    assert "done: 1/1 iteration, 1 run\n" in result.stdout
    assert "nothing to run: the budget of 1 iteration is spent" in result.stdout
    result = invoke("status", "--workspace", root)
    assert "budget 1/1 iteration, " in result.stdout and ", 1 request, " in result.stdout
    assert invoke("report", "--workspace", root, "--no-baseline").exit_code == 0
    assert "Budget: 1 of 1 iteration, 1 run, " in (root / "report" / "report.md").read_text()
    space = tmp_path / "space.json"
    space.write_text('{"model.d_model": {"choices": [16, 32]}}')
    result = invoke("init", "--workspace", tmp_path / "narrowed", "--space", space)
    assert "search narrowed on 1 key (model.d_model)" in result.stdout, result.output
    config = tmp_path / "narrowed" / "config.py"
    config.write_text(config.read_text().replace('"attn": "prob"', '"attn": "sparse"'))
    result = invoke("doctor", "--workspace", tmp_path / "narrowed")
    assert result.exit_code == 1 and ": 1 problem left; " in result.stdout, result.output


def test_a_misspelt_target_is_refused_before_the_first_training(tmp_path: Path) -> None:
    """The first training failed on it (invalid_config), the iteration was spent, and
    `nas run --iters 1` ended "done", exit 0."""
    root = tmp_path / "ws"
    assert invoke("init", "--workspace", root, "--preset", "tiny").exit_code == 0
    config = root / "config.py"
    config.write_text(config.read_text().replace('"target": "OT"', '"target": "TO"'))
    result = invoke("run", "--iters", "1", "--workspace", root)
    assert_one_line_error(result)
    assert "target column 'TO' not found; set data.target to one of" in result.stderr
    status = json.loads(invoke("status", "--workspace", root, "--json").stdout)
    assert status["budget"]["iterations_done"] == 0 and not list((root / "runs").iterdir())


def test_resume_of_a_workspace_without_a_session_says_to_start_one(tmp_path: Path) -> None:
    assert invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny").exit_code == 0
    result = invoke("resume", "--workspace", tmp_path / "ws")
    assert_one_line_error(result)
    assert "no search has started" in result.stderr
    assert f"nas run --workspace {tmp_path / 'ws'} --iters" in result.stderr


# Display ----------------------------------------------------------------------------------


def test_display_draws_session_and_trainer_events() -> None:
    console = Console(record=True, width=120, force_terminal=False)
    def progress(trainer_event: dict[str, Any]) -> dict[str, Any]:
        return {"event": "progress", "run_id": "run_0000", "trainer_event": trainer_event}

    events: list[dict[str, Any]] = [
        {"event": "iteration_start", "iteration": 1, "max_iterations": 3},
        {"event": "candidate", "run_id": "run_0000", "rationale": "underfits",
         "changes": [{"key": "training.optimizer_params.lr", "value": 0.001}]},
        progress({"event": "start", "max_epochs": 2, "steps_per_epoch": 8, "n_params": 123}),
        progress({"event": "step", "epoch": 1, "step": 4, "steps": 8, "loss": 0.5}),
        progress({"event": "epoch", "epoch": 1, "max_epochs": 2, "train_loss": 0.5,
                  "val_mse": 0.4}),
        progress({"event": "done", "val_mse": 0.4}),
        {"event": "plan", "step_type": "small", "plan": "raise lr", "reason": "underfits"},
        {"event": "verdict", "run_id": "run_0000", "verdict": "accept", "accepted": True,
         "val_mse": 0.4, "incumbent_run_id": "run_0000", "incumbent_val_mse": 0.4},
        {"event": "something_new"},  # unknown events are ignored
        progress({"event": "epoch", "epoch": "x"}),  # a malformed event never stops a session
        {"event": "session_end", "stopped_by": "budget"},
    ]
    with SessionDisplay(console, "verbose", planner="tpe") as display:
        for event in events:
            display(event)
    text = console.export_text()
    for phrase in ("lr=0.001", "small: raise lr", "epoch 1/2", "run_0000 accepted (accept)",
                   "session ended: budget"):
        assert phrase in text


def test_a_failed_training_names_its_iteration_and_run() -> None:
    """The failure is printed when the training ends, before that iteration's planner line:
    without the iteration and run it read as part of the iteration before."""
    console = Console(record=True, width=120, force_terminal=False)
    with SessionDisplay(console, "normal", planner="tpe") as display:
        display({"event": "iteration_start", "iteration": 4, "max_iterations": 5})
        display({"event": "progress", "run_id": "run_0004", "trainer_event": {
            "event": "failed", "status": "pruned", "reason": "val MSE above the median"}})
    assert "[4/5] run_0004 training pruned: val MSE above the median" in console.export_text()


SCREEN_KEY = "sk-screen-SECRET-0123456789abcdef"


def model_events(text: str) -> list[dict[str, Any]]:
    """An iteration whose plan, planning failure and verdict all carry ``text``."""
    return [{"event": "iteration_start", "iteration": 1, "max_iterations": 2},
            {"event": "plan", "step_type": "small", "plan": text, "reason": text},
            {"event": "verdict", "run_id": "run_0000", "verdict": "reject", "accepted": False,
             "val_mse": 0.4, "reason": text},
            {"event": "planning_failure", "reason": f"planning failure: {text}"}]


@pytest.mark.parametrize("verbosity", ["normal", "verbose"])
def test_model_text_on_screen_is_redacted(verbosity: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A model echoing the key: the records said [REDACTED], the screen showed the key."""
    monkeypatch.setenv("OPENAI_API_KEY", SCREEN_KEY)  # read as the log handlers read it
    console = Console(record=True, width=120, force_terminal=False)
    with SessionDisplay(console, verbosity, planner="llm") as display:
        for event in model_events(f"dropout 0.2 (authorised with {SCREEN_KEY})"):
            display(event)
    text = console.export_text()
    assert "small: dropout 0.2 (authorised with [REDACTED])" in text
    assert SCREEN_KEY not in text and SCREEN_KEY[10:-4] not in text


def test_long_model_text_is_one_line_unless_verbose() -> None:
    """A plan of the stored cap (2,000 characters, with newlines) filled ~26 lines a turn."""
    plan = "raise d_model\n" + "because the curve is flat " * 76
    normal, verbose = (Console(record=True, width=100, force_terminal=False) for _ in "ab")
    levels: tuple[tuple[Console, Verbosity], ...] = ((normal, "normal"), (verbose, "verbose"))
    for console, verbosity in levels:
        with SessionDisplay(console, verbosity, planner="llm", secrets=()) as display:
            for event in model_events(plan):
                display(event)
    lines = normal.export_text().splitlines()
    assert len(lines) == 3 and all(len(line) <= 100 for line in lines), lines
    assert lines[0].startswith("[1/2] planner small: raise d_model because the curve")
    assert lines[1].startswith("[1/2] run_0000 rejected (reject)")
    assert lines[2].startswith("[1/2] no candidate: planning failure: raise d_model")
    assert " ".join(plan.split()) in " ".join(verbose.export_text().split())  # all of it


# End to end on the tiny preset -------------------------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`nas run --iters 3` then `nas resume --iters 5` on one tiny workspace."""
    root = tmp_path_factory.mktemp("e2e") / "ws"
    with pytest.MonkeyPatch.context() as patch:
        for key in LLM_ENV_KEYS:
            patch.delenv(key, raising=False)
        patch.chdir(root.parent)
        first = invoke("run", "--iters", "3", "--planner", "tpe", "--preset", "tiny",
                       "--workspace", root, "--quiet")
        second = invoke("resume", "--workspace", root, "--iters", "5", "--quiet")
        yield {"root": root, "run": first, "resume": second}


def test_run_and_resume_succeed(session: dict[str, Any]) -> None:
    assert session["run"].exit_code == 0, session["run"].output
    assert "done: 3/3 iterations" in session["run"].stdout
    assert session["resume"].exit_code == 0, session["resume"].output
    assert "done: 5/5 iterations" in session["resume"].stdout


def test_status_json_shows_five_runs(session: dict[str, Any]) -> None:
    result = invoke("status", "--workspace", session["root"], "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert [run["run_id"] for run in status["runs"]] == [f"run_{i:04d}" for i in range(5)]
    assert status["budget"]["iterations_done"] == 5
    assert status["incumbent"]["val_mse"] > 0


def test_status_table(session: dict[str, Any]) -> None:
    result = invoke("status", "--workspace", session["root"])
    assert result.exit_code == 0, result.output
    assert "run_0004" in result.stdout and "incumbent run_" in result.stdout


def test_nas_log_written(session: dict[str, Any]) -> None:
    assert (session["root"] / "nas.log").stat().st_size > 0


def test_report_writes_files(session: dict[str, Any]) -> None:
    result = invoke("report", "--workspace", session["root"])
    assert result.exit_code == 0, result.output
    report = session["root"] / "report"
    for name in ("progress.png", "incumbent_curve.png", "report.md", "report.html"):
        assert (report / name).stat().st_size > 0, name
    markdown = (report / "report.md").read_text()
    assert "run_0004" in markdown and "## Incumbent config" in markdown


def test_replay_of_session_trace_is_identical(session: dict[str, Any], tmp_path: Path) -> None:
    traces = sorted((session["root"] / "traces").glob("*.jsonl"))
    assert traces, "the session recorded no trace"
    result = invoke("replay", traces[0], "--workspace", tmp_path / "replayed")
    assert result.exit_code == 0, result.output
    assert "replay identical" in result.stdout


def test_replay_of_a_workspace_replays_its_latest_session(session: dict[str, Any],
                                                          tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(session["root"], root)
    traces = sorted((root / "traces").glob("*.jsonl"))
    (root / "traces" / "20000101T000000-tpe-1.jsonl").write_text("not a trace\n")  # older
    result = invoke("replay", root, "--workspace", tmp_path / "replayed")
    assert result.exit_code == 0, result.output
    assert (f"replaying {traces[-1]} (the latest of {len(traces) + 1} session traces)"
            in result.stdout)
    assert "replay identical" in result.stdout


def test_replay_of_a_folder_without_traces_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    assert_one_line_error(invoke("replay", tmp_path))


def test_train_writes_run_directory(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(f"CONFIG = {preset_config('tiny').to_dict()!r}\n")
    result = invoke("train", config, "--run-dir", tmp_path / "run", "--seed", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert "ok: val MSE" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["seed"] == 3


def test_init_with_a_space_file_narrows_the_search(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text('{"model.d_model": {"choices": [64, 32]}, "model.revin": {"choices": [true]}}')
    result = invoke("init", "--workspace", "ws", "--preset", "tiny", "--space", space)
    assert result.exit_code == 0, result.output
    assert "search narrowed on 2 keys (model.d_model, model.revin)" in result.output
    assert "moved into it: model.d_model 16 -> 32, model.revin False -> True" in result.output
    assert "tunable: one of 32, 64" in (tmp_path / "ws" / "config.py").read_text()


def test_init_says_the_look_back_moved_to_hold_a_narrowed_label_part(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text('{"data.label_len": {"choices": [168]}}')
    result = invoke("init", "--workspace", "ws", "--preset", "quick", "--space", space)
    assert result.exit_code == 0, result.output
    assert ("moved into it: data.label_len 48 -> 168, data.seq_len 96 -> 168"
            in " ".join(result.output.split()))


def test_init_with_a_bad_space_file_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text('{"model.d_model": {"choices": [300]}}')
    result = invoke("init", "--workspace", "ws", "--space", space)
    assert_one_line_error(result)
    assert "model.d_model choice 300 is not one of" in result.stderr
    assert not (tmp_path / "ws").exists()


def write_csv(path: Path, rows: int, bad_row: int | None = None) -> Path:
    lines = ["date,a,load"]
    for row in range(rows):
        stamp = f"2020-01-{1 + row // 24:02d} {row % 24:02d}:00:00"
        value = "x" if row == bad_row else f"{row % 7 / 7:.3f}"
        lines.append(f"{stamp},{value},{row % 5 / 5:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_init_with_own_data_fits_target_and_split(tmp_path: Path) -> None:
    """A CSV without OT, shorter than the ETT months: its last column, a ratio split."""
    csv = write_csv(tmp_path / "mine.csv", rows=600)
    result = invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny", "--data", csv)
    assert result.exit_code == 0, result.output
    assert "target 'load'" in result.stdout and "split 'ratio'" in result.stdout
    data = read_config_literal(tmp_path / "ws" / "config.py")["data"]
    assert (data["target"], data["split"], data["path"]) == ("load", "ratio", str(csv))


@pytest.mark.parametrize(("rows", "bad_row", "phrase"), [
    (600, 30, "non-numeric"), (40, None, "fewer than seq_len + pred_len")])
def test_init_with_unusable_data_is_one_line_and_creates_nothing(
        tmp_path: Path, rows: int, bad_row: int | None, phrase: str) -> None:
    csv = write_csv(tmp_path / "mine.csv", rows=rows, bad_row=bad_row)
    result = invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny", "--data", csv)
    assert_one_line_error(result)
    assert phrase in result.stderr and not (tmp_path / "ws").exists()



@pytest.mark.parametrize(("load", "phrase"), [
    # a constant target: the session refused it at its start, after init said all was well
    (lambda row: "2.5", "target column 'load' is constant (2.5)"),
    # a value float32 training overflows on: the same
    (lambda row: "1e30" if row == 500 else f"{row % 5 / 5:.3f}", "too far from the train"),
], ids=["constant-target", "too-large-value"])
def test_init_refuses_data_every_training_would_refuse(
        tmp_path: Path, load: Callable[[int], str], phrase: str) -> None:
    rows = [f"2020-01-{1 + row // 24:02d} {row % 24:02d}:00:00,{row % 7 / 7:.3f},{load(row)}"
            for row in range(600)]
    csv = tmp_path / "mine.csv"
    csv.write_text("\n".join(["date,a,load", *rows]) + "\n")
    result = invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny", "--data", csv)
    assert_one_line_error(result)
    assert phrase in result.stderr and not (tmp_path / "ws").exists()

def write_dated_csv(path: Path, dates: list[str]) -> Path:
    lines = ["date,a,OT", *(f"{d},{i % 7 / 7:.3f},{i % 5 / 5:.3f}" for i, d in enumerate(dates))]
    path.write_text("\n".join(lines) + "\n")
    return path


def stamps(rows: int, step: str) -> list[str]:
    import pandas as pd

    return list(pd.date_range("2020-01-01", periods=rows, freq=step).strftime("%Y-%m-%d %H:%M:%S"))


def test_init_with_15_minute_data_sets_freq_t_and_prints_why(tmp_path: Path) -> None:
    csv = write_dated_csv(tmp_path / "mine.csv", stamps(600, "15min"))
    result = invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny", "--data", csv)
    assert result.exit_code == 0, result.output
    assert "freq 't'" in result.stdout
    notes = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    assert any(n.startswith("freq 't'") and "15 minutes" in n for n in notes), result.stdout
    assert any(n.startswith("split 'ratio'") for n in notes), result.stdout
    data = read_config_literal(tmp_path / "ws" / "config.py")["data"]
    assert (data["freq"], data["split"]) == ("t", "ratio")


def test_init_with_missing_rows_says_where_the_dates_jump(tmp_path: Path) -> None:
    # rows 100-109 missing: windows across the jump join rows 11 hours apart (it said nothing)
    dates = stamps(600, "1h")
    del dates[100:110]
    csv = write_dated_csv(tmp_path / "mine.csv", dates)
    result = invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny", "--data", csv)
    assert result.exit_code == 0, result.output
    notes = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    uneven = [note for note in notes if note.startswith("uneven dates")]
    assert len(uneven) == 1, result.stdout
    assert "1 step of 589 between rows is not 1 hour" in uneven[0]
    assert "11 hours, between lines 101 and 102" in uneven[0]
    assert "fill the missing rows" in uneven[0]
    evenly = write_dated_csv(tmp_path / "even.csv", stamps(600, "1h"))
    result = invoke("init", "--workspace", tmp_path / "ws2", "--preset", "tiny", "--data", evenly)
    assert result.exit_code == 0 and "uneven" not in result.stdout

@pytest.mark.parametrize("case", ["shuffled", "repeated"])
def test_init_with_unordered_dates_is_one_line_and_creates_nothing(
        tmp_path: Path, case: str) -> None:
    dates = stamps(600, "1h")
    if case == "shuffled":
        dates[40], dates[41] = dates[41], dates[40]
    else:
        dates[41] = dates[40]
    csv = write_dated_csv(tmp_path / "mine.csv", dates)
    result = invoke("init", "--workspace", tmp_path / "ws", "--preset", "tiny", "--data", csv)
    assert_one_line_error(result)
    message = result.stderr
    assert str(csv) in message and "line 43" in message and "line 42" in message
    assert dates[40] in message and dates[41] in message
    assert "sort the file by date and remove duplicate timestamps" in message
    assert not (tmp_path / "ws").exists()
