"""Training goldens: each method's `tiny` losses per step and its weights and optimiser states after a few steps
of `bench.train.train` (see tests/golden.py for how values are matched).

A refactor of the loop or of a method's training step that is not meant to change training (the order of
updates, a loss, an optimiser setting) must leave these unchanged; a change that is meant to (new random
streams) re-records them and says so in its commit message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.registry import METHODS
from bench.train import TrainPlan, train
from methods.base import Method
from tests.golden import check

STEPS = 3
# Overrides that make every phase run within STEPS steps: Council GAN's council from step 1, GNR's lazy R1
# at steps 0 and 2, StarGAN v2's random resized crop on every image.
PHASES_ON = {"council": {"council_start_at_iter": 1}, "gnr": {"r1_every": 2}, "stargan_v2": {"rrc_prob": 1.0}}


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().double().flatten() for t in tensors]) if tensors else torch.zeros(0)


def _tiny(name: str) -> Method:
    torch.manual_seed(0)
    cls = METHODS.get(name)
    size = 48 if name == "ugatit" else 32  # U-GAT-IT's six-layer discriminator needs 48 px
    method = cls.from_preset("tiny", image_size=size, load_size=size, batch_size=2, **PHASES_ON.get(name, {}))
    for network in cls.pretrained_networks(method.config):
        method.attach_pretrained(network, None)
    return method


CROSS_MACHINE_RTOL = 0.05


@pytest.mark.parametrize("name", ["cyclegan", "ugatit", "stargan_v2", "council", "gnr"])
def test_tiny_training_matches_its_golden(name: str, toyfaces_small, tmp_path: Path) -> None:
    method = _tiny(name)
    losses: dict[str, float] = {}
    plan = TrainPlan(STEPS, 2, seed=0, checkpoint_every=100, sample_every=100, log_every=1)

    def record(step: int, values: dict[str, float]) -> None:
        losses.update({f"loss.{step}.{key}": value for key, value in values.items()})

    train(method, toyfaces_small, plan, tmp_path, Accelerator(cpu=True), {"test": True}, on_losses=record)
    values: dict[str, torch.Tensor | float] = dict(losses)
    for attr, state in method.network_state().items():
        values[f"network.{attr}"] = _flat([t for t in state.values() if t.is_floating_point()])
    for opt_name, optimizer in method.optimizers().items():
        states = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        values[f"optimizer.{opt_name}"] = _flat(states)
        values[f"lr.{opt_name}"] = optimizer.param_groups[0]["lr"]
    # Bitwise on the machine kind that recorded the goldens. Elsewhere other kernels round differently and
    # Adam's normalised steps carry that into the weights: between AVX512 and AVX2 machines (torch 2.14.1)
    # losses after two updates differed by up to 1.3%, so the tolerance there is 5%, which still catches a
    # changed loss, update order or optimiser setting (those move values by far more after one step).
    check(f"training_{name}", values, rtol=CROSS_MACHINE_RTOL)
