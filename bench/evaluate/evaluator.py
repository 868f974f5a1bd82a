"""Translate the test set once per (method, direction) and score it with every requested metric."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.data.folder import TwoDomainDataset
from bench.data.images import float_to_uint8, uint8_to_float
from bench.data.loader import mix_seed
from bench.evaluate.extract import INCEPTION_PREPROCESSING, InceptionFeatures
from bench.evaluate.metrics import MetricOptions, SetMetric
from bench.results import ResultRow
from methods.base import DIRECTIONS, Method

SOURCE_AND_TARGET = {"a2b": ("A", "B"), "b2a": ("B", "A")}


@torch.no_grad()
def translate_set(
    method: Method, images: Tensor, direction: str, batch_size: int, device: torch.device, out_size: int, seed: int
) -> Tensor:
    """(N, 3, s, s) uint8 inputs at the method's size -> (N, 3, out_size, out_size) uint8 translations.

    Outputs are clamped to [-1, 1] (some generators end without tanh), resized with antialiased bicubic
    when the method works at another size than the evaluation, and rounded to uint8 once.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    for chunk in images.split(batch_size):
        y = method.translate(uint8_to_float(chunk).to(device), direction, generator=generator)  # type: ignore[arg-type]
        y = y.float().clamp(-1, 1)
        if y.shape[-1] != out_size or y.shape[-2] != out_size:
            y = F.interpolate(y, size=(out_size, out_size), mode="bicubic", antialias=True, align_corners=False)
        out.append(float_to_uint8(y).cpu())
    return torch.cat(out)


@dataclass
class Evaluator:
    """Holds the extractor and the real-set features, which every method of a run shares."""

    data: TwoDomainDataset
    features: InceptionFeatures
    metrics: list[SetMetric]
    options: MetricOptions
    batch_size: int = 50
    limit: int | None = None  # translate only the first N test images per direction
    _real: dict[str, Tensor] = field(default_factory=dict)

    def real_features(self, domain: str) -> Tensor:
        """Features of the full real test set of `domain`, computed once per run."""
        if domain not in self._real:
            images = self.data.split("test", domain).load_all(self.data.image_size)
            self._real[domain] = self.features(images, self.batch_size)
        return self._real[domain]

    def preprocessing(self, method_size: int) -> str:
        size = self.data.image_size
        fake = f"fake: generated at {method_size}px, clamped to [-1,1]"
        if method_size != size:
            fake += f", antialiased bicubic to {size}px"
        return f"real: Pillow bicubic to {size}px, uint8; {fake}, rounded to uint8; {INCEPTION_PREPROCESSING}"

    def evaluate(self, method: Method, run_id: str, preset: str, seed: int) -> list[ResultRow]:
        method.eval()
        device = next(method.parameters()).device
        rows = []
        for direction in method.directions:
            source, target = SOURCE_AND_TARGET[direction]
            inputs = self.data.split("test", source).load_all(method.config.image_size, self.limit)
            fakes = translate_set(
                method,
                inputs,
                direction,
                self.batch_size,
                device,
                self.data.image_size,
                mix_seed(seed, DIRECTIONS.index(direction)),
            )
            fake_features = self.features(fakes, self.batch_size)
            real_features = self.real_features(target)
            for metric in self.metrics:
                value = metric.compute(fake_features, real_features, self.options)
                rows.append(
                    ResultRow(
                        run_id=run_id,
                        method=method.name,
                        preset=preset,
                        dataset=self.data.name,
                        direction=direction,
                        metric=metric.name,
                        value=value.value,
                        n=len(fake_features),
                        n_ref=len(real_features),
                        reference=f"test{target}",
                        extractor=self.features.weights.label,
                        weights_sha256=self.features.weights.sha256,
                        preprocessing=self.preprocessing(method.config.image_size),
                        protocol=value.protocol,
                        standard=self.features.weights.standard,
                        seed=seed,
                    )
                )
        return rows
