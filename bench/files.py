"""Writing result files so that a crash or a full disk never leaves a half-written one in place."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.errors import BenchError


class WriteError(BenchError):
    """A file could not be written (disk full, no permission); the previous version is intact."""


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(temporary)` next to `path`, then rename it over `path` (atomic on one file system).

    On failure the temporary file is removed and `path` is left as it was; the error says so.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        reason = error.strerror or str(error)
        raise WriteError(
            f"could not write {path}: {reason}; {kept}. Free space (or fix permissions) and rerun"
        ) from error
    return path
