"""What ``nas doctor`` reports, and the means every check shares: a ``Finding``, the
``DoctorReport`` that collects them, and ``DoctorBase``, which records a finding, applies a
repair when repairing (``fix``) and keeps a backup of each file it replaces (``backup``)."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from informer_nas.nas_system.atomic import atomic_write_bytes
from informer_nas.nas_system.lock import file_stamp
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.plurals import counted

# The doctor's repairs are logged under its name (``doctor.py``), wherever the check lives.
logger = logging.getLogger("informer_nas.nas_system.doctor")

Severity = Literal["error", "warning", "info"]
_MAX_PROBLEM = 600


@dataclass(frozen=True)
class Finding:
    """One thing the doctor noticed.

    Attributes:
        severity: ``error`` (a session cannot run, or data is at risk), ``warning``
            (inconsistent; a session may cope) or ``info`` (harmless).
        subject: the file or run concerned, relative to the workspace.
        problem: what is wrong; action: what was done (``repaired``) or can be done.
    """

    severity: Severity
    subject: str
    problem: str
    action: str
    repaired: bool = False

    @property
    def is_open(self) -> bool:
        """A problem that is still there (not repaired, not merely informative)."""
        return self.severity != "info" and not self.repaired

    def line(self) -> str:
        label = "repaired" if self.repaired else self.severity
        return f"[{label}] {self.subject}: {self.problem} -> {self.action}"


@dataclass
class DoctorReport:
    """What ``diagnose`` found (and repaired) in one workspace."""

    root: Path
    repair: bool
    findings: list[Finding] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)

    @property
    def is_healthy(self) -> bool:
        """No error or warning is left unrepaired."""
        return not any(finding.is_open for finding in self.findings)

    def lines(self) -> list[str]:
        """The findings, the backups written and a summary, one line each (for the CLI)."""
        lines = [finding.line() for finding in self.findings]
        lines += [f"backup kept: {path}" for path in self.backups]
        open_count = sum(finding.is_open for finding in self.findings)
        repaired = sum(finding.repaired for finding in self.findings)
        if open_count == 0:
            lines.append(f"{self.root}: healthy ({repaired} repaired)")
        else:
            where = shlex.quote(str(self.root))
            repairable = any(f.is_open and f.action.startswith(REPAIR_WILL)
                             for f in self.findings)
            advice = (f"repair with `nas doctor --workspace {where} --repair`" if repairable
                      else "the advice above says what to do by hand")
            lines.append(f"{self.root}: {counted(open_count, 'problem')} left; {advice}")
        return lines


REPAIR_WILL = "`nas doctor --repair` will "  # how a repairable finding's action starts


@dataclass
class DoctorBase:
    """One doctor's pass over a workspace: where findings go and whether it may repair."""

    paths: WorkspacePaths
    report: DoctorReport
    can_repair: bool
    is_live: bool  # a session holds the lock: its iteration in progress is not ours to judge
    stamp: str = field(default_factory=file_stamp)
    state_changed: bool = False
    state_backed_up: bool = False

    def add(self, severity: Severity, subject: str, problem: str, action: str,
            repaired: bool = False) -> None:
        problem = problem if len(problem) <= _MAX_PROBLEM else problem[:_MAX_PROBLEM] + "..."
        self.report.findings.append(Finding(severity, subject, problem, action, repaired))
        if repaired:
            logger.info("doctor repaired %s: %s (%s)", subject, problem, action)

    def fix(self, severity: Severity, subject: str, problem: str, action: str,
            apply: Callable[[], object] | None, changes_state: bool = False) -> None:
        """Report a problem; when repairing, ``apply`` it first (``action``: imperative)."""
        if apply is None:
            self.add(severity, subject, problem, f"not repairable: {action}")
        elif not self.can_repair:
            self.add(severity, subject, problem, f"{REPAIR_WILL}{action}")
        else:
            apply()
            self.state_changed |= changes_state
            self.add(severity, subject, problem, action, repaired=True)

    def backup(self, path: Path, kind: str) -> Path | None:
        """Copy ``path`` to ``<name>.<kind>-<stamp>`` (atomically) before it is replaced."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        target, number = path.with_name(f"{path.name}.{kind}-{self.stamp}"), 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}.{kind}-{self.stamp}-{number}")
        atomic_write_bytes(target, data)
        self.report.backups.append(target)
        return target
