"""`bench eval --translations DIR --reference DIR`: score images some other program translated.

The folder goes through the evaluator as the outputs of a translator that returns its inputs, so the
numbers, intervals, noise floor, results document, report and MLflow run are those of `bench run`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from bench.accel import accelerator_for
from bench.config import RunConfig
from bench.data.folder import TwoDomainDataset
from bench.data.images import ImageSet, read_rgb
from bench.errors import BenchError, ConfigError, DataError
from bench.evaluate.translator import WorkingSize
from bench.registry import METRICS
from bench.run import Outcome, _finish, _open_session
from bench.track import Tracker, method_params, row_metrics, run_tags

log = logging.getLogger(__name__)

SET_METRICS = ("fid", "kid")  # what `bench eval --translations` computes unless --metrics says otherwise


class ScoredImages:
    """A folder of someone else's translations, presented as a translator whose outputs are those images.

    `translate` returns its input: the evaluator's "test inputs" of this translator are the translated
    images themselves, so they are scored exactly as loaded (uint8 -> [-1, 1] -> uint8 is lossless).
    """

    multimodal = False
    directions = ("a2b",)

    def __init__(self, name: str, image_size: int) -> None:
        self.name = name
        self.config = WorkingSize(image_size)

    def translate(self, x: torch.Tensor, direction: str = "a2b", **_: Any) -> torch.Tensor:
        return x

    def sample_style(self, n: int, direction: str, generator: torch.Generator | None = None) -> None:
        return None

    def parameters(self) -> Any:
        return iter(())

    def eval(self) -> ScoredImages:
        return self


def translations_dataset(translations: Path, reference: Path, image_size: int | None) -> TwoDomainDataset:
    """`translations` as the A side and `reference` as the B side of a dataset scored a2b.

    The evaluation size defaults to the width of the first reference image; both sets are resized to it
    the same way (Pillow bicubic) when their files have another size.
    """
    sets = {}
    for label, folder in (("translations", translations), ("reference", reference)):
        if not folder.is_dir():
            raise DataError(f"--{label} {folder} is not a folder of images")
        images = ImageSet.scan(folder)
        if len(images) < 2:
            raise DataError(
                f"--{label} {folder} has {len(images)} readable image(s) ({len(images.skipped)} unreadable); "
                "set metrics need at least 2 (jpg, jpeg, png or webp)"
            )
        sets[label] = images
    size = image_size or read_rgb(sets["reference"].paths[0]).width
    named = {"testA": sets["translations"], "trainA": sets["translations"]}
    named |= {"testB": sets["reference"], "trainB": sets["reference"]}
    return TwoDomainDataset("translations", reference, size, named)


def score_translations(
    cfg: RunConfig,
    translations: Path,
    reference: Path,
    name: str | None = None,
    command: str = "bench eval",
    tracker: Tracker | None = None,
) -> Outcome:
    """`bench eval --translations DIR --reference DIR`: set metrics of finished translations against real images."""
    metrics = [METRICS.get(m) for m in (cfg.eval.metrics or SET_METRICS)]
    per_input = [m.name for m in metrics if not m.set_metric]
    if per_input:
        raise ConfigError(
            f"{', '.join(per_input)} need(s) a translator to run (styles, augmented inputs, timing); a folder of "
            f"translations supports the set metrics only: {', '.join(n for n in METRICS.names() if METRICS.get(n).set_metric)}"
        )
    data = translations_dataset(translations, reference, cfg.data.options.get("image_size"))
    accelerator = accelerator_for(cfg)
    allow_standin = bool(cfg.weights.allow_standin)  # real images: stand-ins only when asked for
    fake = f"fake: files of {translations}, Pillow bicubic to {data.image_size}px, uint8"
    session = _open_session(cfg, data, metrics, allow_standin, accelerator, tracker, command, fake)
    label = name or translations.name
    scored = ScoredImages(label, data.image_size)
    info: dict[str, Any] = {
        "preset": "translations",
        "config": {"translations": str(translations.resolve()), "reference": str(reference.resolve())},
        "parameters": {},
        "pretrained": {},
        "directions": ["a2b"],
        "status": "running",
        "error": None,
        "train": None,
        "sample_grid": None,
        "images": {},
        "mlflow_run_id": None,
    }
    session.result.methods[label] = info
    # tagged and named as bench run's MLflow runs; kept in the document, so that `bench track push` logs the same
    tags = run_tags(
        session.result,
        label,
        method=label,
        dataset=data.name,
        preset="translations",
        seed=str(cfg.seed),
        extractor=session.weights.label,
        standard=str(session.weights.standard).lower(),
    )
    run_name = f"{label}-{data.name}"
    info["tracking"] = {
        "name": run_name,
        "seed": cfg.seed,
        "translations": str(translations),
        "reference": str(reference),
        "tags": tags,
    }
    tracked = session.tracker.start_run(run_name, params=method_params(session.result, label), tags=tags)
    info["mlflow_run_id"] = tracked.run_id or None
    try:
        # every process scores its share of the batches (the evaluator's shards); the main one records
        samples = session.out_dir / "samples" / label
        rows = session.evaluator.evaluate(scored, session.result.run_id, "translations", cfg.seed, None, samples)
        if session.main:
            info["images"] = {p.stem: str(p.relative_to(session.out_dir)) for p in sorted(samples.glob("*.png"))}
            session.result.rows += rows
            tracked.log_metrics(row_metrics(rows))  # <metric>_a2b[_nonstandard] and its interval bounds
        info["status"] = "ok"
    except BenchError as error:  # the message says how to fix it: no traceback
        info["status"], info["error"] = "failed", str(error)
        log.error("%s", error)
    except Exception as error:  # recorded like a failed method of bench run: the report is still written
        info["status"], info["error"] = "failed", f"{type(error).__name__}: {error}"
        log.exception("%s failed", label)
    finally:
        tracked.finish(failed=info["status"] != "ok")
    return _finish(session, [tracked], identity=False)  # the A side holds the translations, not source images
