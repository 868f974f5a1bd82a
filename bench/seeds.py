"""Seeds of independent random streams under a run's seed, mixed by numpy's SeedSequence.

Each stream is addressed by a path of small integers. Evaluation's paths start with 0-4 (one per kind of
output, bench/evaluate/generate.py); training's start with TRAINING, so no training stream equals an
evaluation one.
"""

from __future__ import annotations

import numpy as np

TRAINING = 16
# Training streams, the second path entry: the per-domain epoch permutations, each sample's crop and flip,
# the DataLoader's own base seed, and the generator each training step draws from.
SHUFFLE, AUGMENT, LOADER, STEP = range(4)


def stream_seed(seed: int, *path: int) -> int:
    """The seed of the random stream at `path` under `seed`, as one 64-bit integer for torch.Generator.

    numpy's SeedSequence does the mixing: `path` is its spawn key, so this is the seed of the child
    SeedSequence(seed).spawn(path[0] + 1)[path[0]], and so on down the path, streams it designs to be
    independent, the same on every platform. Path entries are indices below 2**32 (SeedSequence splits
    larger ones into 32-bit words, so (2**32,) would equal (0, 1)).
    """
    if any(not 0 <= index < 2**32 for index in path):
        raise ValueError(f"stream path entries must be in [0, 2**32), got {path}")
    # SeedSequence takes non-negative entropy only; negative seeds, which the CLI accepts, wrap around
    return int(np.random.SeedSequence(seed % 2**64, spawn_key=path).generate_state(1, np.uint64)[0])


def training_seed(seed: int, stream: int, *path: int) -> int:
    """The seed of training stream `stream` (SHUFFLE, AUGMENT, LOADER or STEP) at `path`."""
    return stream_seed(seed, TRAINING, stream, *path)
