"""The ``launch_training`` tool, and the confirmation seeds of the noise-aware gate.

Crash safety: the run record is saved with status ``running`` before the trainer starts,
so a ``kill -9`` at any instant leaves either no record (nothing was trained) or a
``running`` one that the next start marks interrupted. A run id is never reused.

Seeds: the main seed of a run is derived from the session's base seed and the iteration
number (``run_seed``), so resubmitting a config gives a fresh sample of the seed noise, and
an iteration redone after a crash trains with the seed it had (a resumed session
reproduces an uninterrupted one; the run id, never reused, would not). The
confirmation seeds (``confirmation_seeds``) are the same list for every run, so a
candidate and the incumbent can be compared on their means over the same seeds.

Pruning (``nas_system/pruning.py``): a main-seed launch gets per-epoch val-MSE thresholds
from the earlier runs that finished ok (unless ``settings.prune`` is off); a pruned run is
recorded with status ``pruned`` and a reason naming the epoch and the threshold, and the
gate rejects it. Confirmation-seed runs are never pruned.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import re
import shlex
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from informer_nas.errors import EnvironmentFailure, LaunchError, NasError
from informer_nas.informer.config import InformerConfig, load_config
from informer_nas.informer.data_files import data_file, file_digest
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.executor import EventCallback, RunInterrupted, TrainOutcome
from informer_nas.nas_system.pruning import (
    PrunePlan,
    PruningSettings,
    plan_for_runs,
    prune_decision,
    read_val_curve,
)
from informer_nas.nas_system.records import RunRecord, RunStatus, SeedResult
from informer_nas.nas_system.runs import find_run, incumbent, new_run_id
from informer_nas.nas_system.seeds import CONFIRMATION, MAX_SEED, TRAINING, derived_seed
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import HOT_RUNS, IterationScratch, now_iso
from informer_nas.nas_system.task import data_problem
from informer_nas.tools.summarize_curve import curve_summary, load_history

if TYPE_CHECKING:
    from informer_nas.tools.context import ToolContext

logger = logging.getLogger(__name__)

_METRIC_KEYS = ("val_mse", "val_mae", "test_mse", "test_mae")


def run_seed(base_seed: int, iteration: int) -> int:
    """The main seed of the run of ``iteration``, derived from the base seed."""
    return derived_seed(base_seed, TRAINING, iteration)


def confirmation_seeds(base_seed: int, count: int) -> list[int]:
    """The ``count`` confirmation seeds, identical for every run of a session."""
    return [derived_seed(base_seed, CONFIRMATION, k) for k in range(1, count + 1)]


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _tagged(on_progress: EventCallback | None, **tags: Any) -> EventCallback | None:
    """Forward trainer events with the run id (and seed) added."""
    if on_progress is None:
        return None
    callback = on_progress

    def forward(event: dict[str, Any]) -> None:
        callback({**event, **tags})

    return forward


def _candidate(ctx: ToolContext) -> tuple[Path, InformerConfig]:
    """``candidate.py`` and its config; created from ``config.py`` when no edit was made
    this iteration. A ConfigError here costs no run id."""
    paths = ctx.workspace.paths
    if not paths.candidate.exists():
        atomic_write_text(paths.candidate, paths.config.read_text(encoding="utf-8"))
    return paths.candidate, load_config(paths.candidate)


def _data_digest(ctx: ToolContext, config: InformerConfig) -> str | None:
    """The digest of the candidate's data file (None when it cannot be read: the trainer
    then refuses the config and says why). An executor that does not read the data (a
    replay of recorded results) is not stopped by a changed or absent file.

    Raises:
        EnvironmentFailure: the file is not the incumbent's (``task.data_problem``: it
            changed, or vanished, during the session): no run is allocated, the session
            stops.
    """
    problem = data_problem(ctx.state, config) if ctx.executor.reads_data else None
    if problem is not None:
        root = shlex.quote(str(ctx.workspace.paths.root))
        raise EnvironmentFailure(
            f"the data file is no longer the one the incumbent was trained on: {problem[0]}; "
            f"{problem[1]}, then continue with `nas resume --workspace {root}`")
    try:
        return file_digest(data_file(config.data))
    except NasError:
        return None


def _scratch(ctx: ToolContext) -> IterationScratch:
    current = ctx.state.current
    if current is None:  # a tool called outside the session loop: numbered as the session does
        current = IterationScratch(iteration=ctx.state.iteration + 1)
        ctx.state.current = current
    if current.launched_run_id is not None:
        raise LaunchError(
            f"one training per iteration: {current.launched_run_id} was already launched in "
            f"iteration {current.iteration}; read its result and finish the iteration"
        )
    return current


def _start_record(ctx: ToolContext, current: IterationScratch, seed: int | None,
                  data_digest: str | None) -> RunRecord:
    """Allocate the run id and save the ``running`` record (the crash-safety point)."""
    run_id = new_run_id(ctx.state, ctx.workspace.paths)
    record = RunRecord(
        run_id=run_id, iteration=current.iteration, status=RunStatus.RUNNING,
        changes=list(current.changes), rationale=current.rationale,
        seed=seed if seed is not None else run_seed(ctx.settings.seed, current.iteration),
        data_digest=data_digest, started_at=now_iso(),
    )
    ctx.state.runs.append(record)
    current.launched_run_id = run_id
    ctx.save()
    return record


def _fresh_dir(run_dir: Path) -> Path:
    """An empty run directory (leftovers of an unrecorded attempt are discarded)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def _train(ctx: ToolContext, config: Path, run_dir: Path, seed: int,
           on_event: EventCallback | None, plan: PrunePlan | None = None) -> TrainOutcome:
    """Run the executor with the session's timeout (RunInterrupted propagates)."""
    thresholds = plan.thresholds if plan is not None and plan.thresholds else None
    return ctx.executor.run(config, run_dir, seed, ctx.settings.timeout_s, on_event, thresholds)


def pruning_settings(settings: SessionSettings) -> PruningSettings | None:
    """The session's pruning policy; None when ``prune`` is off (``--no-prune``)."""
    return settings.pruning if settings.prune else None


def prune_plan(ctx: ToolContext) -> PrunePlan | None:
    """The thresholds for the next main-seed launch (None: nothing can be pruned)."""
    pruning = pruning_settings(ctx.settings)
    if pruning is None or not pruning.enabled:
        return None
    plan = plan_for_runs(ctx.state.runs, ctx.workspace.paths, pruning)
    return plan if plan.thresholds else None


def _explain_pruning(outcome: TrainOutcome, run_dir: Path, plan: PrunePlan | None
                     ) -> TrainOutcome:
    """A pruned outcome whose reason names the epoch, the best val MSE and the threshold."""
    if plan is None:
        return outcome
    decision = prune_decision(read_val_curve(run_dir), plan.thresholds)
    if decision is None:
        return outcome
    return dataclasses.replace(outcome, reason=decision.reason(plan))


def _finish_record(ctx: ToolContext, record: RunRecord, outcome: TrainOutcome) -> None:
    record.status = outcome.status
    record.status_reason = outcome.reason
    for key in _METRIC_KEYS:
        setattr(record, key, _metric(outcome.metrics, key))
    record.seconds = round(outcome.seconds, 3)
    record.finished_at = now_iso()
    try:
        history = load_history(ctx, record.run_id) or []
        record.history_summary = curve_summary(history, ctx.settings.thresholds).to_dict()
    except NasError as exc:  # a torn history must not lose the run's outcome
        logger.warning("%s: no curve summary (%s)", record.run_id, exc)
    ctx.save()


def launch_training(ctx: ToolContext, seed: int | None = None) -> str:
    """Train the candidate config (the incumbent if it was not edited) and report the result.

    At most one training per iteration. With pruning on, the run stops early (status
    pruned) when it is clearly worse than the earlier runs at the same epoch. Returns
    JSON: run_id, status, reason, val_mse, test_mse, best_epoch, epochs_run, seconds and
    a one-paragraph learning-curve summary.

    Args:
        seed: training seed; None (null) uses the session's deterministic per-iteration
            seed.
    """
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise LaunchError(f"seed must be between 0 and {MAX_SEED}, got {seed}; pass null to use "
                          "the session's seed for this iteration")
    current = _scratch(ctx)
    config, candidate = _candidate(ctx)
    plan = prune_plan(ctx)
    record = _start_record(ctx, current, seed, _data_digest(ctx, candidate))
    on_event = _tagged(ctx.on_progress, run_id=record.run_id)
    try:
        run_dir = _fresh_dir(ctx.workspace.paths.run_dir(record.run_id))
        outcome = _train(ctx, config, run_dir, record.seed, on_event, plan)
        if outcome.status is RunStatus.PRUNED:
            outcome = _explain_pruning(outcome, run_dir, plan)
    except RunInterrupted as interrupted:
        _finish_record(ctx, record, interrupted.outcome)
        raise
    except OSError as exc:  # the run directory cannot be created or written
        raise _environment_failure(ctx, record, str(exc)) from exc
    except BaseException as exc:
        status = RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.CRASHED
        _finish_record(ctx, record, TrainOutcome(status, f"launcher error: {exc!r}"))
        raise
    # a refused data file ("cannot be read ... [Errno 13]") is the machine's fault too
    if outcome.status in (RunStatus.CRASHED, RunStatus.INVALID_CONFIG) and _machine_at_fault(
            outcome.reason):
        raise _environment_failure(ctx, record, outcome.reason)
    _finish_record(ctx, record, outcome)
    return json.dumps(_summary(record, outcome) | _against_incumbent(ctx, record))


# A run that failed on one of these (disk full, file too large, no permission, read-only
# file system) says nothing about its config: the session stops instead of judging it.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES,
                            errno.EPERM, errno.EROFS})
_ERRNO = re.compile(r"\[Errno (\d+)\]")


def _machine_at_fault(reason: str) -> bool:
    """Whether a trainer's failure reason (``OSError: [Errno 28] ...``) blames the machine."""
    match = _ERRNO.search(reason)
    return match is not None and int(match.group(1)) in MACHINE_ERRNOS


def _environment_failure(ctx: ToolContext, record: RunRecord, why: str) -> EnvironmentFailure:
    """Mark the run interrupted (the resumed session redoes the iteration with its seed) and
    say what to fix."""
    _finish_record(ctx, record, TrainOutcome(RunStatus.INTERRUPTED, f"machine error: {why}"))
    root = ctx.workspace.paths.root
    return EnvironmentFailure(
        f"{record.run_id} stopped on a machine error ({why}); the machine, not the "
        "candidate, is at fault: free disk space, raise the file-size limit (ulimit -f) or fix "
        "the file permissions (the workspace and the data file), then continue with "
        f"`nas resume --workspace {shlex.quote(str(root))}`")


def _summary(record: RunRecord, outcome: TrainOutcome) -> dict[str, Any]:
    curve = record.history_summary or {}
    return {
        "run_id": record.run_id, "status": record.status.value, "reason": record.status_reason,
        "val_mse": record.val_mse, "test_mse": record.test_mse,
        "best_epoch": outcome.metrics.get("best_epoch", curve.get("best_epoch")),
        "epochs_run": outcome.metrics.get("epochs_run", curve.get("epochs_run")),
        "seconds": record.seconds, "curve": curve.get("paragraph", ""),
    }


UNCHANGED_NOTE = ("no edit_config this iteration: this trained the incumbent config unchanged "
                  "(only the seed differs), so the difference from the incumbent is seed noise")


def _against_incumbent(ctx: ToolContext, record: RunRecord) -> dict[str, Any]:
    """The incumbent's val MSE beside the candidate's (the gate compares the two next), and
    a note when the candidate is the incumbent itself (a model that forgot edit_config)."""
    best = incumbent(ctx.state)
    if best is None or best.run_id == record.run_id:
        return {}
    extra: dict[str, Any] = {"incumbent_run_id": best.run_id,
                             "incumbent_val_mse": best.val_mse}
    if not record.changes:
        extra["note"] = UNCHANGED_NOTE
    return extra


def _seed_result(seed: int, run_dir: str, outcome: TrainOutcome) -> SeedResult:
    values = {key: _metric(outcome.metrics, key) for key in _METRIC_KEYS}
    return SeedResult(seed=seed, status=outcome.status, run_dir=run_dir,
                      seconds=round(outcome.seconds, 3), **values)


def _store_seed(ctx: ToolContext, record: RunRecord, result: SeedResult) -> None:
    """Record one seed's result and the mean val MSE over the run's successful seeds."""
    record.seeds = [s for s in record.seeds if s.seed != result.seed] + [result]
    values = [s.val_mse for s in record.seeds if s.status.is_success and s.val_mse is not None]
    if record.status.is_success and record.val_mse is not None and record.seed not in {
        s.seed for s in record.seeds
    }:
        values.append(record.val_mse)
    record.mean_val_mse = statistics.fmean(values) if values else None
    _persist(ctx, record)


def _persist(ctx: ToolContext, record: RunRecord) -> None:
    """Save a record changed in place; an old one is replaced so that the journal sees it."""
    runs = ctx.state.runs
    index = next(i for i, run in enumerate(runs) if run is record)
    if index < len(runs) - HOT_RUNS:
        runs[index] = record.model_copy(deep=True)
    ctx.save()


def confirm_with_seeds(ctx: ToolContext, run_id: str, seeds: Sequence[int]) -> list[SeedResult]:
    """Retrain a finished run's ``config_used.py`` with each seed, into ``seed_<n>/``.

    Each seed's metrics are recorded in the run record as soon as it finishes, with the
    run's ``mean_val_mse`` over its successful seeds (main seed included).

    Raises:
        LaunchError: the run did not finish ok or has no ``config_used.py``.
        RunInterrupted: a signal stopped a seed (earlier seeds stay recorded).
    """
    record = find_run(ctx.state, run_id)
    run_dir = ctx.workspace.paths.run_dir(run_id)
    config = run_dir / "config_used.py"
    if not record.status.is_success or not config.is_file():
        raise LaunchError(f"{run_id} cannot be confirmed with more seeds: status "
                          f"{record.status.value}, config_used.py present: {config.is_file()}")
    results = []
    for seed in seeds:
        seed_dir = _fresh_dir(run_dir / f"seed_{seed}")
        on_event = _tagged(ctx.on_progress, run_id=run_id, seed=seed, confirmation=True)
        outcome = _train(ctx, config, seed_dir, seed, on_event)
        relative = seed_dir.relative_to(ctx.workspace.paths.root).as_posix()
        result = _seed_result(seed, relative, outcome)
        _store_seed(ctx, record, result)
        results.append(result)
        record = find_run(ctx.state, run_id)  # _persist may have replaced the object
    return results


def ensure_seeds(ctx: ToolContext, run_id: str, seeds: int | Sequence[int]) -> list[SeedResult]:
    """Make sure ``run_id`` has results for ``seeds``, training only the missing ones.

    Args:
        run_id: a run that finished ok.
        seeds: the seeds, or a count K meaning ``confirmation_seeds(settings.seed, K)``.

    Returns:
        The results for the requested seeds, in order (recorded ones reused; the run's
        main seed counts as recorded).
    """
    wanted = confirmation_seeds(ctx.settings.seed, seeds) if isinstance(seeds, int) else list(seeds)
    record = find_run(ctx.state, run_id)
    recorded = {s.seed: s for s in record.seeds if s.status is not RunStatus.INTERRUPTED}
    if record.status.is_success and record.seed not in recorded:
        recorded[record.seed] = SeedResult(
            seed=record.seed, status=record.status, val_mse=record.val_mse,
            val_mae=record.val_mae, test_mse=record.test_mse, test_mae=record.test_mae,
            run_dir=f"runs/{run_id}",
        )
    missing = [seed for seed in wanted if seed not in recorded]
    if missing:
        logger.info("%s: training confirmation seeds %s", run_id, missing)
        recorded.update({r.seed: r for r in confirm_with_seeds(ctx, run_id, missing)})
    return [recorded[seed] for seed in wanted]
