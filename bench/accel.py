"""The Accelerator of a run, built from the configuration tree's `device` and `train.mixed_precision`.

The tree is what a run records, so it is also what runs. Under `accelerate launch` the launcher passes its
own settings in the environment (ACCELERATE_MIXED_PRECISION, ACCELERATE_USE_CPU); one that contradicts the
tree is refused rather than silently overridden either way: give the same value to both.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from accelerate import Accelerator

from bench.errors import ConfigError


def _launcher_cpu() -> bool:
    return os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")


def accelerator_for(cfg: Any) -> Accelerator:
    """Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=...) for cfg.device, or ConfigError first."""
    device, precision = cfg.device, cfg.train.mixed_precision
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # set by accelerate launch (its default: no)
    if launched is not None and launched.lower() != precision:
        raise ConfigError(
            f"accelerate launch says mixed precision {launched}, the configuration train.mixed_precision={precision}; "
            f"give the same to both (--mixed-precision {launched}, or launch with --mixed_precision {precision})"
        )
    if device == "cuda" and _launcher_cpu():
        raise ConfigError("accelerate launch --cpu contradicts --device cuda; drop one of them")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch; use --device cpu (or auto)")
    on_cpu = device == "cpu" or _launcher_cpu() or not torch.cuda.is_available()
    if precision == "fp16" and on_cpu:
        # Accelerate (1.16) accepts fp16 on the CPU but then neither autocasts nor scales (native_amp stays
        # False): the run would be float32 while its record said fp16. bf16 does autocast on the CPU.
        raise ConfigError("--mixed-precision fp16 needs a CUDA device; on the CPU use --mixed-precision bf16 or no")
    # `auto` without a GPU must say cpu=True: under torchrun (accelerate launch --multi_gpu) on a machine
    # without CUDA, cpu=False leaves every process alone (DistributedType.NO), each training and reporting
    # by itself; cpu=True joins them over gloo (MULTI_CPU).
    no_gpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    try:
        return Accelerator(mixed_precision=precision, cpu=device == "cpu" or (device == "auto" and no_gpu))
    except ValueError as error:  # Accelerate refusing these settings, e.g. its state fixed earlier in this process
        raise ConfigError(f"Accelerate refused device={device}, mixed_precision={precision}: {error}") from error
