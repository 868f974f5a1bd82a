"""Unpaired training batches, deterministic from (seed, step) so that a resumed run sees the same data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.data.images import ImageSet, uint8_to_float
from bench.seeds import AUGMENT, LOADER, SHUFFLE, training_seed
from methods.base import Batch


@dataclass(frozen=True)
class Augment:
    """The official CycleGAN-style training transform: resize, random crop, random horizontal flip."""

    load_size: int
    crop_size: int
    flip: bool

    def __call__(self, image: Tensor, generator: torch.Generator) -> Tensor:
        """(3, load, load) uint8 -> (3, crop, crop) uint8."""
        top, left = (
            int(torch.randint(0, self.load_size - self.crop_size + 1, (), generator=generator)) for _ in range(2)
        )
        image = image[:, top : top + self.crop_size, left : left + self.crop_size]
        if self.flip and torch.rand((), generator=generator) < 0.5:
            image = image.flip(-1)
        return image


# A sample is addressed by (index in A, index in B, augmentation seed).
SampleKey = tuple[int, int, int]


class UnpairedImages(Dataset):
    def __init__(self, set_a: ImageSet, set_b: ImageSet, augment: Augment) -> None:
        self.set_a, self.set_b, self.augment = set_a, set_b, augment

    def __len__(self) -> int:
        return max(len(self.set_a), len(self.set_b))

    def __getitem__(self, key: SampleKey) -> tuple[Tensor, Tensor]:
        index_a, index_b, seed = key
        generator = torch.Generator().manual_seed(seed)
        a = self.augment(self.set_a.load(index_a, self.augment.load_size), generator)
        b = self.augment(self.set_b.load(index_b, self.augment.load_size), generator)
        return a, b


class StepSampler(Sampler[list[SampleKey]]):
    """Yields one batch of sample keys per training step, from `start_step` to `total_steps`.

    Sample k of the run (k = step * batch * world + rank * batch + j) takes position k mod n of a
    random permutation of each domain, redrawn every epoch; A and B are permuted independently, so
    pairs are unaligned, as in the official unaligned loaders. Nothing depends on earlier steps.
    """

    def __init__(
        self,
        n_a: int,
        n_b: int,
        batch_size: int,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.n_a, self.n_b, self.batch_size, self.seed = n_a, n_b, batch_size, seed
        self.start_step, self.total_steps, self.rank, self.world = start_step, total_steps, rank, world
        self._cache: dict[tuple[int, int], Tensor] = {}

    def _position(self, domain: int, n: int, k: int) -> int:
        epoch = k // n
        key = (domain, epoch)
        if key not in self._cache:
            self._cache = {k2: v for k2, v in self._cache.items() if k2[0] != domain}  # keep one epoch per domain
            self._cache[key] = torch.randperm(
                n, generator=torch.Generator().manual_seed(training_seed(self.seed, SHUFFLE, domain, epoch))
            )
        return int(self._cache[key][k % n])

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start_step, self.total_steps):
            batch = []
            for j in range(self.batch_size):
                k = (step * self.world + self.rank) * self.batch_size + j
                aug_seed = training_seed(self.seed, AUGMENT, k)
                batch.append((self._position(0, self.n_a, k), self._position(1, self.n_b, k), aug_seed))
            yield batch


def training_batches(
    set_a: ImageSet,
    set_b: ImageSet,
    augment: Augment,
    batch_size: int,
    seed: int,
    start_step: int,
    total_steps: int,
    workers: int = 0,
    rank: int = 0,
    world: int = 1,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Iterator[Batch]:
    """Batches for steps start_step .. total_steps - 1, images as float in [-1, 1] on `device`.

    Batches cross to a GPU as uint8 from pinned memory, a quarter of the bytes of float, without blocking;
    they become float there."""
    sampler = StepSampler(len(set_a), len(set_b), batch_size, seed, start_step, total_steps, rank, world)
    # Its own generator: without one, starting the iterator draws a base seed from torch's global RNG.
    loader = DataLoader(
        UnpairedImages(set_a, set_b, augment),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        generator=torch.Generator().manual_seed(training_seed(seed, LOADER, start_step)),
    )
    for a, b in loader:
        a, b = (uint8_to_float(x.to(device, non_blocking=True)).contiguous(memory_format=memory_format) for x in (a, b))
        yield Batch(a, b)
