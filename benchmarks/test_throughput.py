"""Speed of the throughput measurement itself (pytest-benchmark): `nox -s bench`."""

from __future__ import annotations

import torch

from bench.evaluate.throughput import machine_peak_flops, measure_throughput
from methods.cyclegan import CycleGAN


def test_throughput_cyclegan_tiny(benchmark) -> None:
    torch.manual_seed(0)
    method = CycleGAN.from_preset("tiny")
    machine_peak_flops(torch.device("cpu"))  # measured once per process: keep it out of the rounds
    results = benchmark.pedantic(
        measure_throughput,
        args=(method, "a2b"),
        kwargs={"batch_sizes": (1, 8), "warmup": 1, "iterations": 3},
        rounds=3,
        iterations=1,
    )
    assert [r.batch_size for r in results] == [1, 8]
