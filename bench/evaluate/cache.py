"""The only module that touches the feature cache on disk.

Features of real image sets are stored under a key made of everything that changes them: extractor id,
weights hash, preprocessing, resolution and a hash of the image files' contents (not their folder's
name), so editing one image or changing any of the others makes a new entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bench.errors import WeightsError
from bench.inception_import import load_safely
from bench.weights import cache_dir

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored layout changes


@dataclass(frozen=True)
class CacheKey:
    extractor: str
    weights_sha256: str
    preprocessing: str
    resolution: int
    content_sha256: str  # of the image files, in order

    def digest(self) -> str:
        text = json.dumps({"format": FORMAT, **self.__dict__}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    label: str
    key: dict
    count: int
    bytes: int
    created: str


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else cache_dir() / "features"
        self.hits = 0
        self.misses = 0

    def features(self, key: CacheKey, label: str, compute: Callable[[], Tensor]) -> Tensor:
        """The cached features for `key`, or `compute()`'s, which are then stored."""
        path = self.root / f"{key.digest()}.pt"
        if path.is_file():
            try:  # read without running code: a planted or damaged entry is recomputed, not fatal
                features = load_safely(path, "a feature cache entry", "nothing: it is recomputed", state_dict=False)
                if not isinstance(features, Tensor):
                    raise WeightsError(f"{path} is not a feature cache entry (it holds a {type(features).__name__})")
                self.hits += 1
                return features
            except WeightsError as error:
                log.warning("%s; recomputing", error)
        self.misses += 1
        features = compute()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(features.detach().cpu(), tmp)
        os.replace(tmp, path)
        meta = {
            "label": label,
            "key": key.__dict__,
            "count": len(features),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return features

    def entries(self) -> list[CacheEntry]:
        out = []
        for meta_path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            data_path = meta_path.with_suffix(".pt")
            if not data_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            out.append(
                CacheEntry(
                    data_path, meta["label"], meta["key"], meta["count"], data_path.stat().st_size, meta["created"]
                )
            )
        return out

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        removed = 0
        for entry in self.entries():
            entry.path.unlink(missing_ok=True)
            entry.path.with_suffix(".json").unlink(missing_ok=True)
            removed += 1
        return removed
