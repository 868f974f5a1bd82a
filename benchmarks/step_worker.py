"""A training-step worker for the paper-preset step benchmarks (benchmarks/test_train.py), run as a script.

    python benchmarks/step_worker.py METHOD PRESET STEP THREADS

Why a separate process: peak memory is read from `resource.getrusage(RUSAGE_SELF).ru_maxrss`, the kernel's
high-water mark of the process's resident set. It is exact (a sampling thread with psutil can miss a short
peak) and costs nothing, but it never goes down, so in the pytest process it would hold the largest model any
earlier benchmark built. A fresh process per benchmark makes it the peak of this model's training alone.

Protocol, one line each way, so the parent times only the step (the round trip adds well under 1 ms):
  after building:  prints {"rss_mib": ..., "trained_parameters": ...}  (resident set before any step)
  "step" ->        prints {"logs": {...}}   (one `bench.train.train_step` at STEP, the training loop's own)
  "stats" ->       prints {"peak_rss_mib": ..., "rss_mib": ...}
"""

from __future__ import annotations

import json
import resource
import sys

import psutil
import torch


def build_method(name: str, preset: str):
    """The method as `bench run` builds it (seed 0), pretrained loss networks as random stand-ins: the same
    architecture, so the same cost, without needing the published files."""
    from bench.registry import METHODS

    torch.manual_seed(0)
    cls = METHODS.get(name)
    method = cls.from_preset(preset)
    for network in cls.pretrained_networks(method.config):
        method.attach_pretrained(network, None)
    return method


def _mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def main(name: str, preset: str, step: int, threads: int) -> None:
    from bench.train import train_step
    from methods.base import Batch

    torch.set_num_threads(threads)
    method = build_method(name, preset).train()
    size = method.config.image_size
    generator = torch.Generator().manual_seed(0)
    # batch 1: the official batch size of CycleGAN, U-GAT-IT and Council GAN; the brief's common ground
    a, b = (torch.rand(1, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
    process = psutil.Process()
    parameters = sum(p.numel() for p in method.parameters() if p.requires_grad)
    print(json.dumps({"rss_mib": _mib(process.memory_info().rss), "trained_parameters": parameters}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            logs = train_step(method, Batch(a, b), step)
            print(json.dumps({"logs": logs}), flush=True)
        elif command == "stats":
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            print(json.dumps({"peak_rss_mib": _mib(peak_kib * 1024), "rss_mib": _mib(process.memory_info().rss)}))
            sys.stdout.flush()
        else:
            return


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
