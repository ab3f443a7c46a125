"""The records every layer above the trainer exchanges: run status, outcomes, run records.

These are data only (no I/O). ``state.py`` persists them in ``agent_state.json``.
"""

from __future__ import annotations

import signal
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from informer_nas.informer import run_files

StepType = Literal["small", "medium", "radical", "stop"]
VerdictKind = Literal["accept", "reject", "borderline"]
Role = Literal["planner", "evaluator"]


class RunStatus(str, Enum):
    """What became of one training run (the trainer's ``status`` plus launcher outcomes)."""

    RUNNING = "running"
    OK = "ok"
    INVALID_CONFIG = "invalid_config"
    DIVERGED = "diverged"
    OOM = "oom"
    CRASHED = "crashed"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    PRUNED = "pruned"

    @property
    def is_finished(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def is_success(self) -> bool:
        return self is RunStatus.OK


# Trainer exit codes (defined once, by the trainer); the launcher maps them back.
EXIT_CODES: dict[RunStatus, int] = {
    RunStatus(status): code for status, code in run_files.EXIT_CODES.items()
}


def status_from_exit_code(code: int, forwarded: bool | None = None) -> RunStatus:
    """Map a trainer exit status to a RunStatus.

    Args:
        code: the exit status (negative: killed by signal ``-code``, as subprocess reports).
        forwarded: whether the session itself signalled the trainer (the user's
            SIGINT/SIGTERM forwarded, or the kill that follows it). A signal death is then
            an interruption; one the session did not send (the OOM killer's SIGKILL, a
            segfault) is a crash. None (unknown): an interruption.
    """
    for status, value in EXIT_CODES.items():
        if value == code:
            return status
    if code < 0:
        return RunStatus.CRASHED if forwarded is False else RunStatus.INTERRUPTED
    return RunStatus.CRASHED


def signal_death_reason(code: int) -> str:
    """Why a trainer the session did not signal died of signal ``-code``.

    A SIGKILL nobody in the session sent is most often the kernel's OOM killer.
    """
    signum = -code
    if signum == signal.SIGKILL:
        return f"killed by signal {signum} (out of memory?)"
    try:
        return f"killed by signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"killed by signal {signum}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


CONFIG_VALUE_ERROR = "config_value"  # the error type of a value ConfigChange refuses


def _one_config_value_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """The union's own check, with one error for a value it refuses (pydantic reports one
    per member: "value.int: Input should be a valid integer; value.float: ...")."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            CONFIG_VALUE_ERROR, "must be a number, a string, a boolean or null, not a {kind}",
            {"kind": type(value).__name__}) from None


ConfigValue = Annotated[int | float | str | bool | None, WrapValidator(_one_config_value_error)]


class ConfigChange(_Record):
    """One ``{key, value}`` edit of the config (a list of these, never a mapping)."""

    key: str
    value: ConfigValue


class SeedResult(_Record):
    """The metrics of one seed of a run (the main seed or a confirmation seed)."""

    seed: int
    status: RunStatus
    val_mse: float | None = None
    val_mae: float | None = None
    test_mse: float | None = None
    test_mae: float | None = None
    run_dir: str  # relative to the workspace, e.g. "runs/run_0003" or "runs/run_0003/seed_7"
    seconds: float = 0.0  # wall time of the seed's training


class RunRecord(_Record):
    """One iteration's candidate run, as stored in ``agent_state.json``."""

    run_id: str
    iteration: int
    status: RunStatus = RunStatus.RUNNING
    status_reason: str = ""
    accepted: bool | None = None
    changes: list[ConfigChange] = Field(default_factory=list)
    rationale: str = ""
    step_type: StepType | None = None
    plan: str = ""
    reason: str = ""
    verdict: VerdictKind | None = None
    verdict_reason: str = ""
    decided_by: Literal["rules", "evaluator", "policy"] | None = None
    # hybrid brain: whether the LLM trained TPE's proposal or overrode it with its own edit
    proposal: Literal["kept", "overridden"] | None = None
    seed: int = 0
    val_mse: float | None = None
    val_mae: float | None = None
    test_mse: float | None = None
    test_mae: float | None = None
    # Mean over the main and confirmation seeds, when confirm_seeds > 0.
    mean_val_mse: float | None = None
    seeds: list[SeedResult] = Field(default_factory=list)
    history_summary: dict[str, Any] | None = None
    # sha256 of the data file when the run was launched (None: recorded before it was kept)
    data_digest: str | None = None
    seconds: float = 0.0
    started_at: str = ""
    finished_at: str = ""


class RoleUsage(_Record):
    """Token usage and estimated cost of one role (planner or evaluator)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
