"""Counted nouns for messages: "1 run", "2 runs", never "1 runs" or "run(s)"."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` followed by ``noun``, plural unless the count is 1.

    Args:
        count: how many.
        noun: the singular, e.g. ``"iteration"``.
        plural: the plural where it is not ``noun + "s"``.
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
