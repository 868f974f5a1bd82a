"""Seconds per training step (`nox -s bench`): every method's tiny preset in this process, and its paper preset
at batch 1, 256 px, in a fresh worker process that also reports the step's peak resident memory."""

from __future__ import annotations

import psutil
import pytest
import torch
from conftest import RSS_GROWTH_ALLOWED

from bench.registry import METHODS
from bench.train import train_step, use_channels_last
from methods.base import Batch


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])  # what `bench run --channels-last` changes
@pytest.mark.parametrize("name", METHODS.names())
def test_tiny_train_step(benchmark, name: str, layout: str) -> None:
    torch.manual_seed(0)
    method = METHODS.get(name).from_preset("tiny")
    size, batch = method.config.image_size, method.config.batch_size
    x = torch.rand(batch, 3, size, size) * 2 - 1
    if layout == "channels_last":
        use_channels_last(method)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    a, b = (images.contiguous(memory_format=memory_format) for images in (x, x.flip(0)))
    step = iter(range(10**9))  # consecutive steps, as in training (GNR's lazy R1 falls on every 16th)
    benchmark(lambda: train_step(method, Batch(a, b), next(step)))


def _paper(name: str):
    return METHODS.get(name).Config.paper()


# (method, step index, what the step must log): a step index at which every phase of the official iteration
# runs. StarGAN v2 runs both its latent- and its reference-guided passes and the EMA update in every step.
# Council GAN's council discriminator and council loss start at `council_start_at_iter`. GNR adds its lazy R1
# penalty every `r1_every` steps, so its plain step and its R1 step are measured apart.
PAPER_STEPS = {
    "cyclegan": (0, "cycle_A"),
    "ugatit": (0, "G_cam_A"),
    "stargan_v2": (0, "G_ref_sty"),
    "council-council_on": (_paper("council").council_start_at_iter, "G_council_a2b"),
    "gnr-plain": (1, "D_r1"),  # logged as 0 between lazy R1 steps
    "gnr-lazy_r1": (_paper("gnr").r1_every, "D_r1"),
}


@pytest.mark.parametrize("case", PAPER_STEPS)
def test_paper_train_step(benchmark, step_worker, saved_extra_info, request, case: str) -> None:
    name = case.split("-")[0]
    step, logged = PAPER_STEPS[case]
    worker = step_worker(name, "paper", step)
    # Float32 Adam holds weights, gradients and two moments: 16 bytes a trained parameter before activations.
    # U-GAT-IT's full model needs many GiB; skipping says so instead of letting the kernel kill the machine.
    needed = 16 * worker.built["trained_parameters"] + 2**30
    available = psutil.virtual_memory().available
    if needed > available:
        pytest.skip(f"{case} needs about {needed / 2**30:.0f} GiB, {available / 2**30:.0f} GiB are available")
    logs = benchmark.pedantic(worker.step, rounds=2, warmup_rounds=1)  # the first step also creates Adam's state
    assert logged in logs, f"{case}: the step at {step} logged {sorted(logs)}, not {logged}"
    if name == "gnr":
        assert (logs["D_r1"] > 0) == (case == "gnr-lazy_r1")
    stats = worker.ask("stats")
    benchmark.extra_info.update(
        step=step,
        batch_size=1,
        image_size=_paper(name).image_size,
        threads=torch.get_num_threads(),
        rss_built_mib=worker.built["rss_mib"],  # after building the model, before the first step
        peak_rss_mib=stats["peak_rss_mib"],  # the worker's high-water mark over the three steps
    )
    before = saved_extra_info.get(request.node.nodeid, {}).get("peak_rss_mib")
    if before is not None:
        assert stats["peak_rss_mib"] <= RSS_GROWTH_ALLOWED * before, f"peak RSS grew from {before} MiB"
