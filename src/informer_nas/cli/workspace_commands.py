"""``nas init`` and ``nas train``: create a workspace, and train one config into a run
directory by hand (the trainer subprocess a session launches)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from informer_nas.cli.options import (
    DEFAULT_WORKSPACE,
    Preset,
    PresetOption,
    QuietOption,
    VerboseOption,
    WorkspaceOption,
    finite_timeout,
    verbosity_of,
)
from informer_nas.cli.output import INTERRUPTED_EXIT, fail, quoted, user_errors
from informer_nas.log_setup import output_console
from informer_nas.plurals import counted


def init(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    preset: PresetOption = Preset.quick,
    data: Annotated[Path | None, typer.Option(help="A CSV (date column); default: ETTh1.")] = None,
    space: Annotated[Path | None, typer.Option(help=(
        'A JSON file narrowing the search, e.g. {"model.d_model": {"choices": [64, 128]}, '
        '"training.max_epochs": {"low": 6, "high": 6}}.'))] = None,
) -> None:
    """Create a workspace: a commented config.py from a preset and a fresh state."""
    from informer_nas.nas_system.search_space import read_narrowing_file
    from informer_nas.nas_system.workspace import Workspace

    with user_errors():
        narrowing = read_narrowing_file(space) if space else None
        created = Workspace.create(workspace, preset.value, data_path=data, narrowing=narrowing)
    typer.echo(f"created workspace {workspace} (preset {preset.value}); edit "
               f"{created.paths.config} or start with: nas run --iters 10 --workspace "
               f"{quoted(workspace)}")
    if data is not None:
        task = created.config().data
        typer.echo(f"data {task.path}: features {task.features}, target {task.target!r}, split "
                   f"{task.split!r}, freq {task.freq!r}, forecasting "
                   f"{counted(task.pred_len, 'step')} "
                   "(the task is fixed once the first run is trained)")
    for note in created.notes:
        typer.echo(f"  {note}")
    if narrowing:
        typer.echo(f"search narrowed on {counted(len(narrowing), 'key')} "
                   f"({', '.join(narrowing)})"
                   + _moved_values(preset.value, created.config(), narrowing))


def _moved_values(preset: str, config: Any, keys: Any) -> str:
    """``; starting values moved into it: k a -> b`` for the preset values outside it (and
    the look-back, moved to hold a longer label part)."""
    from informer_nas.informer.presets import preset_config
    from informer_nas.nas_system.search_space import flatten

    before, after = flatten(preset_config(preset).to_dict()), flatten(config.to_dict())
    shown = dict.fromkeys([*keys, "data.seq_len"])  # the narrowed keys first, no repeat
    moved = [f"{k} {before[k]!r} -> {after[k]!r}" for k in shown if before[k] != after[k]]
    return f"; starting values moved into it: {', '.join(moved)}" if moved else ""


def train(
    config: Annotated[Path, typer.Argument(help="A config.py file.", dir_okay=False)],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Where the run's files go.")],
    seed: Annotated[int | None, typer.Option(min=0, help="Overrides training.seed.")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, callback=finite_timeout, help="Seconds allowed.")] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Train one config into a run directory (the trainer subprocess, with a progress bar).

    Exit codes (the trainer's): 0 ok, 1 crashed or timed out, 2 invalid config,
    3 diverged, 4 out of memory, 5 pruned, 130 interrupted.
    """
    verbosity = verbosity_of(quiet, verbose)
    from informer_nas.display import SessionDisplay
    from informer_nas.informer.config import load_config
    from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
    from informer_nas.nas_system.records import EXIT_CODES, RunStatus
    from informer_nas.nas_system.status import format_mse

    console = output_console()
    with user_errors(config_error_code=EXIT_CODES[RunStatus.INVALID_CONFIG]):
        chosen_seed = load_config(config).training.seed if seed is None else seed
        finished = [name for name in ("metrics.json", "history.json", "best_model.pt")
                    if (run_dir / name).exists()]
        if finished:
            fail(f"{run_dir} already holds a run ({', '.join(finished)}); choose a new "
                 "--run-dir, or delete that one first")
        try:
            with SessionDisplay(console, verbosity, show_session=False) as display:
                outcome = LocalSubprocessExecutor().run(config, run_dir, chosen_seed, timeout,
                                                        on_event=display)
        except KeyboardInterrupt:
            typer.echo(f"interrupted; partial results in {run_dir}", err=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None
    metrics = outcome.metrics
    if outcome.status.is_success:
        console.print(f"ok: val MSE {format_mse(metrics.get('val_mse'))}, test MSE "
                      f"{format_mse(metrics.get('test_mse'))} in {outcome.seconds:.1f} s; "
                      f"files in {run_dir}")
        return
    hint = "; raise --timeout" if outcome.status.value == "timeout" else ""
    typer.echo(f"error: training {outcome.status.value}: {outcome.reason}{hint}", err=True)
    raise typer.Exit(EXIT_CODES.get(outcome.status, 1))
