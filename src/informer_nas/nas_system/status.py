"""A workspace's status as plain JSON-ready data: runs, incumbent, budget, tokens and cost.

``nas status`` prints it (``--json`` verbatim, otherwise as a table) and ``report.py``
builds the report from it, so both show the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from informer_nas.errors import ConfigError
from informer_nas.informer.config import read_config_literal
from informer_nas.informer.run_files import CONFIG_USED
from informer_nas.nas_system.gate import seed_values
from informer_nas.nas_system.lock import lock_status
from informer_nas.nas_system.records import RoleUsage, RunRecord, RunStatus
from informer_nas.nas_system.state import AgentState, load_state
from informer_nas.plurals import counted

if TYPE_CHECKING:
    from informer_nas.nas_system.workspace import Workspace


RUN_COLUMNS = ("run", "iter", "step", "changes", "val MSE", "test MSE", "status", "verdict")


def workspace_status(workspace: Workspace, state: AgentState | None = None) -> dict[str, Any]:
    """Summarise a workspace for people and scripts.

    Args:
        workspace: an opened workspace.
        state: its state, when the caller has read it already (else read here).

    Returns:
        A dict with ``workspace``, ``planner``, ``session`` (whether a live process holds
        the workspace now, its pid and since when), ``budget``, ``incumbent`` (or None),
        ``runs`` (one dict per run, oldest first; ``orphaned``: recorded as running, but
        no session is: it was stopped while the run trained, and ``nas resume`` trains it
        again) and ``usage`` (per role plus ``total``).

    Raises:
        HistoryCorrupt: the state file cannot be read.
    """
    paths = workspace.paths
    state = load_state(paths) if state is None else state
    runs = [run_summary(run) for run in state.runs]
    session = _session(workspace)
    for run in runs:  # no process trains it: its session was killed (resume redoes it)
        run["orphaned"] = run["status"] == RunStatus.RUNNING.value and not session["running"]
    return {
        "workspace": str(paths.root),
        "planner": state.planner,
        "session": session,
        "budget": _budget(state.iteration, state.max_iterations, runs),
        "incumbent": _incumbent(workspace, state.incumbent_run_id, runs),
        "runs": runs,
        "usage": usage_summary(state.usage),
    }


def run_summary(run: RunRecord) -> dict[str, Any]:
    """The fields of one run that status and the report show."""
    return {
        "run_id": run.run_id,
        "iteration": run.iteration,
        "seed": run.seed,
        "status": run.status.value,
        "step_type": run.step_type,
        "proposal": run.proposal,
        "changes": [{"key": change.key, "value": change.value} for change in run.changes],
        "plan": run.plan,
        "val_mse": run.val_mse,
        "val_mae": run.val_mae,
        "test_mse": run.test_mse,
        "test_mae": run.test_mae,
        "mean_val_mse": run.mean_val_mse,
        "seeds": [{"seed": seed.seed, "status": seed.status.value, "val_mse": seed.val_mse,
                   "seconds": seed.seconds} for seed in run.seeds],
        "verdict": run.verdict,
        "verdict_reason": run.verdict_reason,
        "accepted": run.accepted,
        "decided_by": run.decided_by,
        "seconds": round(run.seconds, 2),
    }


def usage_summary(usage: dict[str, RoleUsage]) -> dict[str, dict[str, Any]]:
    """Token usage and cost per role, with a ``total`` entry summing them."""
    roles = {role: role_usage.model_dump() for role, role_usage in usage.items()}
    total: dict[str, float] = {field: 0 for field in RoleUsage.model_fields}
    for values in roles.values():
        for field, value in values.items():
            total[field] += value
    total["cost_usd"] = round(total["cost_usd"], 6)
    return {**roles, "total": total}


def _budget(iteration: int, max_iterations: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sum(run["seconds"] + sum(s["seconds"] for s in run["seeds"]) for run in runs)
    return {
        "iterations_done": iteration,
        "max_iterations": max_iterations,
        "iterations_left": max(0, max_iterations - iteration),
        "runs": len(runs),
        "training_seconds": round(seconds, 1),
    }


def _session(workspace: Workspace) -> dict[str, Any]:
    """Whether a session (or another ``nas`` command that writes) holds the workspace now."""
    holder, running = lock_status(workspace.paths)
    live = holder if running else None
    return {"running": running, "pid": live.pid if live else None,
            "since": live.started_at if live else None}


def _incumbent(
    workspace: Workspace, run_id: str | None, runs: list[dict[str, Any]]
) -> dict[str, Any] | None:
    if run_id is None:
        return None
    run = next((run for run in runs if run["run_id"] == run_id), None)
    return {
        "run_id": run_id,
        "val_mse": run["val_mse"] if run else None,
        "test_mse": run["test_mse"] if run else None,
        "config": incumbent_config(workspace, run_id),
    }


def incumbent_config(workspace: Workspace, run_id: str) -> dict[str, Any]:
    """The config the incumbent trained with: its run's ``config_used.py``.

    ``config.py`` is the incumbent's too, unless it was edited by hand since (the next
    session starts from the edit, but the incumbent's scores are not for it); it is read
    only when the run's snapshot is missing or unreadable.
    """
    try:
        return read_config_literal(workspace.paths.run_dir(run_id) / CONFIG_USED)
    except ConfigError:
        return read_config_literal(workspace.paths.config)


def usage_line(total: Mapping[str, Any]) -> str:
    """The LLM's tokens, requests and estimated cost (the offline brains make no request)."""
    if not total["requests"] and not total["input_tokens"] + total["output_tokens"]:
        return "no requests (the tpe and random planners need no LLM)"
    return (f"tokens {total['input_tokens']} in / {total['output_tokens']} out, "
            f"{counted(total['requests'], 'request')}, estimated cost ${total['cost_usd']:.4f}")


def format_mse(value: Any) -> str:
    """A metric for humans: four significant digits, or a dash when absent."""
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def format_changes(changes: Any, short: bool = False) -> str:
    """``key=value, ...`` from a list of ``{key, value}`` dicts (or ConfigChange objects).

    Args:
        changes: the changes of a run.
        short: name each key by its last part (``lr``, ``d_model``: unique in the search
            space) and round floats to 4 digits, for tables.
    """
    if not changes:
        return "-"
    parts = []
    for change in changes:
        key = change.get("key") if isinstance(change, Mapping) else getattr(change, "key", "?")
        value = change.get("value") if isinstance(change, Mapping) else getattr(change, "value", "")
        if short:
            key = str(key).rsplit(".", 1)[-1]
        shown = f"{value:.{4 if short else 6}g}" if isinstance(value, float) else value
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


def run_table_rows(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The runs of ``workspace_status`` as table cells, in ``RUN_COLUMNS`` order."""
    return [
        (run["run_id"], str(run["iteration"]), _step_cell(run),
         format_changes(run["changes"], short=True), _val_cell(run),
         format_mse(run["test_mse"]),
         "stopped (resume)" if run.get("orphaned") else run["status"], verdict_cell(run))
        for run in runs
    ]


def _step_cell(run: dict[str, Any]) -> str:
    """The step type; with the hybrid brain, whose candidate was trained: ``small (TPE)``
    (the LLM kept TPE's proposal) or ``small (LLM)`` (it overrode it)."""
    step = run["step_type"] or "-"
    proposal = run.get("proposal")
    return f"{step} ({'TPE' if proposal == 'kept' else 'LLM'})" if proposal else step


def run_seed_values(run: dict[str, Any]) -> tuple[dict[int, float], tuple[int, ...]]:
    """``gate.seed_values`` of a run of ``workspace_status``: val MSE per successful seed,
    and the confirmation seeds that failed."""
    return seed_values(RunStatus(run["status"]), run["seed"], run["val_mse"], [
        (s["seed"], RunStatus(s["status"]), s["val_mse"]) for s in run.get("seeds", [])])


def _val_cell(run: dict[str, Any]) -> str:
    """The main seed's val MSE, and the mean over the seeds when confirmation seeds ran."""
    if run.get("mean_val_mse") is None or not run.get("seeds"):
        return format_mse(run["val_mse"])
    count = len(run_seed_values(run)[0])  # the seeds the mean is over
    return f"{format_mse(run['val_mse'])} (mean of {count}: {format_mse(run['mean_val_mse'])})"


def verdict_cell(run: dict[str, Any]) -> str:
    """The verdict; for a borderline result, what was decided and by whom (the evaluator,
    or the policy when the evaluator failed): ``accept (evaluator)``."""
    if run["verdict"] != "borderline" or run.get("accepted") is None:
        return str(run["verdict"] or "-")
    return f"{'accept' if run['accepted'] else 'reject'} ({run.get('decided_by') or '?'})"
