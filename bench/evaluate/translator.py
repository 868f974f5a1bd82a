"""What the evaluation layer needs from anything it scores: a trained method or a reference translator.

Every `methods.base.Method` satisfies this protocol; so do the toyfaces reference translators of the
metric sanity suite, which is how the suite exercises exactly the code path real methods go through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class HasImageSize(Protocol):
    image_size: int


class Translator(Protocol):
    name: str
    multimodal: bool  # True when outputs depend on a style code
    config: HasImageSize  # the working resolution: inputs are given at config.image_size

    @property
    def directions(self) -> tuple[str, ...]: ...

    def translate(
        self,
        x: Tensor,
        direction: str = "a2b",
        *,
        style: Tensor | None = None,
        reference: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) in [-1, 1]; `style` from `sample_style` fixes the style."""
        ...

    def sample_style(self, n: int, direction: str, generator: torch.Generator | None = None) -> Tensor | None: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def eval(self) -> object: ...


@dataclass(frozen=True)
class WorkingSize:
    """`config` of translators that have no method configuration."""

    image_size: int


def device_of(translator: Translator) -> torch.device:
    """The device of the translator's first parameter (CPU for translators without parameters)."""
    first = next(iter(translator.parameters()), None)
    return first.device if first is not None else torch.device("cpu")
