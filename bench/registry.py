"""One small registry type, used for methods, datasets and metrics.

Entries are objects or lazy `"module:attribute"` strings resolved on first lookup, so listing what is
registered imports nothing heavy. The harness resolves every method through METHODS and never imports a
method module by name.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import methods

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclass
class _Entry:
    target: Any  # the object, or a "module:attribute" string until first lookup
    description: str


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, target: T | str, description: str = "") -> None:
        """Register `target` under `name`; a lazy target is a `"package.module:attribute"` string."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name].target!r})")
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"lazy {self.kind} target must look like 'module:attribute', got {target!r}")
        self._entries[name] = _Entry(target, description)

    def get(self, name: str) -> T:
        entry = self._entry(name)
        if isinstance(entry.target, str):
            module_name, _, attribute = entry.target.partition(":")
            entry.target = getattr(importlib.import_module(module_name), attribute)
        return entry.target

    def check(self, name: str) -> None:
        """Raise UnknownNameError unless `name` is registered; resolves nothing, so imports nothing."""
        self._entry(name)

    def description(self, name: str) -> str:
        entry = self._entry(name)
        if entry.description:
            return entry.description
        doc = getattr(self.get(name), "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _entry(self, name: str) -> _Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {', '.join(self._entries) or 'none'}"
            )
        return self._entries[name]


METHODS: Registry[Any] = Registry("method")
DATASETS: Registry[Any] = Registry("dataset")
METRICS: Registry[Any] = Registry("metric")

for _name, (_target, _description) in methods.CATALOGUE.items():
    METHODS.register(_name, _target, _description)

DATASETS.register("folder", "bench.data.folder:FOLDER", "any root holding trainA/ trainB/ testA/ testB/ images")
DATASETS.register(
    "selfie2anime", "bench.data.folder:SELFIE2ANIME", "U-GAT-IT selfie2anime (A selfie, B anime), 256x256"
)
DATASETS.register(
    "toyfaces", "bench.data.toyfaces:TOYFACES", "synthetic photo-like vs anime-like faces with known factors"
)

_METRICS = {
    "fid": ("FID", "Frechet Inception Distance (torch-fidelity), lower is better"),
    "kid": ("KID", "Kernel Inception Distance, raw (x100 in reports), lower is better"),
    "kid_mean_with_source": (
        "KID_MEAN_WITH_SOURCE",
        "GAN_Metrics-Tensorflow's 'mean KID': mean of KID to target and to source (off by default)",
    ),
    "lpips_diversity": ("LPIPS_DIVERSITY", "mean LPIPS(AlexNet) between outputs of one input under random styles"),
    "dfid": ("DFID", "diversity FID: outputs of one input under many styles vs the real target set"),
    "style_consistency": ("STYLE_CONSISTENCY", "style spread across augmented copies / across styles, lower is better"),
    "content_equivariance": ("CONTENT_EQUIVARIANCE", "LPIPS between G(T(x)) and T(G(x)) for flips and small affines"),
    "throughput": ("THROUGHPUT", "images/s, ms per image (p50, p95), FLOPs, parameters, peak memory"),
    "fd_dinov2": ("FD_DINOV2", "Frechet distance of DINOv2 ViT-S/14 features (optional, off by default)"),
    "fd_clip": ("FD_CLIP", "Frechet distance of CLIP ViT-B/32 features (optional, off by default)"),
}
for _name, (_attribute, _description) in _METRICS.items():
    METRICS.register(_name, f"bench.evaluate.metrics:{_attribute}", _description)
