"""The only module that touches the feature cache on disk.

Features of real image sets are stored under a key made of everything that changes them: extractor id,
weights hash, preprocessing, resolution and a hash of the image files' contents (not their folder's
name), so editing one image or changing any of the others makes a new entry.

What a translator's outputs give a metric (features, LPIPS distances) is stored too (`load`, `store`),
under the key the evaluator builds: the translator's tensors and code, the test inputs, the evaluation
settings the values depend on and the extractor (bench.evaluate.evaluator.Evaluator._remembered). Re-scoring
an unchanged checkpoint then translates and extracts nothing.
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
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.errors import WeightsError
from bench.inception_import import load_safely
from bench.weights import cache_dir

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored layout changes

Stored = tuple[Any, ...]  # what a gatherer returns: numpy arrays (float64, or any dtype) or None


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
        digest = key.digest()
        features = self._read(digest, Tensor)
        if features is not None:
            return features
        features = compute().detach().cpu()
        self._write(digest, features, {"label": label, "key": key.__dict__, "count": len(features)})
        return features

    # -- values gathered from a translator's outputs (keys built by the evaluator) ---------------------------
    @staticmethod
    def digest(key: dict[str, Any]) -> str:
        text = json.dumps({"format": FORMAT, **key}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def load(self, key: dict[str, Any]) -> Stored | None:
        """What `store` kept under `key`, or None (never stored, or unreadable: then it is recomputed)."""
        stored = self._read(self.digest(key), list)
        if stored is None:
            return None
        return tuple(None if item is None else item.numpy() for item in stored)

    def store(self, key: dict[str, Any], label: str, values: Stored) -> None:
        """Keep a gatherer's arrays under `key` (tensors on disk: read back without running code)."""
        for value in values:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"only numpy arrays and None are stored, got {type(value).__name__}")
        tensors = [None if value is None else torch.from_numpy(np.ascontiguousarray(value)) for value in values]
        count = len(values[0]) if values and values[0] is not None else 0
        self._write(self.digest(key), tensors, {"label": label, "key": key, "count": count})

    # -- files ------------------------------------------------------------------------------------------------
    def _read(self, digest: str, kind: type) -> Any:
        path = self.root / f"{digest}.pt"
        if not path.is_file():
            self.misses += 1
            return None
        try:  # read without running code: a planted or damaged entry is recomputed, not fatal
            value = load_safely(path, "a feature cache entry", "nothing: it is recomputed", state_dict=False)
            if not isinstance(value, kind):
                raise WeightsError(f"{path} is not a feature cache entry (it holds a {type(value).__name__})")
        except WeightsError as error:
            log.warning("%s; recomputing", error)
            self.misses += 1
            return None
        self.hits += 1
        return value

    def _write(self, digest: str, value: Any, meta: dict[str, Any]) -> None:
        path = self.root / f"{digest}.pt"
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(value, tmp)
        os.replace(tmp, path)  # readers see the whole entry or none: the metadata follows the data
        meta["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))

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
