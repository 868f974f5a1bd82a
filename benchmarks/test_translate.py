"""Translation speed per method (`nox -s bench`): tiny and paper presets at batch 1 and 8, with images/s and
the fraction of this machine's measured matmul and conv2d peaks in each benchmark's extra_info.

The call timed is what `bench.evaluate.throughput.measure_throughput` times: `translate` under no_grad in eval
mode on inputs already in memory, multimodal methods with one style fixed per image, so every round does the
same work.
"""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import fastest_seconds, record_peaks
from step_worker import build_method

from bench.evaluate.throughput import count_flops
from bench.registry import METHODS

# Ordered by preset, then method, so that one built model serves both batch sizes before the next is built.
CASES = [(name, preset, batch) for preset in ("tiny", "paper") for name in METHODS.names() for batch in (1, 8)]
_built: dict[tuple[str, str], torch.nn.Module] = {}


def _method(name: str, preset: str) -> torch.nn.Module:
    """The last model built, kept for its next batch size; only one at a time (paper models take GiBs)."""
    if (name, preset) not in _built:
        _built.clear()
        _built[(name, preset)] = build_method(name, preset).eval()
    return _built[(name, preset)]


@pytest.mark.parametrize(("name", "preset", "batch"), CASES, ids=[f"{n}-{p}-b{b}" for n, p, b in CASES])
def test_translate(benchmark, peaks, name: str, preset: str, batch: int) -> None:
    method = _method(name, preset)
    direction = method.directions[0]  # Council GAN's paper preset trains one direction only
    size = method.config.image_size
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    style = method.sample_style(batch, direction, generator)
    call = functools.partial(method.translate, x, direction, style=style, generator=generator)
    with torch.no_grad():
        flops = count_flops(call)  # also the warm-up call (oneDNN picks its kernels on the first)
        rounds = 3 if preset == "paper" else 10
        benchmark.pedantic(call, rounds=rounds, warmup_rounds=1)
    images_per_s = batch / fastest_seconds(benchmark)
    benchmark.extra_info.update(
        batch_size=batch,
        image_size=size,
        threads=torch.get_num_threads(),
        images_per_s=round(images_per_s, 3),
        gflop_per_image=round(flops / batch / 1e9, 3),
    )
    record_peaks(benchmark, peaks, flops)
