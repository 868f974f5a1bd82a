"""Property-based checks of the small invariants everything else rests on."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.data.images import float_to_uint8, to_rgb, uint8_to_float
from bench.data.loader import StepSampler
from bench.seeds import stream_seed


@given(st.lists(st.integers(0, 255), min_size=3, max_size=300))
def test_uint8_float_round_trip_is_exact(values: list[int]) -> None:
    images = torch.tensor(values[: len(values) // 3 * 3], dtype=torch.uint8).view(1, 3, 1, -1)
    as_float = uint8_to_float(images)
    assert as_float.min() >= -1 and as_float.max() <= 1
    assert torch.equal(float_to_uint8(as_float), images)


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 5), st.integers(0, 10**6))
@settings(max_examples=50)
def test_every_image_is_seen_once_per_epoch(n_a: int, n_b: int, batch: int, seed: int) -> None:
    steps = -(-max(n_a, n_b) // batch) + 1
    keys = [key for batch_keys in StepSampler(n_a, n_b, batch, seed, 0, steps) for key in batch_keys]
    assert sorted(k[0] for k in keys[:n_a]) == list(range(n_a))
    assert sorted(k[1] for k in keys[:n_b]) == list(range(n_b))


@given(
    st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"]),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**31),
)
@settings(max_examples=60)
def test_any_mode_becomes_rgb_of_the_same_size(mode: str, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (width, height)
    assert np.array_equal(np.asarray(rgb), np.asarray(to_rgb(image)))  # deterministic


@given(st.integers(0, 2**64 - 1), st.lists(st.integers(0, 15), max_size=3))
@settings(max_examples=50)
def test_stream_seeds_are_seedsequence_children(seed: int, path: list[int]) -> None:
    child = np.random.SeedSequence(seed)
    for index in path:  # spawn down the path, as a caller of SeedSequence would
        child = child.spawn(index + 1)[index]
    assert stream_seed(seed, *path) == int(child.generate_state(1, np.uint64)[0])
    torch.Generator().manual_seed(stream_seed(seed, *path))  # in torch's range


def test_stream_seeds_of_different_paths_differ() -> None:
    # the cases plain entropy lists get wrong: trailing zeros, and a path that is a prefix of another
    paths = [(), (0,), (0, 0), (1,), (1, 0), (0, 1), (2**32 - 1,), (4, 0, 8)]
    seeds = [stream_seed(s, *path) for s in (0, 1, 2**40) for path in paths]
    assert len(set(seeds)) == len(seeds)
    assert stream_seed(-1, 2) == stream_seed(2**64 - 1, 2)  # negative seeds wrap instead of failing
