"""The ``get_config`` tool: the config the next training would use, as compact JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from informer_nas.informer.config import read_config_literal, validate_config

if TYPE_CHECKING:
    from informer_nas.tools.context import ToolContext


def get_config(ctx: ToolContext) -> str:
    """Return the current config as JSON: the candidate if this iteration has edits, else
    the incumbent. ``source`` says which; ``changes`` lists this iteration's edits.

    Args:
        ctx: the tool context.

    Raises:
        ConfigError: the file is not a pure literal (names the line) or fails the schema.
    """
    paths = ctx.workspace.paths
    current = ctx.state.current
    is_candidate = current is not None and bool(current.changes) and paths.candidate.is_file()
    path = paths.candidate if is_candidate else paths.config
    config = validate_config(read_config_literal(path), source=str(path))
    payload = {
        "source": "candidate" if is_candidate else "incumbent",
        "incumbent_run_id": ctx.state.incumbent_run_id,
        "changes": [c.model_dump(mode="json") for c in current.changes] if current else [],
        "config": config.to_dict(),
    }
    return json.dumps(payload, separators=(",", ":"))
