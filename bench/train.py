"""The one training loop for every method, on Hugging Face Accelerate, with atomic checkpoints and resume.

The loop owns what every method would otherwise repeat: wrapping networks and optimisers for data parallelism,
learning-rate schedules, and for each phase a method's step yields, clearing gradients, backpropagating and
stepping the phase's optimisers, then the moving averages.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from bench.data.folder import TwoDomainDataset
from bench.data.images import float_to_uint8, uint8_to_float
from bench.data.loader import Augment, training_batches
from bench.errors import BenchError, WeightsError
from bench.files import WriteError, write_atomically
from bench.inception_import import load_safely
from bench.memory import check_training_memory
from bench.official import load_official, released_files
from bench.seeds import STEP, training_seed
from methods.base import Batch, Method, Networks, state_mismatch

log = logging.getLogger(__name__)

# 2: every random stream derives from (seed, step), so checkpoints carry no RNG states. Format-1 files still
# load for scoring (same network layout) but cannot be resumed: their runs drew other random numbers.
CHECKPOINT_FORMAT = 2
SCORABLE_FORMATS = (1, 2)
SAMPLE_SEED = 1234  # styles of the sample grids: the same at every step, so grids are comparable


class TrainingDiverged(BenchError):
    """A loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainPlan:
    total_steps: int
    batch_size: int
    seed: int
    checkpoint_every: int
    sample_every: int
    log_every: int
    workers: int = 0
    samples_per_domain: int = 4  # test images shown in each sample grid
    channels_last: bool = False  # weights and batches NHWC (see use_channels_last)
    compile: bool = False  # torch.compile the trained networks, unless the method says why it cannot


@dataclass
class TrainResult:
    steps: int  # steps completed, counting resumed ones
    resumed_from: int  # 0 when the run started fresh
    seconds: float  # wall time of this process's training, resumed part excluded
    last_losses: dict[str, float] = field(default_factory=dict)
    sample_grid: Path | None = None
    checkpoint: Path | None = None


def default_total_steps(method: Method, data: TwoDomainDataset, batch_size: int) -> int:
    """The preset's epochs, where one epoch is max(|trainA|, |trainB|) samples (the official loaders)."""
    per_epoch = max(len(data.split("train", "A")), len(data.split("train", "B"))) / batch_size
    return max(1, math.ceil(method.config.epochs * per_epoch))


class Checkpointer:
    """Writes `step_<7-digit step>.pt` files atomically (temporary file, then rename) and keeps the newest few."""

    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory, self.keep = directory, keep

    def save(self, payload: dict[str, Any]) -> Path:
        path = self.directory / f"step_{payload['step']:07d}.pt"
        previous = self.latest()
        try:  # a crash or a full disk leaves either the old file set or the complete new one
            write_atomically(path, lambda tmp: torch.save(payload, tmp))
        except WriteError as error:
            raise WriteError(f"{error} (the last checkpoint, {previous or 'none yet'}, is intact)") from error
        for old in self.all()[: -self.keep]:
            old.unlink()
        return path

    def all(self) -> list[Path]:
        return sorted(self.directory.glob("step_*.pt")) if self.directory.is_dir() else []

    def latest(self) -> Path | None:
        files = self.all()
        return files[-1] if files else None

    def latest_readable(self) -> Path | None:
        """The newest checkpoint that opens; a damaged newer one (truncated by a crash or a full disk, where
        the rename was not atomic) is skipped with a warning. Opened memory-mapped: the zip directory at the
        end of the file is read, the tensors are not."""
        for path in reversed(self.all()):
            try:
                load_safely(path, "a readable checkpoint", "nothing: the one before it is used", mmap=True)
                return path
            except WeightsError as error:  # one line, without torch's advice to load unsafely
                log.warning("%s is damaged: %s; using the checkpoint before it", path.name, error)
        return None

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        """The payload of `path`, read without running code; WeightsError in one line when it does not load."""
        return load_safely(
            path, "a checkpoint `bench run` wrote", "another checkpoint, or train afresh without --resume"
        )


def checkpoint_payload(method: Method, step: int, fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "method": method.name,
        "fingerprint": json.dumps(fingerprint, sort_keys=True),
        "networks": method.network_state(),
        "optimizers": {name: opt.state_dict() for name, opt in method.optimizers().items()},
        "train_state": method.train_state(),
    }


def restore(method: Method, payload: dict[str, Any], source: str = "the checkpoint") -> int:
    """Load a checkpoint written by `checkpoint_payload`; returns the number of completed steps.

    A checkpoint of another configuration (another width) is a BenchError in one line naming the network,
    key and both shapes, raised before torch's multi-line size-mismatch dump could be.
    """
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(
            f"{source} is of format {payload.get('format')}, this version resumes format {CHECKPOINT_FORMAT} "
            "only (its random streams differ); score it with --checkpoint, or train afresh"
        )
    networks = payload.get("networks")
    for attr in method.networks:
        state = networks.get(attr) if isinstance(networks, dict) else None
        mismatch = state_mismatch(getattr(method, attr), state) if isinstance(state, dict) else "no state dict for it"
        if mismatch:
            raise BenchError(
                f"{source} does not fit {method.name} as configured ({attr}: {mismatch}); train afresh without "
                "--resume, or resume with the preset and overrides it was written with"
            )
    method.load_network_state(networks)
    for name, optimizer in method.optimizers().items():
        optimizer.load_state_dict(payload["optimizers"][name])
    method.load_train_state(payload["train_state"])
    return int(payload["step"])


def prepare(
    method: Method, accelerator: Any, compile: bool = False
) -> tuple[Networks, dict[str, torch.optim.Optimizer]]:
    """The method's networks and optimisers as the loop runs them: trained networks and every optimiser
    handed to Accelerate (DistributedDataParallel over several processes), frozen ones moved to its device;
    with `compile`, the trained ones wrapped in torch.compile (inductor) as well.

    The method keeps its own unwrapped modules, which share their parameters with the wrapped ones, so
    checkpoints hold the usual keys.
    """
    nets = {}
    for attr in method.networks:
        network = getattr(method, attr)
        trained = any(p.requires_grad for p in network.parameters())
        if not trained:
            nets[attr] = network.to(accelerator.device)
            continue
        wrapped = accelerator.prepare_model(network)
        # Not Accelerate's dynamo_backend: Accelerate keeps the first setting of a process, and a method that
        # cannot compile must train eager in a run whose other methods compile.
        nets[attr] = torch.compile(wrapped) if compile else wrapped
    optimizers = {name: accelerator.prepare_optimizer(opt) for name, opt in method.optimizers().items()}
    return Networks(**nets), optimizers


def use_channels_last(method: Method) -> None:
    """Store every 4-D weight of the method channels-last (NHWC), in place, so its convolutions run NHWC kernels.

    On 2 CPU cores the tiny training steps of StarGAN v2, GNR and Council GAN got 4-22% faster; CycleGAN's moved
    -2% to +3%, U-GAT-IT's -16% on one machine type and +20% on another. The benchmarks
    (benchmarks/test_train.py) measure both layouts. Values are unchanged and results move by float
    rounding only, which is why it is an option and not the default (the golden tests are bitwise).
    """
    for tensor in itertools.chain(method.parameters(), method.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


def set_learning_rates(method: Method, step: int, total_steps: int) -> None:
    factor = method.lr_factor(step, total_steps)
    for optimizer in method.optimizers().values():
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The random stream of one training step of one process: a function of (seed, step, rank) only, so a
    resumed run draws what an uninterrupted one would have drawn."""
    return torch.Generator().manual_seed(training_seed(seed, STEP, step, rank))


def train_step(
    method: Method,
    batch: Batch,
    step: int,
    seed: int = 0,
    rank: int = 0,
    nets: Networks | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
) -> dict[str, float]:
    """One training step of `method`, its randomness drawn from `step_generator(seed, step, rank)`; returns
    the logged values.

    Each update the method's `training_step` yields is applied with the optimisers of its phase: their
    gradients are cleared (so a loss that also reached other networks, such as a generator loss through a
    discriminator, leaves nothing behind that counts), the loss is backpropagated, they step. The moving
    averages follow. Without `nets` and `optimizers` the method's own modules and optimisers are used.
    """
    nets = nets if nets is not None else Networks(**{attr: getattr(method, attr) for attr in method.networks})
    optimizers = optimizers if optimizers is not None else method.optimizers()
    phases = method.phases()
    logs: dict[str, torch.Tensor | float] = {}
    for update in method.training_step(nets, batch, step, step_generator(seed, step, rank)):
        if update.phase not in phases:
            raise KeyError(
                f"{method.name} yielded an update of phase {update.phase!r}; its phases: {', '.join(phases)}"
            )
        stepped = [optimizers[name] for name in phases[update.phase]]
        for optimizer in stepped:
            optimizer.zero_grad(set_to_none=True)
        backward(update.loss)
        for optimizer in stepped:
            optimizer.step()
        logs.update(update.logs)
    update_averages(method)
    return {name: float(value.detach() if isinstance(value, torch.Tensor) else value) for name, value in logs.items()}


@torch.no_grad()
def update_averages(method: Method) -> None:
    for average in method.averages():
        averaged, live = getattr(method, average.average), getattr(method, average.live)
        for param_average, param in zip(averaged.parameters(), live.parameters(), strict=True):
            param_average.lerp_(param.detach(), 1.0 - average.decay)  # decay * average + (1 - decay) * param


@torch.no_grad()
def sample_grid(
    method: Method,
    inputs_a: torch.Tensor,
    inputs_b: torch.Tensor,
    device: torch.device,
    directions: tuple[str, ...] | None = None,
) -> Image.Image:
    """Rows: A inputs, their A->B translations, B inputs, their B->A translations (uint8 inputs).

    Directions the method does not translate, or not among `directions` when given, are left out.
    """
    was_training = method.training
    method.eval()
    rows = []
    for direction, inputs in (("a2b", inputs_a), ("b2a", inputs_b)):
        if direction not in (directions or method.directions):
            continue
        x = uint8_to_float(inputs).to(device)
        generator = torch.Generator(device=device).manual_seed(SAMPLE_SEED)
        y = method.translate(x, direction, generator=generator)  # type: ignore[arg-type]
        rows += [inputs, float_to_uint8(y).cpu()]
    method.train(was_training)
    grid = make_grid(torch.cat(rows), nrow=len(inputs_a), padding=2, pad_value=255)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def train(
    method: Method,
    data: TwoDomainDataset,
    plan: TrainPlan,
    run_dir: Path,
    accelerator: Any,
    fingerprint: dict[str, Any],
    resume_from: Path | None = None,
    on_losses: Callable[[int, dict[str, float]], None] | None = None,
    on_sample: Callable[[int, Path], None] | None = None,
) -> TrainResult:
    """Train `method` for `plan.total_steps` steps, writing checkpoints and sample grids under `run_dir`.

    `on_losses(step, losses)` receives every step's losses; `on_sample(step, path)` every sample grid.
    """
    checkpointer = Checkpointer(run_dir / "checkpoints")
    method.optimizers()  # created before restore so their states can be loaded
    check_training_memory(method, accelerator.device)
    start = restore(method, Checkpointer.load(resume_from), str(resume_from)) if resume_from else 0
    if resume_from:
        log.info("%s: resumed from %s at step %d", method.name, resume_from, start)
    if plan.channels_last:
        use_channels_last(method)
    if plan.compile and method.not_compilable:
        log.warning("%s trains without torch.compile: %s", method.name, method.not_compilable)
    nets, optimizers = prepare(method, accelerator, compile=plan.compile and not method.not_compilable)
    method.train()
    size = method.config.image_size
    grid_a = data.split("test", "A").load_all(size, plan.samples_per_domain)
    grid_b = data.split("test", "B").load_all(size, plan.samples_per_domain)
    augment = Augment(method.config.load_size, method.config.image_size, method.config.flip)
    batches = training_batches(
        data.split("train", "A"),
        data.split("train", "B"),
        augment,
        plan.batch_size,
        plan.seed,
        start,
        plan.total_steps,
        workers=plan.workers,
        rank=accelerator.process_index,
        world=accelerator.num_processes,
        device=accelerator.device,
        memory_format=torch.channels_last if plan.channels_last else torch.contiguous_format,
    )
    result = TrainResult(steps=start, resumed_from=start, seconds=0.0)

    def write_samples(done: int) -> Path:
        path = run_dir / "samples" / f"step_{done:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        # A forked RNG: a translation that draws from the global generator must not shift the training's
        # random stream, or a run with other sample or checkpoint steps (a resumed one) would diverge.
        cuda = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            grid = sample_grid(method, grid_a, grid_b, accelerator.device)
        grid.save(path)
        if on_sample is not None:
            on_sample(done, path)
        return path

    started = time.perf_counter()
    progress = tqdm(
        total=plan.total_steps,
        initial=start,
        desc=f"train {method.name}",
        unit="step",
        disable=not accelerator.is_main_process,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    for step, batch in enumerate(batches, start):
        set_learning_rates(method, step, plan.total_steps)
        losses = train_step(
            method, batch, step, plan.seed, accelerator.process_index, nets, optimizers, accelerator.backward
        )
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            last = checkpointer.latest()
            raise TrainingDiverged(
                f"{method.name}: non-finite loss at step {step}: {bad}. "
                f"Last checkpoint: {last or 'none'}. Try another --seed or a smaller learning rate."
            )
        done = step + 1
        result.steps, result.last_losses = done, losses
        if on_losses is not None:
            on_losses(step, losses)
        progress.update(1)
        if step % plan.log_every == 0:
            progress.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:4]}, refresh=False)
        if accelerator.is_main_process and (done % plan.sample_every == 0 or done == plan.total_steps):
            result.sample_grid = write_samples(done)
        if done % plan.checkpoint_every == 0 or done == plan.total_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                result.checkpoint = checkpointer.save(checkpoint_payload(method, done, fingerprint))
    progress.close()
    result.seconds = time.perf_counter() - started
    if result.checkpoint is None:  # nothing left to train: the resumed checkpoint is the final one
        result.checkpoint = resume_from
    if result.sample_grid is None and accelerator.is_main_process:
        result.sample_grid = write_samples(result.steps)
    method.eval()
    return result


HARNESS_OR_RELEASED = (
    "a checkpoint `bench run` wrote (step_*.pt) or the method's released weights (.pth/.pt, or the .safetensors "
    "file `bench convert` wrote)"
)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def harness_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The payload of a checkpoint `bench run` wrote, memory-mapped; None for any other file that loads safely
    (an official one) and for a folder.

    Raises BenchError when `path` does not exist, and WeightsError in one line for a file that does not load
    with `torch.load(weights_only=True)` or holds no dict (no released checkpoint does either).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise BenchError(f"checkpoint {path} does not exist")
    if not path.is_file() or path.suffix == ".safetensors":
        return None  # a folder of official files (Council GAN), or a converted file bench.official reads
    payload = load_safely(path, "a checkpoint that loads safely", HARNESS_OR_RELEASED, mmap=True)
    if payload.get("format") in SCORABLE_FORMATS and "networks" in payload:
        return payload
    return None


@dataclass(frozen=True)
class LoadedCheckpoint:
    kind: str  # "harness" or "official"
    directions: tuple[str, ...]  # the directions whose translating networks the file filled


def load_checkpoint(method: Method, path: str) -> LoadedCheckpoint:
    """Load a harness checkpoint's networks, or the authors' released file through `bench.official`.

    A released file may hold one direction only (CycleGAN's `latest_net_G_A.pth`): `directions` says which
    directions can be scored. Every failure is a BenchError that says what to check.
    """
    payload = harness_checkpoint(path)
    if payload is not None:
        if payload.get("method") != method.name:
            raise BenchError(f"{path} is a checkpoint of {payload.get('method')!r}, not of {method.name!r}")
        networks = payload["networks"]
        for attr in method.networks:  # what differs, named, before torch's multi-line size dump
            state = networks.get(attr) if isinstance(networks, dict) else None
            mismatch = (
                state_mismatch(getattr(method, attr), state) if isinstance(state, dict) else "no state dict for it"
            )
            if mismatch:
                raise BenchError(
                    f"{path} does not fit {method.name} as configured ({attr}: {mismatch}); score it with the "
                    "configuration it was trained with (leave out --preset), or supply a checkpoint of this one"
                )
        try:
            method.load_network_state(networks)
        except (KeyError, RuntimeError, ValueError) as error:
            raise BenchError(f"{path} does not fit {method.name} as configured: {_first_line(error)}") from error
        return LoadedCheckpoint("harness", tuple(method.directions))
    try:
        filled = load_official(method, path, supply=f"a checkpoint `bench run` wrote or {released_files(method)}")
    except WeightsError:  # already one line that says what the file is not and what to supply
        raise
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        raise BenchError(
            f"{method.name} could not load {path} as its released checkpoint: {_first_line(error)} "
            "(released checkpoints need the preset they were trained with, usually --preset paper)"
        ) from error
    directions = tuple(d for d in method.directions if set(method.translation_networks(d)) <= set(filled))
    if not directions:
        raise BenchError(f"{path} fills {', '.join(filled)} of {method.name}, none of which translates")
    return LoadedCheckpoint("official", directions)
