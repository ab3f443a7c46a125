"""Which runs keep their checkpoint: every run (the default) or the incumbent only.

A run directory's ``best_model.pt`` is its best epoch's weights: about 45 MB for the paper
config, so a long search on a large config fills a disk with weights of rejected candidates.
With ``--keep-checkpoints incumbent`` (a session setting, inherited by ``nas resume``) each
verdict, and the start of each session, deletes the checkpoints of every run except the
incumbent and the run still waiting for its verdict, confirmation seeds' included. Everything
else in a run directory stays: metrics, history, curve, config snapshot, log.

Deleting is idempotent and each deletion is atomic, so a session killed halfway through leaves
the rest for the next verdict; ``nas doctor`` does not count a missing checkpoint as damage.
"""

from __future__ import annotations

import logging
from pathlib import Path

from informer_nas.informer.run_files import BEST_MODEL
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.state import AgentState

logger = logging.getLogger(__name__)


def kept_run_ids(state: AgentState) -> set[str]:
    """The runs whose checkpoints ``incumbent`` keeps: the incumbent and a pending run."""
    kept = {state.incumbent_run_id} if state.incumbent_run_id else set()
    if state.current is not None and state.current.launched_run_id:
        kept.add(state.current.launched_run_id)
    return kept


def remove_checkpoints(paths: WorkspacePaths, state: AgentState) -> tuple[int, int]:
    """Delete the checkpoints of the runs ``kept_run_ids`` does not name.

    Returns:
        How many files were deleted and their bytes.
    """
    kept = kept_run_ids(state)
    count = size = 0
    for run in state.runs:
        if run.run_id in kept:
            continue
        run_dir = paths.run_dir(run.run_id)
        for checkpoint in _checkpoints(run_dir):
            try:
                bytes_ = checkpoint.stat().st_size
                checkpoint.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:  # never stops a search: the next verdict tries again
                logger.warning("could not delete %s (%s)", checkpoint, exc)
                continue
            count, size = count + 1, size + bytes_
    if count:
        logger.info("deleted %d checkpoint%s (%.1f MB) of runs other than the incumbent",
                    count, "" if count == 1 else "s", size / 1e6)
    return count, size


def _checkpoints(run_dir: Path) -> list[Path]:
    """The run's own checkpoint and its confirmation seeds' (``seed_<n>/best_model.pt``)."""
    if not run_dir.is_dir():
        return []
    found = [run_dir / BEST_MODEL] if (run_dir / BEST_MODEL).exists() else []
    found.extend(sorted(run_dir.glob(f"seed_*/{BEST_MODEL}")))
    return found
