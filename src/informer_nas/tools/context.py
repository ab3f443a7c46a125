"""Re-export of ``ToolContext``, which lives in ``nas_system/context.py`` (layering)."""

from informer_nas.nas_system.context import ToolContext as ToolContext
