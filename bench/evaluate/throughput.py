"""How fast a translator translates: images per second, per-image latency, peak memory and FLOPs.

What is measured: the `translate` call alone, on random float32 inputs already on the translator's device,
under `torch.no_grad()` with the translator in eval mode, after untimed warm-up calls. The device is
synchronised before and after every timed call, so asynchronous CUDA work is inside the timing.

What is not measured: data loading, decoding, resizing and host-device copies (inputs are made on the device
beforehand); copying or saving outputs (they stay on the device); mixed precision, compilation or any other
speed-up a deployment could add (the translator runs as it is, in float32).

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts matmuls and convolutions by their
textbook formula (2 FLOPs per multiply-add) and ignores elementwise work (normalisation, activations). The
`peak_fraction` compares the achieved FLOP rate with a float32 matmul measured on this machine (the fastest
block of torch.utils.benchmark.Timer), not a datasheet peak; convolutions that cuDNN runs in TF32, or by
Winograd/FFT, can therefore exceed 1.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.evaluate.translator import Translator, device_of


@dataclass(frozen=True)
class Throughput:
    batch_size: int
    images_per_s: float  # batch_size * iterations / total timed seconds
    ms_per_image_p50: float  # median over timed iterations of (call latency / batch_size)
    ms_per_image_p95: float
    # CUDA: torch.cuda.max_memory_allocated during the timed calls (weights and inputs included). CPU: None,
    # because the CPU allocator keeps no peak statistic that could be reset around a call.
    peak_memory_mb: float | None
    flops_per_image: float  # FLOPs of one translate call at this batch size, divided by the batch size
    peak_fraction: float | None  # flops_per_image * images_per_s / machine_peak_flops; None if the peak is unknown


# Measured peaks, keyed by device and CPU thread count (the CPU peak scales with threads), so that
# evaluating many translators in one process pays for the matmul benchmark once.
_PEAK_FLOPS: dict[tuple[torch.device, int], float] = {}


def measure_throughput(
    translator: Translator,
    direction: str,
    batch_sizes: Sequence[int] = (1, 8),
    warmup: int = 2,
    iterations: int = 10,
    seed: int = 0,
) -> list[Throughput]:
    """One `Throughput` per batch size, each from `warmup` untimed and `iterations` timed translate calls."""
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be a non-empty sequence of integers >= 1, got {tuple(batch_sizes)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1 (the number of timed calls), got {iterations}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 (the number of untimed calls), got {warmup}")

    device = device_of(translator)
    size = translator.config.image_size
    was_training = bool(getattr(translator, "training", False))
    translator.eval()
    peak = machine_peak_flops(device)
    peak = peak if math.isfinite(peak) and peak > 0 else None  # a timer too coarse for the matmul gives no peak
    results = []
    try:
        with torch.no_grad():
            for batch_size in batch_sizes:
                generator = torch.Generator(device=device).manual_seed(seed)
                x = torch.rand(batch_size, 3, size, size, generator=generator, device=device) * 2 - 1
                # A style fixed per image makes every call do the same work; multimodal translators would
                # otherwise draw a new style per call (and some draw it through a mapping network).
                style = translator.sample_style(batch_size, direction, generator)

                call = functools.partial(translator.translate, x, direction, style=style, generator=generator)

                flops = count_flops(call)
                for _ in range(warmup):
                    call()
                _synchronize(device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                # Our own loop rather than torch.utils.benchmark.Timer: the p50/p95 need the latency of each
                # call, and Timer reports only means over blocks of calls (timeit: one block; blocked_autorange:
                # blocks sized and counted by time, not `iterations`), each after warm-up calls of its own.
                latencies = []
                for _ in range(iterations):
                    _synchronize(device)
                    start = time.perf_counter()
                    call()
                    _synchronize(device)
                    latencies.append(time.perf_counter() - start)
                peak_memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

                per_image_ms = np.array(latencies) / batch_size * 1e3
                images_per_s = batch_size * iterations / sum(latencies)
                flops_per_image = flops / batch_size
                results.append(
                    Throughput(
                        batch_size=batch_size,
                        images_per_s=images_per_s,
                        ms_per_image_p50=float(np.percentile(per_image_ms, 50)),
                        ms_per_image_p95=float(np.percentile(per_image_ms, 95)),
                        peak_memory_mb=peak_memory,
                        flops_per_image=flops_per_image,
                        peak_fraction=flops_per_image * images_per_s / peak if peak is not None else None,
                    )
                )
    finally:
        if was_training:  # leave a module being trained as it was found
            translator.train()  # type: ignore[attr-defined]
    return results


def machine_peak_flops(device: torch.device) -> float:
    """Float32 matmul FLOP/s measured on `device` (best of a few square matmuls), measured once per process."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0" share one entry
    key = (device, torch.get_num_threads())
    if key not in _PEAK_FLOPS:
        from torch.utils.benchmark import Timer  # imports cpp_extension (0.1 s, a CUDA_HOME warning): only here

        # Big enough to saturate the device, small enough to take well under a second.
        n = 2048 if device.type == "cuda" else 1024
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        # Timer warms up (library loading, kernel selection), sizes the blocks and keeps the thread count;
        # the fastest block is the peak. Its default clock synchronises CUDA only, hence `_clock`.
        timer = Timer("torch.mm(a, b)", globals={"a": a, "b": b}, num_threads=key[1], timer=_clock(device))
        best = min(timer.blocked_autorange(min_run_time=0.2).times)
        _PEAK_FLOPS[key] = 2 * n**3 / best if best > 0 else math.nan
    return _PEAK_FLOPS[key]


def count_flops(fn: Callable[..., Any], *args: Any) -> int:
    """Total FLOPs of the matmuls and convolutions `fn(*args)` runs (FlopCounterMode's count)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(*args)
    return counter.get_total_flops()


def _clock(device: torch.device) -> Callable[[], float]:
    """A clock that reads only after `device` has finished its queued work."""

    def clock() -> float:
        _synchronize(device)
        return time.perf_counter()

    return clock


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so the clock reads finished work; CPU ops are synchronous already."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu":
        getattr(torch, device.type).synchronize()  # mps, xpu, ... expose the same call
