"""Score a translator with every requested metric: generate once, gather once, compute pure metrics.

The evaluator owns the extractors (built on first use), the feature cache of real image sets and the
run's evaluation options; it works on anything with the Translator protocol, so trained methods and
the sanity suite's reference translators go through the same code.

Under several processes (`shards`) every process calls `evaluate` with the same arguments: they share
the translation and extraction batches, the main process alone extracts the reference sets (and writes
the cache) and sends their features to the others, every process computes the same metric values, and
only the main process writes files. The caller records the main process's rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.data.folder import TwoDomainDataset
from bench.data.images import save_pngs
from bench.evaluate import generate
from bench.evaluate.cache import CacheKey, FeatureCache
from bench.evaluate.extract import (
    InceptionFeatures,
    LpipsDistance,
    StyleStatistics,
    TorchFidelityFeatures,
    TorchvisionInceptionFeatures,
)
from bench.evaluate.gather import Gather, Scope, Timing
from bench.evaluate.generate import Generation, stream_seed
from bench.evaluate.metrics import EvalOptions, Metric, MetricValue
from bench.evaluate.samples import sample_grids, save_grids
from bench.evaluate.shards import ALONE, Shards
from bench.evaluate.translator import Translator, device_of
from bench.inception_import import tensor_sha256
from bench.results import IDENTITY, NOISE_FLOOR, ResultRow
from bench.weights import ResolvedWeights, resolve_weights
from methods.base import DIRECTIONS

log = logging.getLogger(__name__)

SOURCE_AND_TARGET = {"a2b": ("A", "B"), "b2a": ("B", "A")}


@dataclass
class Evaluator:
    data: TwoDomainDataset
    metrics: list[Metric]
    options: EvalOptions
    extractors: dict[str, Callable[[], Any]]  # extractor name -> factory, built on first use
    cache: FeatureCache | None = None  # None: real-set features are not stored on disk
    batch_size: int = 50
    limit: int | None = None  # translate only the first N test images per direction
    dump_dir: Path | None = None  # also write the translations scored by set metrics here, as PNG
    fake_preprocessing: str | None = None  # how translated images were made, when not by a translator here
    shards: Shards = ALONE  # the processes evaluating together; the default is this one alone
    _built: dict[str, Any] = field(default_factory=dict)
    _real: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)

    def extractor(self, name: str) -> Any:
        if name not in self._built:
            self._built[name] = self.extractors[name]()
        return self._built[name]

    # -- real sets ----------------------------------------------------------------------------------------
    def real_features(self, extractor: str, domain: str, alone: bool = False) -> np.ndarray:
        """Features of the reference split of `domain`: from memory, the disk cache, or computed.

        Only the main process extracts them and touches the cache; under several processes it sends them to
        the others, so every process must ask for the same sets in the same order. `alone`: the main process
        asks without the others (the noise floor), nothing is sent."""
        key = (extractor, self.options.reference, domain)
        if key not in self._real:
            if not self.shards.main and alone:
                raise RuntimeError("only the main process reads reference features alone")
            features = self._reference(extractor, domain) if self.shards.main else None
            self._real[key] = features if self.shards.world == 1 or alone else self.shards.broadcast(features)
        return self._real[key]

    def _reference(self, extractor: str, domain: str) -> np.ndarray:
        split = self.options.reference
        images = self.data.split(split, domain)
        network = self.extractor(extractor)
        size = self.data.image_size

        def compute() -> Tensor:
            return network(images.load_all(size), self.batch_size)

        if self.cache is None:
            return compute().numpy()
        cache_key = CacheKey(network.id, network.weights_sha256, network.preprocessing, size, images.content_hash())
        label = f"{self.data.name} {split}{domain} ({len(images)} images, {network.label})"
        return self.cache.features(cache_key, label, compute).numpy()

    # -- one translator -----------------------------------------------------------------------------------
    def evaluate(
        self,
        translator: Translator,
        run_id: str,
        preset: str,
        seed: int,
        directions: tuple[str, ...] | None = None,
        samples_dir: Path | None = None,
    ) -> list[ResultRow]:
        """Every metric of every direction the translator translates (of `directions` when given).

        `samples_dir`: also write the report's comparison images there (bench.evaluate.samples)."""
        translator.eval()
        rows = []
        for direction in directions or translator.directions:
            source, target = SOURCE_AND_TARGET[direction]
            inputs = self.data.split("test", source).load_all(translator.config.image_size, self.limit)
            generation = Generation(
                translator,
                inputs,
                direction,
                self.data.image_size,
                stream_seed(seed, DIRECTIONS.index(direction)),
                self.batch_size,
                self.shards,
            )
            # every process translates its share of what is written; the main process writes it
            if self.dump_dir is not None:  # the images FID/KID read, named after their inputs
                outputs = generation.outputs
                names = [path.stem for path in self.data.split("test", source).paths[: len(inputs)]]
                if self.shards.main:
                    save_pngs(outputs, self.dump_dir / translator.name / direction, names)
            if samples_dir is not None:
                grids = sample_grids(generation)
                if self.shards.main:
                    save_grids(grids, samples_dir)
            # what the metrics read, gathered once per direction for all metrics that read it
            key = self._translation_key(translator, direction, len(inputs), generation.seed)
            scope = Scope(
                generation,
                target,
                self.options,
                self.batch_size,
                self.extractor,
                self.real_features,
                self.shards,
                None if key is None else lambda gather, compute, key=key: self._remembered(key, gather, compute),
            )
            for metric in self.metrics:
                started = time.perf_counter()
                values = metric.compute(*scope.get(metric.gather), self.options)
                log.info("%s %s %s: %.1f s", translator.name, direction, metric.name, time.perf_counter() - started)
                rows += [
                    self._row(
                        metric, value, run_id, translator.name, preset, direction, seed, translator.config.image_size
                    )
                    for value in values
                ]
        return rows

    # -- stored translations' features -----------------------------------------------------------------------
    def _translation_key(self, translator: Translator, direction: str, n: int, seed: int) -> dict[str, Any] | None:
        """What the outputs of `translator` on this test split depend on; None: not stored (no cache, outputs
        made elsewhere, or a translator without tensors to identify it by)."""
        if self.cache is None or self.fake_preprocessing is not None:
            return None
        identity = translator_identity(translator)
        if identity is None:
            return None
        source = SOURCE_AND_TARGET[direction][0]
        return {
            "kind": "translations",
            "translator": identity,
            "direction": direction,
            "inputs": self.data.split("test", source).content_hash(n),
            "n": n,
            "working_size": translator.config.image_size,
            "eval_size": self.data.image_size,
            "seed": seed,
            "batch_size": self.batch_size,  # each batch's generator is seeded from its start
        }

    def _remembered(
        self, translation: dict[str, Any], gather: Gather, compute: Callable[[], tuple[Any, ...]]
    ) -> tuple[Any, ...]:
        """`gather`'s result from the cache, or computed and stored. Under several processes the main one
        reads and writes the cache and sends what it read; on a miss every process computes its share."""
        assert self.cache is not None
        network = self.extractor(gather.extractor)
        key = {
            **translation,
            "gather": type(gather).__name__,
            "fields": dataclasses.asdict(gather),  # type: ignore[call-overload]
            "settings": {name: getattr(self.options, name) for name in gather.settings},  # type: ignore[attr-defined]
            "extractor": [network.id, network.weights_sha256, network.preprocessing],
        }
        stored = self.cache.load(key) if self.shards.main else None
        if self.shards.world > 1:
            stored = self.shards.broadcast(stored)
        if stored is not None:
            log.info(
                "%s %s: %s from the feature cache", translation["translator"][:12], key["direction"], key["gather"]
            )
            return stored
        values = compute()
        if self.shards.main:
            label = f"{translation['direction']} {type(gather).__name__} ({network.label})"
            self.cache.store(key, label, values)
        return values

    def _row(
        self,
        metric: Metric,
        value: MetricValue,
        run_id: str,
        method: str,
        preset: str,
        direction: str,
        seed: int,
        fake_size: int | None,
    ) -> ResultRow:
        """A results row; `fake_size` None for rows that compare real images only (the noise floor)."""
        target = SOURCE_AND_TARGET[direction][1]
        if metric.extractor == "none":
            # timing runs on random inputs; other metrics without a network read the translated images
            images = (
                "random inputs at working size" if isinstance(metric.gather, Timing) else self.preprocessing(fake_size)
            )
            extractor, sha, standard, preprocessing = "none", "", True, images
        else:
            network = self.extractor(metric.extractor)
            extractor, sha, standard = network.label, network.weights_sha256, network.standard
            images = self.preprocessing(fake_size)
            preprocessing = f"{images}; {network.preprocessing}"
        interval = value.interval
        return ResultRow(
            run_id=run_id,
            method=method,
            preset=preset,
            dataset=self.data.name,
            direction=direction,
            metric=value.name or metric.name,
            value=value.value,
            n=value.n,
            n_ref=value.n_ref,
            reference=f"{self.options.reference}{target}" if metric.gather.reference else "",
            extractor=extractor,
            weights_sha256=sha,
            preprocessing=preprocessing,
            protocol=f"{self.options.protocol}: {value.protocol}",  # the protocol's name, then the estimator
            standard=standard,
            seed=seed,
            ci_low=interval.low if interval else float("nan"),
            ci_high=interval.high if interval else float("nan"),
            ci_level=interval.level if interval else float("nan"),
        )

    def preprocessing(self, fake_size: int | None) -> str:
        size = self.data.image_size
        text = f"real: Pillow bicubic to {size}px, uint8"
        if fake_size is None:
            return text
        if self.fake_preprocessing:
            return f"{text}; {self.fake_preprocessing}"
        text += f"; fake: generated at {fake_size}px, clamped to [-1,1]"
        if fake_size != size:
            text += f", antialiased bicubic to {size}px"
        return text + ", rounded to uint8"

    # -- the noise floor ----------------------------------------------------------------------------------
    def noise_floor(self, run_id: str, directions: list[str]) -> list[ResultRow]:
        """Each set metric between two disjoint random halves of the real reference set of each target (main
        process only).

        What a perfect translator would score at half the sample size: how much of a value at this n is
        estimator bias and noise rather than a difference between distributions.
        """
        rows = []
        for direction in directions:
            _, target = SOURCE_AND_TARGET[direction]
            for metric in self.metrics:
                if not metric.set_metric:
                    continue
                real = self.real_features(metric.extractor, target, alone=True)
                order = np.random.default_rng(stream_seed(self.options.seed, DIRECTIONS.index(direction))).permutation(
                    len(real)
                )
                half = len(real) // 2
                if half < 2:
                    continue
                for value in metric.compute(real[order[:half]], real[order[half : 2 * half]], self.options):
                    rows.append(self._row(metric, value, run_id, NOISE_FLOOR, "", direction, self.options.seed, None))
        return rows

    def identity_rows(self, run_id: str, directions: list[str]) -> list[ResultRow]:
        """Each set metric between the real source and target sets (main process only): what a translator
        that returns its input scores, the bar a method must beat to have translated at all. Both sets are
        the ones the methods' rows already extracted, so this costs no extraction."""
        rows = []
        for direction in directions:
            source, target = SOURCE_AND_TARGET[direction]
            for metric in self.metrics:
                if metric.set_metric:
                    as_is = self.real_features(metric.extractor, source, alone=True)
                    real = self.real_features(metric.extractor, target, alone=True)
                    for value in metric.compute(as_is, real, self.options):
                        rows.append(self._row(metric, value, run_id, IDENTITY, "", direction, self.options.seed, None))
        return rows


def translator_identity(translator: Translator) -> str | None:
    """sha256 of what a network translator's outputs depend on besides its inputs: its name and configuration,
    every tensor it holds, the source of its class's module and of the harness's generation code, the torch
    version and the device type. None for translators that are not networks (the sanity suite's references)."""
    if not isinstance(translator, nn.Module):
        return None
    digest = hashlib.sha256()
    config = getattr(translator.config, "to_dict", lambda: translator.config)()
    for part in (translator.name, repr(config), torch.__version__, device_of(translator).type):
        digest.update(f"{part}\0".encode())
    digest.update(tensor_sha256(translator.state_dict()).encode())
    for module in (inspect.getmodule(type(translator)), generate):
        source = inspect.getsourcefile(module) if module is not None else None
        digest.update(Path(source).read_bytes() if source else b"?")
    return digest.hexdigest()


def metric_extractors(
    metrics: list[Metric], inception: ResolvedWeights, weights: dict[str, str], allow_standin: bool, device: Any
) -> dict[str, Callable[[], Any]]:
    """Factories of the extractors `metrics` use. Their weights are resolved now, so a missing file stops the
    run before any training; the networks themselves are built on first use. `weights`: name -> user path."""
    needed = {m.extractor for m in metrics}
    # The set metrics' network: the TF-FID Inception, or the one a protocol names (stargan_v2: torchvision's)
    network = InceptionFeatures if inception.name == "inception" else TorchvisionInceptionFeatures
    factories: dict[str, Callable[[], Any]] = {"inception": lambda: network(inception, device)}
    if "lpips" in needed:
        alexnet = resolve_weights("alexnet", weights.get("alexnet"), allow_standin)
        factories["lpips"] = lambda: LpipsDistance(alexnet, device)
    if "style" in needed:
        vgg16 = resolve_weights("vgg16", weights.get("vgg16"), allow_standin)
        factories["style"] = lambda: StyleStatistics(vgg16, device)
    for backbone in ("dinov2", "clip"):
        if backbone in needed:
            TorchFidelityFeatures.check_available(backbone, weights.get(backbone))
            factories[backbone] = lambda b=backbone: TorchFidelityFeatures(b, device, weights.get(b))
    return factories
