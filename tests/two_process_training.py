"""Trains every method's `tiny` preset for a few steps in each process of an `accelerate launch`; run by
tests/test_multiprocess_train.py, which compares the results with one-process training.

    python -m accelerate.commands.launch --cpu --num_processes 2 ... tests/two_process_training.py DATA OUT

One launch trains all five methods, so the process start-up (about 10 s) is paid once. Under OUT/<method>:
`run/` is the training's run folder (checkpoints, samples), `rank<r>.pt` each process's network states after
the last step, `rank<r>.json` how many checkpoints that process saved and what `train` returned.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

import bench.train
from bench.data.folder import TwoDomainDataset
from bench.registry import DATASETS, METHODS
from bench.train import TrainPlan, train
from methods.base import Method

NAMES = ("cyclegan", "ugatit", "stargan_v2", "council", "gnr")
STEPS = 3
GLOBAL_BATCH = 4  # two images per process with two processes
SEED = 0
# Every phase within STEPS steps (as the training goldens): Council GAN's council from step 1, GNR's lazy R1
# at steps 0 and 2; the moving averages (StarGAN v2, GNR) are updated after every step anyway.
ADAM_EPS = 1.0  # see tiny()
PHASES_ON = {"council": {"council_start_at_iter": 1}, "gnr": {"r1_every": 2}}


def tiny(name: str, batch_size: int) -> Method:
    """The method as every process builds it: the same seed, so the same initial weights."""
    torch.manual_seed(0)
    cls = METHODS.get(name)
    size = 48 if name == "ugatit" else 32  # U-GAT-IT's six-layer discriminator needs 48 px
    method = cls.from_preset("tiny", image_size=size, load_size=size, batch_size=batch_size, **PHASES_ON.get(name, {}))
    for network in cls.pretrained_networks(method.config):
        method.attach_pretrained(network, None)
    # Adam's eps at 1: with the default 1e-8 a gradient that is float noise (a bias before an instance norm,
    # whose true gradient is 0) moves its parameter by a full learning rate of either sign, so two orders of
    # summation differ by ~6e-4 after three steps, even one process on one thread against two threads.
    # With eps 1 the update is about lr * gradient, and differences stay those of the gradients.
    for optimizer in method.optimizers().values():
        for group in optimizer.param_groups:
            group["eps"] = ADAM_EPS
    return method


def plan(batch_size: int) -> TrainPlan:
    return TrainPlan(STEPS, batch_size, SEED, checkpoint_every=1, sample_every=100, log_every=1)


def open_data(root: Path) -> TwoDomainDataset:
    return DATASETS.get("toyfaces").open(root, {"size": 32, "n_train": 24, "n_test": 8, "seed": 0})


def main(data_root: Path, out: Path) -> None:
    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    data = open_data(data_root)
    saves: list[int] = []
    save = bench.train.Checkpointer.save

    def counted_save(self: bench.train.Checkpointer, payload: dict) -> Path:
        saves.append(payload["step"])  # which process saves is what the test checks
        return save(self, payload)

    bench.train.Checkpointer.save = counted_save  # type: ignore[method-assign]
    for name in NAMES:
        saves.clear()
        method = tiny(name, GLOBAL_BATCH // world)
        (out / name).mkdir(parents=True, exist_ok=True)
        result = train(method, data, plan(GLOBAL_BATCH // world), out / name / "run", accelerator, {"test": name})
        torch.save(method.network_state(), out / name / f"rank{rank}.pt")
        checkpoint = str(result.checkpoint) if result.checkpoint else None
        summary = {"saved_steps": list(saves), "checkpoint": checkpoint, "world": world}
        (out / name / f"rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
