"""`bench run`: for each method, train (or resume), translate the test set, evaluate, track; then report."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed

from bench.accel import accelerator_for
from bench.config import RunConfig
from bench.data.folder import DatasetSpec, TwoDomainDataset
from bench.errors import BenchError, ConfigError
from bench.evaluate.cache import FeatureCache
from bench.evaluate.evaluator import Evaluator, metric_extractors
from bench.evaluate.metrics import Metric
from bench.evaluate.shards import Shards
from bench.official import read_state
from bench.owner import claim_report_folder
from bench.protocols import protocol
from bench.registry import DATASETS, METHODS, METRICS
from bench.report import build_report
from bench.results import RunResult, thin_curve
from bench.track import (
    LossLog,
    NullTracker,
    TrackedRun,
    Tracker,
    describe,
    method_params,
    open_tracker,
    row_metrics,
    run_tags,
)
from bench.train import (
    CHECKPOINT_FORMAT,
    Checkpointer,
    TrainPlan,
    default_total_steps,
    harness_checkpoint,
    load_checkpoint,
    sample_grid,
    train,
)
from bench.weights import ResolvedWeights, resolve_weights
from methods.base import Method

log = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "torch-fidelity", "lpips", "accelerate", "mlflow", "numpy", "pillow", "pandas")


@dataclass(frozen=True)
class Outcome:
    result: RunResult
    report: Path | None
    tracking_uri: str

    @property
    def ok(self) -> bool:
        return all(info["status"] == "ok" for info in self.result.methods.values())


def new_run_id(dataset: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{dataset}-{secrets.token_hex(2)}"


def environment(accelerator: Accelerator) -> dict[str, Any]:
    """What a reader needs to reproduce the numbers: versions, commit, hardware."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        git = f"{commit}{' (uncommitted changes)' if dirty else ''}" if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        git = "unknown"
    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "i2i-bench git commit": git,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": f"{cpu} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)",
        "gpus": ", ".join(gpus) or "none",
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        **{f"version {k}": v for k, v in versions.items()},
    }


def find_resumable(work_dir: Path, method: str, fingerprint: dict[str, Any]) -> Path | None:
    """The newest checkpoint of an earlier run of `method` with exactly this configuration."""
    current = json.loads(json.dumps(fingerprint))  # as the sidecar holds it: configs' tuples become lists
    candidates = sorted(work_dir.glob(f"*/{method}/fingerprint.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for sidecar in candidates:
        latest = Checkpointer(sidecar.parent / "checkpoints").latest_readable()
        if latest is None:
            continue
        previous = json.loads(sidecar.read_text())
        if previous == current:
            return latest
        differs = sorted(k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k))
        log.info("%s: not resuming %s, its configuration differs in %s", method, latest, ", ".join(differs))
    return None


def _resolve_methods(cfg: RunConfig, dataset_default: str) -> list[tuple[str, type[Method], str, Any]]:
    """Look up every method, its preset and config before any data is touched, so typos fail fast.

    A method scored from a harness checkpoint takes the configuration the checkpoint was trained with.
    """
    names = list(cfg.methods) or list(cfg.checkpoints) or METHODS.names()
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--methods lists {', '.join(repeated)} more than once")
    resolved = []
    for name in names:
        cls = METHODS.get(name)
        trained = harness_checkpoint(cfg.checkpoints[name]) if name in cfg.checkpoints else None
        if trained is not None and not cfg.preset and trained.get("method") == name:  # else load_checkpoint says so
            values = json.loads(trained["fingerprint"])["config"]
            source = f"the configuration of checkpoint {cfg.checkpoints[name]}"
            resolved.append(
                (name, cls, "checkpoint", _method_config(name, source, partial(cls.Config.from_dict, values)))
            )
            continue
        preset = cfg.preset or cls.Config.default_preset(dataset_default)
        overrides = {"batch_size": cfg.train.batch_size} if cfg.train.batch_size else {}
        config = _method_config(name, f"preset {preset!r}", partial(cls.Config.preset, preset, **overrides))
        resolved.append((name, cls, preset, config))
    return resolved


def _method_config(name: str, source: str, build: Callable[[], Any]) -> Any:
    """`build()`, a method's config: methods raise ValueError for a bad one, which the CLI reports as ConfigError."""
    try:
        return build()
    except ValueError as error:
        raise ConfigError(f"{name}: {source}: {error}") from error


@dataclass
class _Session:
    """What every method of one `bench run` shares."""

    cfg: RunConfig
    data: TwoDomainDataset
    accelerator: Accelerator
    weights: ResolvedWeights
    pretrained: dict[str, dict[str, ResolvedWeights]]  # per method: networks its losses use
    evaluator: Evaluator
    tracker: Tracker
    result: RunResult

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.reports_dir) / self.result.run_id


def run(cfg: RunConfig, command: str = "bench run", tracker: Tracker | None = None) -> Outcome:
    """`bench run` (train, then score) and `bench eval --checkpoint` (score `cfg.checkpoints` without training)."""
    spec: DatasetSpec = DATASETS.get(cfg.data.dataset)
    plan_methods = _resolve_methods(cfg, spec.default_preset)
    metrics = selected_metrics(cfg)
    accelerator = accelerator_for(cfg)
    with accelerator.main_process_first():
        data: TwoDomainDataset = spec.open(Path(cfg.data.root) if cfg.data.root else None, cfg.data.options)
    allow_standin = spec.synthetic if cfg.weights.allow_standin is None else cfg.weights.allow_standin
    # Every weights file is found and checked before anything trains, so a missing one fails fast.
    session = _open_session(cfg, data, metrics, allow_standin, accelerator, tracker, command)
    session.pretrained = {  # networks a method's losses use; a method scored from a checkpoint trains nothing
        name: {
            network: resolve_weights(network, cfg.weights.path(network), allow_standin and standin_ok)
            for network, standin_ok in cls.pretrained_networks(method_cfg).items()
        }
        if name not in cfg.checkpoints
        else {}
        for name, cls, _, method_cfg in plan_methods
    }
    tracked_runs = []
    seeds = cfg.train.seeds or (cfg.seed,)
    for name, cls, preset, method_cfg in plan_methods:
        for seed in seeds:  # several training seeds: the report shows mean and std across them
            seeded = (
                dataclasses.replace(session, cfg=dataclasses.replace(cfg, seed=seed)) if cfg.train.seeds else session
            )
            key = f"{name}-seed{seed}" if len(seeds) > 1 else name
            tracked = _run_method(seeded, name, cls, preset, method_cfg, key)
            if tracked is not None:  # None: the method failed before its tracked run started
                tracked_runs.append(tracked)
            if session.main:
                session.result.save(session.out_dir)  # after every method, so a crash keeps what finished
    return _finish(session, tracked_runs)


def _open_session(
    cfg: RunConfig,
    data: TwoDomainDataset,
    metrics: list[Metric],
    allow_standin: bool,
    accelerator: Accelerator,
    tracker: Tracker | None,
    command: str,
    fake_preprocessing: str | None = None,
) -> _Session:
    """Resolve the extractors' weights (a missing file stops here, before any training) and start the results."""
    network = protocol(cfg.eval.protocol).extractor  # the set metrics' network: the protocol decides
    weights = resolve_weights(network, cfg.weights.path(network), allow_standin)
    extractors = metric_extractors(metrics, weights, cfg.weights.paths(), allow_standin, accelerator.device)
    if tracker is None:
        # one experiment per dataset; a server that does not answer is not waited for (bench track push)
        tracker = NullTracker()
        if cfg.track and accelerator.is_main_process:
            tracker = open_tracker(data.name, cfg.experiment)
    run_id = broadcast_object_list([new_run_id(data.name)])[0]  # every process writes under one id
    if accelerator.is_main_process:  # names report folders of runs that died; records this run's owner process
        claim_report_folder(Path(cfg.reports_dir), run_id)
    return _Session(
        cfg=cfg,
        data=data,
        accelerator=accelerator,
        weights=weights,
        pretrained={},
        evaluator=Evaluator(
            data,
            metrics,
            cfg.eval,  # the tree's eval section is the metrics' EvalOptions (with the run's seed)
            extractors,
            cache=FeatureCache() if cfg.eval.feature_cache else None,
            batch_size=cfg.eval.batch_size,
            limit=cfg.eval.limit,
            dump_dir=Path(cfg.reports_dir) / run_id / "images" if cfg.eval.dump_images else None,
            fake_preprocessing=fake_preprocessing,
            shards=Shards.of(accelerator),
        ),
        tracker=tracker,
        result=RunResult(
            run_id=run_id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            command=command,
            config=_recorded_config(cfg, allow_standin, metrics),
            environment=environment(accelerator),
            dataset=data.summary(),
        ),
    )


def _finish(session: _Session, tracked_runs: list[TrackedRun], identity: bool = True) -> Outcome:
    """Reference rows (identity, noise floor), results document, report, and the artifacts of every tracked run
    (main process). `identity` False where the source side is not a real domain (scored translation folders)."""
    report = None
    out_dir = session.out_dir
    if session.main:
        evaluated = sorted(
            {d for info in session.result.methods.values() if info["status"] == "ok" for d in info["directions"]}
        )
        if identity:
            session.result.rows += session.evaluator.identity_rows(session.result.run_id, evaluated)
        session.result.rows += session.evaluator.noise_floor(session.result.run_id, evaluated)
        session.result.save(out_dir)
        report = build_report(session.result, out_dir)
        for tracked in tracked_runs:  # results.json, results.csv, index.html and the run's samples/<key>/
            tracked.log_report(out_dir)
    return Outcome(session.result, report, describe(session.tracker, out_dir))


def selected_metrics(cfg: RunConfig) -> list[Metric]:
    """The metrics the user named, or every registered metric marked default."""
    names = cfg.eval.metrics or tuple(name for name in METRICS.names() if METRICS.get(name).default)
    return [METRICS.get(name) for name in names]


def _recorded_config(cfg: RunConfig, allow_standin: bool, metrics: list[Metric]) -> dict[str, Any]:
    """The tree as the results document keeps it, with the defaults it left open filled in."""
    config = cfg.to_dict()
    config["weights"]["allow_standin"] = allow_standin
    config["eval"]["metrics"] = [m.name for m in metrics]
    return config


def _run_method(
    s: _Session, name: str, cls: type[Method], preset: str, method_cfg: Any, key: str | None = None
) -> TrackedRun | None:
    """Train (or resume) one method, evaluate it and record everything in `s.result` under `key`.

    A failure of any kind is recorded in the method's row (status "failed", the error) and logged, and
    returns normally, so that the methods after it still run; the run's exit code says one failed.
    """
    key = key or name
    cfg, data, accelerator = s.cfg, s.data, s.accelerator
    run_id = s.result.run_id
    info: dict[str, Any] = {
        "preset": preset,
        "config": method_cfg.to_dict(),
        "parameters": None,
        "pretrained": {},
        "directions": [],
        "status": "running",
        "error": None,
        "train": None,
        "sample_grid": None,
        "images": {},
        "mlflow_run_id": None,
    }
    s.result.methods[key] = info
    tracked: TrackedRun | None = None
    try:
        set_seed(cfg.seed)  # weight initialisation draws from the global generators
        method = cls(method_cfg)
        for network, resolved in s.pretrained[name].items():
            method.attach_pretrained(network, read_state(resolved.path) if resolved.path else None)
        pretrained = {
            n: {"label": r.label, "sha256": r.sha256, "standard": r.standard} for n, r in s.pretrained[name].items()
        }
        info |= {"parameters": method.parameter_counts(), "pretrained": pretrained}
        info["directions"] = list(method.directions)
        total = cfg.train.steps or default_total_steps(method, data, method_cfg.batch_size)
        fingerprint = {
            "method": name,
            "config": method_cfg.to_dict(),
            "dataset": data.name,
            "data_root": str(data.root.resolve()),
            "counts": data.summary()["counts"],
            "seed": cfg.seed,
            "total_steps": total,
            "processes": accelerator.num_processes,
            "mixed_precision": cfg.train.mixed_precision,  # a bf16 run's state must not continue in fp32
            "checkpoint_format": CHECKPOINT_FORMAT,  # another format drew other random numbers
        }
        resume_from = find_resumable(Path(cfg.work_dir), key, fingerprint) if cfg.train.resume else None
        if cfg.train.resume and resume_from is None:
            log.info("%s: no checkpoint of this configuration to resume; starting at step 0", name)
        run_dir = Path(cfg.work_dir) / run_id / key
        if s.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if name not in cfg.checkpoints:  # what --resume matches; a scored checkpoint is not resumable
                (run_dir / "fingerprint.json").write_text(json.dumps(fingerprint, indent=1))
        tags = run_tags(  # kept in the document, so that `bench track push` logs the same run later
            s.result,
            key,
            **{
                "method": name,
                "dataset": data.name,
                "preset": preset,
                "seed": str(cfg.seed),
                "extractor": s.weights.label,
                "standard": str(s.weights.standard).lower(),
                "resumed_from": str(resume_from or ""),
                "scored_checkpoint": cfg.checkpoints.get(name, ""),
            },
        )
        run_name = f"{name}-{data.name}-seed{cfg.seed}"
        info["tracking"] = {"name": run_name, "seed": cfg.seed, "total_steps": total, "tags": tags}
        tracked = s.tracker.start_run(run_name, params=method_params(s.result, key), tags=tags)
        info["mlflow_run_id"] = tracked.run_id or None
        if name in cfg.checkpoints:
            _load_for_scoring(s, method, cfg.checkpoints[name], info, run_dir)
            if info["sample_grid"]:
                tracked.log_artifact(Path(info["sample_grid"]), "samples")
        else:
            plan = TrainPlan(
                total,
                method_cfg.batch_size,
                cfg.seed,
                cfg.train.checkpoint_every,
                cfg.train.sample_every,
                cfg.train.log_every,
                cfg.data.workers,
                channels_last=cfg.train.channels_last,
                compile=cfg.train.compile,
            )
            loss_log = LossLog(tracked, cfg.train.log_every)
            _train_method(s, method, plan, run_dir, fingerprint, resume_from, loss_log, tracked, info)
        accelerator.wait_for_everyone()
        # every process evaluates its share of the batches (s.evaluator.shards); the main one writes and records
        started = time.perf_counter()
        samples = s.out_dir / "samples" / key  # the report's comparison images, next to it
        rows = s.evaluator.evaluate(method, run_id, preset, cfg.seed, tuple(info["directions"]), samples)
        if s.main:
            info["images"] = {p.stem: str(p.relative_to(s.out_dir)) for p in sorted(samples.glob("*.png"))}
            info["eval_seconds"] = time.perf_counter() - started
            s.result.rows += rows
            tracked.log_metrics(row_metrics(rows))  # values and interval bounds; stand-ins get "_nonstandard"
        info["status"] = "ok"
    except BenchError as error:  # the user can fix it, and the message says how: no traceback
        info["status"], info["error"] = "failed", str(error)
        log.error("%s: %s", key, error)
    except Exception as error:  # a bug or a diverged method must not cost the others their results
        info["status"], info["error"] = "failed", f"{type(error).__name__}: {error}"
        log.exception("%s failed; the next method runs", key)
    finally:
        if tracked is not None:
            tracked.finish(failed=info["status"] != "ok")
    return tracked


def _load_for_scoring(s: _Session, method: Method, path: str, info: dict[str, Any], run_dir: Path) -> None:
    """`bench eval`: the checkpoint's weights instead of training, and a sample grid of what it translates."""
    loaded = load_checkpoint(method, path)
    method.to(s.accelerator.device).eval()
    info["checkpoint"] = {"path": str(Path(path).expanduser().resolve()), "kind": loaded.kind}
    info["directions"] = list(loaded.directions)
    unfilled = [d for d in method.directions if d not in loaded.directions]
    if unfilled:  # scoring them would score randomly initialised networks
        only = ", ".join(loaded.directions)
        log.warning("%s: %s holds no weights for %s; scoring %s only", method.name, path, ", ".join(unfilled), only)
    log.info("%s: scoring %s checkpoint %s", method.name, loaded.kind, path)
    if s.main:
        size = method.config.image_size
        grid = sample_grid(
            method,
            s.data.split("test", "A").load_all(size, 4),
            s.data.split("test", "B").load_all(size, 4),
            s.accelerator.device,
            loaded.directions,
        )
        grid_path = run_dir / "samples" / "checkpoint.png"
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(grid_path)
        info["sample_grid"] = str(grid_path)


def _train_method(
    s: _Session,
    method: Method,
    plan: TrainPlan,
    run_dir: Path,
    fingerprint: dict[str, Any],
    resume_from: Path | None,
    loss_log: LossLog,
    tracked: TrackedRun,
    info: dict[str, Any],
) -> None:
    """`bench run`: train (or resume) `method` and record the outcome in `info`."""
    trained = train(
        method,
        s.data,
        plan,
        run_dir,
        s.accelerator,
        fingerprint,
        resume_from,
        on_losses=loss_log,
        on_sample=lambda step, path: tracked.log_artifact(path, "samples"),
    )
    loss_log.flush(trained.steps - 1)
    info["train"] = {
        "steps": trained.steps,
        "resumed_from": trained.resumed_from,
        "seconds": trained.seconds,
        "checkpoint": str(trained.checkpoint),
        "last_losses": trained.last_losses,
        "loss_curve": thin_curve(loss_log.curve()),  # the steps since the resume only, when resumed
    }
    info["sample_grid"] = str(trained.sample_grid) if trained.sample_grid else None
