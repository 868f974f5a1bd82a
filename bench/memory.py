"""Will a training run fit? Checked before its first step, from the optimisers' parameters and the free memory
of the device, so that a run too large for the machine stops with a message instead of being killed mid-step."""

from __future__ import annotations

import logging

import torch

from bench.errors import ConfigError
from methods.base import Method

log = logging.getLogger(__name__)

# Tensors an optimiser keeps per parameter besides the gradient (Adam's two moments, momentum's buffer).
OPTIMISER_STATES = {torch.optim.Adam: 2, torch.optim.AdamW: 2, torch.optim.RMSprop: 1, torch.optim.SGD: 1}


def training_memory_floor(method: Method) -> int:
    """Bytes a training step adds at least to a built model: a gradient and the optimiser's state tensors for
    every optimised parameter. Activations come on top (a lower bound, so a refusal is never wrong)."""
    total = 0
    for optimizer in method.optimizers().values():
        per_parameter = 1 + OPTIMISER_STATES.get(type(optimizer), 0)
        for group in optimizer.param_groups:
            total += per_parameter * sum(p.numel() * p.element_size() for p in group["params"] if p.requires_grad)
    return total


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on `device`: free GPU memory, or the host's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil  # an Accelerate dependency

    return psutil.virtual_memory().available


# Peak growth of a step over training_memory_floor, measured: U-GAT-IT's full model at batch 1, 256 px on CPU
# grew from 3.2 GiB built to 18.8 GiB (15.6 GiB = 2.08 x its 7.5 GiB floor; benchmarks/test_train.py).
TYPICAL_PEAK_OVER_FLOOR = 2.1


def check_training_memory(method: Method, device: torch.device, available: int | None = None) -> None:
    """Before the first step: refuse a run whose gradients and optimiser states alone exceed the free memory
    (rather than let the kernel kill it mid-step), and warn when the typical peak would exceed it."""
    needed = training_memory_floor(method)
    available = available_memory(device) if available is None else available
    gib = 2**30
    what = f"{method.name} on {device.type}: gradients and optimiser states need {needed / gib:.1f} GiB"
    fixes = "train on a device with more memory, pick a smaller preset (U-GAT-IT: paper_light), or free memory"
    if needed > available:
        raise ConfigError(
            f"{method.name} will not fit: {what} alone, and {available / gib:.1f} GiB is available "
            f"(activations come on top); {fixes}."
        )
    if TYPICAL_PEAK_OVER_FLOOR * needed > available:
        log.warning(
            "%s may run out of memory: %s, a step typically about %.1f GiB with activations, and %.1f GiB is "
            "available; %s.",
            method.name,
            what,
            TYPICAL_PEAK_OVER_FLOOR * needed / gib,
            available / gib,
            fixes,
        )
