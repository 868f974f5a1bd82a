"""Data-parallel training: two processes (DDP over gloo on the CPU) against the same training in one process.

One `accelerate launch` of tests/two_process_training.py trains every method's `tiny` preset for three steps
(EMA updates, GNR's lazy R1 at steps 0 and 2, Council GAN's council loss from step 1) with a global batch of
4, two images per process. Two one-process references:

- the same data parallelism in one process (`data_parallel_in_one_process`): a replica per rank on that
  rank's half batch and random stream, their gradients averaged as DDP averages them. Every method must match
  it: it checks that the loop synchronises every phase's gradients and updates the moving averages from them.
- plain training with batch 4 (`bench.train.train`). Only U-GAT-IT and CycleGAN match it, as their steps treat
  each image on its own and (for three steps) draw no random numbers. The other three mix images across the
  batch or draw per image, so two half batches are not one batch; see ONE_BATCH_DIFFERS.

The references run on one thread, as torchrun runs each process, and all runs use Adam with eps 1, so that
float noise in zero-mean gradients is not blown up to a learning rate per step (two_process_training.tiny).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.data.loader import Augment, training_batches
from bench.train import set_learning_rates, step_generator, train, update_averages
from methods.base import Method, Networks
from tests import two_process_training as job

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
# Against the emulation: the same kernels on the same half batches (measured: bitwise equal).
RTOL = ATOL = 1e-5
# Against one batch of 4, as the largest absolute weight difference after three steps. Float reordering (kernels
# chosen by batch size) moved weights by up to 6.1e-6 (CycleGAN; U-GAT-IT 4.5e-6, on an AVX-512 machine), real
# differences by 1.1e-3 (StarGAN v2) and 3.8e-3 (GNR). Relative to the largest weight change, as this test first
# measured, rounding alone reached 1.5% of it for CycleGAN there (its three Adam steps with eps 1 are small).
ONE_BATCH_ATOL = 1e-4
# Why two processes cannot equal one batch of 4 for these methods (the harness cannot fix it; the methods'
# steps would have to draw and mix over the global batch):
ONE_BATCH_DIFFERS = {
    # references are a random permutation of the batch (now of each process's half), and per-image
    # resized crops and latent codes are drawn from each process's own stream
    "stargan_v2": "references permuted within the batch; per-image draws",
    # per-image grayscale and style draws from each process's stream; loss matching divides by the
    # history of each process's own (half-batch) losses. In three steps the effect stays within rounding
    # (2.8e-6), so it is checked neither way.
    "council": "per-image draws; loss matching on per-process losses",
    # minibatch-stddev layers, a batch-variance consistency loss, one image per batch augmented for all
    "gnr": "minibatch stddev and batch variance; one picked image per batch; per-image draws",
}


def _states(method: Method) -> dict[str, torch.Tensor]:
    return {f"{attr}.{k}": v for attr, state in method.network_state().items() for k, v in state.items()}


def _flat_states(path: Path) -> dict[str, torch.Tensor]:
    return {f"{attr}.{k}": v for attr, state in torch.load(path, weights_only=True).items() for k, v in state.items()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in a if a[k].is_floating_point() and not torch.allclose(a[k], b[k], rtol=RTOL, atol=ATOL)]


def data_parallel_in_one_process(name: str, data, world: int) -> Method:
    """What `world` processes of `bench.train.train` compute, emulated in one: a replica per rank, built alike,
    each on its rank's batches (StepSampler's rank/world split) and random stream; before each phase's
    optimisers step, every gradient is replaced by the replicas' mean, in DDP's order (each divided by
    `world`, then summed). Returns rank 0's replica."""
    per_process = job.GLOBAL_BATCH // world
    replicas = [job.tiny(name, per_process) for _ in range(world)]
    c = replicas[0].config
    augment = Augment(c.load_size, c.image_size, c.flip)
    plan = job.plan(per_process)
    streams = [
        training_batches(
            data.split("train", "A"),
            data.split("train", "B"),
            augment,
            per_process,
            plan.seed,
            0,
            plan.total_steps,
            rank=rank,
            world=world,
        )  # fmt: skip
        for rank in range(world)
    ]
    phases = replicas[0].phases()
    for step in range(plan.total_steps):
        runs = []
        for rank, (method, batch) in enumerate(zip(replicas, [next(s) for s in streams], strict=True)):
            set_learning_rates(method, step, plan.total_steps)
            nets = Networks(**{attr: getattr(method, attr) for attr in method.networks})
            runs.append(method.training_step(nets, batch, step, step_generator(plan.seed, step, rank)))
        while True:
            updates = [next(run, None) for run in runs]  # resuming a finished step runs its code after the last yield
            if updates[0] is None:
                assert all(u is None for u in updates)
                break
            stepped = [[m.optimizers()[n] for n in phases[u.phase]] for m, u in zip(replicas, updates, strict=True)]
            for optimizers, update in zip(stepped, updates, strict=True):
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                update.loss.backward()
            for params in zip(*(m.parameters() for m in replicas), strict=True):
                if params[0].grad is not None:
                    mean = sum(p.grad / world for p in params)
                    for p in params:
                        p.grad = mean.clone()
            for optimizers in stepped:
                for optimizer in optimizers:
                    optimizer.step()
        for method in replicas:
            update_averages(method)
    return replicas[0]


def one_batch(name: str, data, tmp_path: Path) -> Method:
    method = job.tiny(name, job.GLOBAL_BATCH)
    train(method, data, job.plan(job.GLOBAL_BATCH), tmp_path / name, Accelerator(cpu=True), {"test": name})
    return method


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(data_root: Path, out: Path) -> subprocess.CompletedProcess:
    # `--multi_gpu` is what starts several processes (torchrun); with `--cpu`, accelerate's simple launcher
    # starts ONE process whatever --num_processes says. The script's Accelerator(cpu=True) keeps it on the
    # CPU (gloo) on a machine with GPUs too.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(WORLD)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port())]  # not 29500: another launch may be running
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    script = ROOT / "tests" / "two_process_training.py"
    return subprocess.run(
        [*launch, str(script), str(data_root), str(out)], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture
def one_thread():
    """The references on one thread, as torchrun starts each process (OMP_NUM_THREADS=1): the same kernels'
    summation order, so the data-parallel emulation is bitwise the launched training."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path: Path, one_thread) -> None:
    data = job.open_data(tmp_path / "data")  # generated before the launch, so the processes only read it
    out = tmp_path / "out"
    done = launch_two_processes(tmp_path / "data", out)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in job.NAMES:
        ranks = [json.loads((out / name / f"rank{r}.json").read_text()) for r in range(WORLD)]
        assert all(r["world"] == WORLD for r in ranks)  # really two processes
        # the main process alone saved (every step; the newest two kept), so there is one file set
        assert ranks[0]["saved_steps"] == [1, 2, 3] and ranks[1]["saved_steps"] == []
        assert ranks[1]["checkpoint"] is None
        files = sorted(p.name for p in (out / name / "run" / "checkpoints").iterdir())
        assert files == ["step_0000002.pt", "step_0000003.pt"]
        checkpoint = torch.load(out / name / "run" / "checkpoints" / files[-1], weights_only=True)
        two = {f"{a}.{k}": v for a, s in checkpoint["networks"].items() for k, v in s.items()}
        # DDP keeps the replicas identical: the same gradients, the same optimiser steps
        rank1 = _flat_states(out / name / "rank1.pt")
        assert all(torch.equal(two[k], rank1[k]) for k in two), name

        emulated = _states(data_parallel_in_one_process(name, data, WORLD))
        print(f"{name}: max |2 processes - emulated| = {_max_difference(two, emulated):.3g}")
        assert not _close(two, emulated), f"{name}: {_close(two, emulated)[:5]}"

        single = _states(one_batch(name, data, tmp_path / "single"))
        difference = _max_difference(two, single)
        print(f"{name}: max |2 processes - 1 process, batch {job.GLOBAL_BATCH}| = {difference:.3g}")
        if name == "council":  # its difference is real but within rounding after three steps (ONE_BATCH_DIFFERS)
            continue
        if name in ONE_BATCH_DIFFERS:
            assert difference > ONE_BATCH_ATOL, f"{name} now trains as one batch: drop it from ONE_BATCH_DIFFERS"
        else:
            assert difference <= ONE_BATCH_ATOL, name
