"""Where everything lives inside a workspace (the user-facing contract in DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkspacePaths:
    """Paths of one workspace directory; creating or validating it is ``workspace.py``'s job."""

    root: Path

    @property
    def config(self) -> Path:
        """The incumbent config, between iterations."""
        return self.root / "config.py"

    @property
    def candidate(self) -> Path:
        """The config being edited during an iteration (derived from the incumbent)."""
        return self.root / "candidate.py"

    @property
    def state(self) -> Path:
        return self.root / "agent_state.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def traces(self) -> Path:
        return self.root / "traces"

    def trace_files(self) -> list[Path]:
        """Every session's trace, oldest first (their names start with the start time)."""
        return sorted(self.traces.glob("*.jsonl")) if self.traces.is_dir() else []

    @property
    def study(self) -> Path:
        """Optuna JournalStorage file of the tpe / random / hybrid brains."""
        return self.root / "study.journal"

    @property
    def lock(self) -> Path:
        return self.root / ".nas.lock"

    @property
    def log(self) -> Path:
        return self.root / "nas.log"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id
