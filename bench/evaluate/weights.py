"""Finding, verifying and (for offline demos) standing in for the InceptionV3 weights of FID and KID.

Lookup order: the `--inception-weights` flag, then $BENCH_INCEPTION_WEIGHTS, then the torch hub cache
where torch-fidelity itself downloads them. A file is *standard* only if its sha256 starts with the
8 hex digits the published file name carries (the torch hub convention). Every file is opened with
`torch.load(weights_only=True)` and checked against the architecture before torch-fidelity, which loads
with `weights_only=False`, ever sees it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from bench.errors import WeightsError

log = logging.getLogger(__name__)

ENV_VAR = "BENCH_INCEPTION_WEIGHTS"
CACHE_ENV_VAR = "BENCH_CACHE"
INCEPTION_FILENAME = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth
INCEPTION_SHA256_PREFIX = INCEPTION_FILENAME.rsplit("-", 1)[-1].split(".")[0]  # 6726825d
STANDARD_ID = "inception-v3-compat"  # torch-fidelity's TF-FID InceptionV3, pool3 (2048-d)
STANDIN_SEED = 0
STANDIN_FEATURE_MEAN = 0.3  # order of magnitude of the published network's pool features
STANDIN_VERSION = 4  # bump when write_standin changes, so an old file is not reused under the new id
NON_STANDARD = "non-standard extractor"


@dataclass(frozen=True)
class ExtractorWeights:
    extractor: str  # id shown next to every number
    path: Path
    sha256: str
    standard: bool
    source: str  # where the file was found

    @property
    def label(self) -> str:
        return self.extractor if self.standard else f"{self.extractor} ({NON_STANDARD})"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "i2i-bench")


def hub_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


class _InceptionSkeleton(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 with its layers but without loading any file."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[override]
        return None


def inception_skeleton() -> nn.Module:
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pt"
        torch.save({}, empty)
        return _InceptionSkeleton("skeleton", ["2048"], feature_extractor_weights_path=str(empty))


def validate_inception_file(path: Path) -> None:
    """Raise WeightsError unless `path` is a plain tensor state_dict with InceptionV3's keys and shapes."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code in it, a truncated file, not a torch file at all
        raise WeightsError(f"{path} is not a plain PyTorch state_dict ({type(error).__name__}: {error})") from error
    expected = {k: tuple(v.shape) for k, v in inception_skeleton().state_dict().items()}
    if not isinstance(state, dict) or {k: tuple(v.shape) for k, v in state.items()} != expected:
        raise WeightsError(f"{path} does not hold torch-fidelity InceptionV3 weights (keys or shapes differ).")


def write_standin(path: Path, seed: int = STANDIN_SEED) -> None:
    """InceptionV3 with fixed-seed random weights whose features still vary from image to image.

    Convolutions get He-normal weights; each batch norm then takes the statistics of a fixed-seed batch
    of synthetic faces, so every layer is normalised and the pooled features keep the differences
    between images (uncalibrated random weights give near-constant features, hence FID ~0).
    """
    model = inception_skeleton()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.momentum = None  # running stats = plain average over the calibration batch
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / module.in_features**0.5)
                module.bias.zero_()
        model.train()
        calibration = _calibration_images(48, generator)
        model(calibration)
        model.eval()
        # Scale the last block's output convolutions (ReLU is positively homogeneous) so that pooled
        # features of the calibration batch average STANDIN_FEATURE_MEAN: unscaled (~3), the cubic KID
        # kernel is dominated by feature magnitude.
        (features,) = model(calibration)
        factor = STANDIN_FEATURE_MEAN / float(features.mean())
        block = model.Mixed_7c
        for branch in (
            block.branch1x1,
            block.branch3x3_2a,
            block.branch3x3_2b,
            block.branch3x3dbl_3a,
            block.branch3x3dbl_3b,
            block.branch_pool,
        ):
            branch.bn.weight.mul_(factor)
            branch.bn.bias.mul_(factor)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def _calibration_images(n: int, generator: torch.Generator, size: int = 64) -> torch.Tensor:
    """(n, 3, size, size) uint8: rendered toyfaces of both domains, the stand-in's only use being demos."""
    from bench.data.toyfaces import render_face, sample_factors

    rng = np.random.default_rng(int(torch.randint(0, 2**31, (), generator=generator)))
    faces = [np.asarray(render_face(sample_factors(rng), "AB"[i % 2], size, noise_seed=i)) for i in range(n)]
    return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous()


MISSING_HELP = """\
No standard InceptionV3 weights for FID/KID were found. Looked at:
{looked}
Download {url}
(sha256 starting {prefix}) on a machine with internet access, then do one of:
  - copy it to {hub}
  - pass --inception-weights /path/to/{filename}
  - export {env}=/path/to/{filename}
Or add --allow-standin to evaluate with a stand-in extractor: its numbers are labelled
"{non_standard}" and cannot be compared with published ones."""


def resolve_inception(flag_path: str | None, allow_standin: bool) -> ExtractorWeights:
    """The weights FID and KID will use, or WeightsError with instructions when none may be used."""
    candidates = [("--inception-weights", flag_path), (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None)]
    looked = []
    for source, value in candidates:
        if value is None:
            looked.append(f"  {source}: not given")
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise WeightsError(f"{source} points to {path}, which is not a file.")
        return _checked(path, source, allow_standin)
    hub = hub_cache_path()
    if hub.is_file():
        return _checked(hub, "torch hub cache", allow_standin)
    looked.append(f"  torch hub cache: {hub} (absent)")
    if not allow_standin:
        raise WeightsError(
            MISSING_HELP.format(
                looked="\n".join(looked),
                url=URL_INCEPTION_V3,
                prefix=INCEPTION_SHA256_PREFIX,
                hub=hub,
                filename=INCEPTION_FILENAME,
                env=ENV_VAR,
                non_standard=NON_STANDARD,
            )
        )
    standin_id = f"inception-v3-standin-v{STANDIN_VERSION}-seed{STANDIN_SEED}"
    path = cache_dir() / f"{standin_id}.pt"
    if not path.is_file():
        log.info("writing the stand-in InceptionV3 (random weights, seed %d) to %s", STANDIN_SEED, path)
        write_standin(path)
    validate_inception_file(path)
    log.warning("FID/KID use a stand-in extractor with random weights: numbers are labelled '%s'", NON_STANDARD)
    return ExtractorWeights(standin_id, path, sha256_file(path), False, "stand-in")


def _checked(path: Path, source: str, allow_standin: bool) -> ExtractorWeights:
    validate_inception_file(path)
    digest = sha256_file(path)
    if digest.startswith(INCEPTION_SHA256_PREFIX):
        return ExtractorWeights(STANDARD_ID, path, digest, True, source)
    if not allow_standin:
        raise WeightsError(
            f"{path} (from {source}) has sha256 {digest[:16]}..., not the published {INCEPTION_SHA256_PREFIX}...: "
            f"these are not the standard FID weights. Supply {INCEPTION_FILENAME} from {URL_INCEPTION_V3}, "
            f"or add --allow-standin to use this file with every number labelled '{NON_STANDARD}'."
        )
    log.warning("%s from %s is not the published Inception file; numbers are labelled '%s'", path, source, NON_STANDARD)
    return ExtractorWeights(f"inception-v3-user-{digest[:8]}", path, digest, False, source)
