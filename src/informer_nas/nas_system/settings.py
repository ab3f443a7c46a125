"""``SessionSettings``: the knobs of one session, validated once (CLI options land here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from informer_nas.errors import ConfigError
from informer_nas.nas_system.gate import GateThresholds
from informer_nas.nas_system.pruning import PruningSettings

KeepCheckpoints = Literal["all", "incumbent"]
KEEP_CHECKPOINTS: tuple[str, ...] = get_args(KeepCheckpoints)


@dataclass(frozen=True)
class SessionSettings:
    """How a session trains and judges candidates.

    Args:
        timeout_s: wall-clock limit of one training (None: no limit).
        confirm_seeds: extra seeds a borderline or accepting candidate is retrained with.
        thresholds: the rule gate's thresholds.
        seed: the base training seed.
        prune: stop hopeless trainings early (``--no-prune`` turns it off).
        pruning: the pruning rule (median by default) when ``prune`` is on.
        max_turns: the planner's turn limit per iteration.
        keep_checkpoints: ``all`` runs keep ``best_model.pt``, or only the ``incumbent``
            (and a run waiting for its verdict): see ``checkpoints.py``.
    """

    timeout_s: float | None = None
    confirm_seeds: int = 0
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    seed: int = 0
    prune: bool = True
    pruning: PruningSettings = field(default_factory=PruningSettings)
    max_turns: int = 12
    keep_checkpoints: KeepCheckpoints = "all"

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise ConfigError(f"timeout must be a finite number of seconds > 0, got "
                              f"{self.timeout_s!r}; e.g. 600")
        if self.confirm_seeds < 0 or self.confirm_seeds > 20:
            raise ConfigError(
                f"confirm_seeds must be in [0, 20], got {self.confirm_seeds}; e.g. 3"
            )
        if not 0 <= self.seed <= 2**31 - 1:
            raise ConfigError(f"seed must be in [0, 2**31 - 1], got {self.seed}; e.g. 0")
        if self.max_turns < 1:
            raise ConfigError(f"max_turns must be >= 1, got {self.max_turns}; e.g. 12")
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ConfigError(f"keep_checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, "
                              f"got {self.keep_checkpoints!r}; e.g. incumbent")
