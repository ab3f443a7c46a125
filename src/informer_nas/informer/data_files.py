"""Which data file a config reads, and its digest: no numpy, pandas or torch.

A session's parent process checks the data file before every start and records its digest on
every run, but never reads the series itself (the trainer subprocess does): keeping these few
functions out of ``data.py`` keeps torch and pandas out of that process (about 2 s of CPU
per ``nas run``, ``nas resume``, ``nas doctor`` and ``nas replay``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path

from informer_nas.errors import DataError
from informer_nas.informer.config import DataSection


def bundled_csv_path() -> Path:
    """The path of the ETTh1.csv shipped inside the package."""
    return Path(str(resources.files("informer_nas.informer").joinpath("data/ETTh1.csv")))


def data_file(data: DataSection) -> Path:
    """The CSV a data section reads (``data.path``, else the bundled ETTh1.csv)."""
    return Path(data.path).expanduser() if data.path is not None else bundled_csv_path()


def stat_or_raise(path: Path) -> os.stat_result:
    """The file's stat.

    Raises:
        DataError: the file is missing or a directory, and what to set instead.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        stat = None
    if stat is None or path.is_dir():
        what = "not found" if stat is None else "is a directory, not a file"
        raise DataError(
            f"data file {path} {what}; set data.path to an existing CSV "
            "(or None for the bundled ETTh1.csv)"
        ) from None
    return stat


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes: which data a run was trained on.

    Raises:
        DataError: the file is missing (or unreadable).
    """
    stat = stat_or_raise(path)
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime_ns key the cache: an edited file is hashed again
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                hasher.update(block)
    except OSError as exc:
        raise DataError(f"data file {path} cannot be read ({exc.strerror}); check its "
                        "permissions") from None
    return f"sha256:{hasher.hexdigest()}"
