"""What metrics read: gatherers, each a function of one (translator, direction) being scored.

A metric names its gatherer. The evaluator calls each distinct gatherer once per (translator, direction)
and hands the result to every metric naming an equal one, so FID and KID share one extraction of the
outputs. Gatherers are frozen dataclasses: equal settings compare and hash equal, which is what that
cache looks them up by.

A gatherer returns the positional arguments of its metrics' `compute` (which takes the options last), as
numpy arrays. Images become features inside the extractors, and features become numpy once, where they
leave an extractor (`Scope.features`, `Scope.lpips`, `Evaluator.real_features`); nothing converts back.

Gatherers that read only the translator's outputs name the evaluation options they read (`settings`): with
the translator's identity and the extractor's, that is the key under which the evaluator keeps their result
in the feature cache (`Scope.remember`), so re-scoring an unchanged checkpoint translates nothing. Gatherers
that add real features to those (`OutputsAndReal`...) or measure the machine (`Timing`) are never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from torch import Tensor

from bench.evaluate.generate import Generation, pairs_of
from bench.evaluate.shards import ALONE, Shards
from bench.evaluate.throughput import measure_throughput

if TYPE_CHECKING:  # metrics.py imports this module for its gatherers
    from bench.evaluate.metrics import EvalOptions


class Gather(Protocol):
    extractor: str  # the network it runs, to build and to name in the row: inception | lpips | style | ... | none
    reference: bool  # reads the real reference split of the target domain (named in the row)

    def __call__(self, scope: Scope) -> tuple[Any, ...]: ...


@dataclass
class Scope:
    """One (translator, direction) being scored: what gatherers read, and what they have gathered."""

    generation: Generation
    target: str  # the target domain: A or B
    options: EvalOptions
    batch_size: int
    extractor: Callable[[str], Any]  # name -> the built extractor
    real_features: Callable[[str, str], np.ndarray]  # (extractor, domain) -> reference-set features
    shards: Shards = ALONE  # the processes that share the extraction batches of translated images
    # (gatherer, compute) -> the stored result or compute()'s, stored; None: nothing is stored
    remember: Callable[[Gather, Callable[[], tuple[Any, ...]]], tuple[Any, ...]] | None = None
    gathered: dict[Any, tuple[Any, ...]] = field(default_factory=dict)

    def get(self, gather: Gather) -> tuple[Any, ...]:
        if gather not in self.gathered:
            stored = self.remember is not None and getattr(gather, "settings", None) is not None
            self.gathered[gather] = self.remember(gather, lambda: gather(self)) if stored else gather(self)
        return self.gathered[gather]

    def features(self, extractor: str, images: Tensor) -> np.ndarray:
        network = self.extractor(extractor)
        if self.shards.world == 1:  # one call, exactly as without sharding
            return network(images, self.batch_size).numpy()
        # a batch through the network alone is what it is inside the full call: the network splits the same way
        return self.shards.batches(len(images), self.batch_size, lambda b: network(images[b], self.batch_size)).numpy()

    def lpips(self, a: Tensor, b: Tensor) -> np.ndarray:
        network = self.extractor("lpips")
        if self.shards.world == 1:
            return network(a, b, self.batch_size).numpy()
        return self.shards.batches(len(a), self.batch_size, lambda i: network(a[i], b[i], self.batch_size)).numpy()

    def real(self, extractor: str) -> np.ndarray:
        return self.real_features(extractor, self.target)


@dataclass(frozen=True)
class Outputs:
    """(features,): `extractor` features of the outputs, (N, D)."""

    extractor: str
    reference: ClassVar[bool] = False
    settings: ClassVar[tuple[str, ...]] = ("fid_styles",)

    def __call__(self, scope: Scope) -> tuple[np.ndarray]:
        styles = scope.options.fid_styles
        if styles > 1 and scope.generation.translator.multimodal:  # StarGAN v2: every input under M styles
            return (scope.features(self.extractor, scope.generation.style_sets(styles).flatten(0, 1)),)
        return (scope.features(self.extractor, scope.generation.outputs),)


@dataclass(frozen=True)
class OutputsAndReal:
    """(fake, real): features of the outputs and of the target's reference split.

    The metrics reading it are set metrics: the noise floor calls their `compute` with two halves of `real`.
    """

    extractor: str
    reference: ClassVar[bool] = True

    def __call__(self, scope: Scope) -> tuple[np.ndarray, np.ndarray]:
        (fake,) = scope.get(Outputs(self.extractor))  # shared with every other reader of these features
        return fake, scope.real(self.extractor)


@dataclass(frozen=True)
class OutputsAndBothReal:
    """(fake, target, source): features of the outputs, of the target's and of the source's reference split."""

    extractor: str
    reference: ClassVar[bool] = True

    def __call__(self, scope: Scope) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fake, target = scope.get(OutputsAndReal(self.extractor))
        source = scope.real_features(self.extractor, "A" if scope.target == "B" else "B")
        return fake, target, source


@dataclass(frozen=True)
class StylePairs:
    """(pairwise,): LPIPS between all pairs of the `styles` outputs of each input, (N, M*(M-1)/2)."""

    extractor: ClassVar[str] = "lpips"
    reference: ClassVar[bool] = False
    settings: ClassVar[tuple[str, ...]] = ("styles",)

    def __call__(self, scope: Scope) -> tuple[np.ndarray]:
        m = scope.options.styles
        sets = scope.generation.style_sets(m)
        return (np.stack([scope.lpips(sets[:, i], sets[:, j]) for i, j in pairs_of(m)], 1),)


@dataclass(frozen=True)
class StyleSetFeatures:
    """(features,): features of each of `dfid_inputs` inputs under `dfid_styles` styles, (n, S, D)."""

    extractor: str
    reference: ClassVar[bool] = False
    settings: ClassVar[tuple[str, ...]] = ("dfid_inputs", "dfid_styles")

    def __call__(self, scope: Scope) -> tuple[np.ndarray]:
        o = scope.options
        sets = scope.generation.dfid_sets(o.dfid_inputs, o.dfid_styles)
        return (np.stack([scope.features(self.extractor, outputs) for outputs in sets]),)


@dataclass(frozen=True)
class PerInputStyles:
    """(per_input, real): `StyleSetFeatures` as one (S, D) array per input, and the reference."""

    extractor: str
    reference: ClassVar[bool] = True

    def __call__(self, scope: Scope) -> tuple[list[np.ndarray], np.ndarray]:
        (sets,) = scope.get(StyleSetFeatures(self.extractor))
        return list(sets), scope.real(self.extractor)


@dataclass(frozen=True)
class AugmentedStyles:
    """(augmented, styles, outputs): VGG style statistics for style_consistency.

    augmented: (n, K, C) of K augmented copies of each input under one style; styles: (n, K, C) of each input
    under K styles, multimodal translators only; outputs: (N, C) of the outputs, unimodal translators only.
    """

    extractor: ClassVar[str] = "style"
    reference: ClassVar[bool] = False
    settings: ClassVar[tuple[str, ...]] = ("consistency_inputs", "consistency_copies")

    def __call__(self, scope: Scope) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        o = scope.options
        augmented, by_style = scope.generation.augmented(o.consistency_inputs, o.consistency_copies)

        def of(sets: Tensor) -> np.ndarray:
            return scope.features("style", sets.flatten(0, 1)).reshape(*sets.shape[:2], -1)

        if by_style is not None:
            return of(augmented), of(by_style), None
        # unimodal: the spread across the outputs of different inputs is the reference
        return of(augmented), None, scope.get(Outputs("style"))[0]


@dataclass(frozen=True)
class Equivariance:
    """(distances,): LPIPS between G(T(x), s) and T(G(x, s)) per input and transform, (n, transforms)."""

    extractor: ClassVar[str] = "lpips"
    reference: ClassVar[bool] = False
    settings: ClassVar[tuple[str, ...]] = ("equivariance_inputs",)

    def __call__(self, scope: Scope) -> tuple[np.ndarray]:
        pairs = scope.generation.equivariance(scope.options.equivariance_inputs)
        return (np.stack([scope.lpips(a, b) for a, b in pairs.values()], 1),)


@dataclass(frozen=True)
class Timing:
    """(measured, parameters): `Throughput` per batch size, and the parameter count of the translating networks."""

    extractor: ClassVar[str] = "none"
    reference: ClassVar[bool] = False

    def __call__(self, scope: Scope) -> tuple[list[Any], int]:
        o, g = scope.options, scope.generation
        batches = (1, o.throughput_batch) if o.throughput_batch > 1 else (1,)
        measured = measure_throughput(
            g.translator, g.direction, batches, iterations=o.throughput_iterations, seed=g.seed
        )
        counts = getattr(g.translator, "parameter_counts", lambda: {})()
        return measured, sum(counts.values())
