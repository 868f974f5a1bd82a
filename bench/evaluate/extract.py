"""The only module that runs feature networks over images: Inception (FID, KID), LPIPS (diversity,
equivariance), VGG16 channel statistics (style consistency) and the optional DINOv2 / CLIP backbones, and
the calibration of the Inception stand-in (`write_inception_standin`, which bench.weights calls).

Every extractor carries `id` (shown next to each number, "(non-standard extractor)" appended when its
weights are not the published ones), `weights_sha256`, `standard` and `preprocessing`, so a row of the
results table says exactly what produced it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from bench.errors import WeightsError
from bench.inception_import import tensor_sha256
from bench.weights import (
    CATALOGUE,
    NON_STANDARD,
    STANDIN_SEED,
    ResolvedWeights,
    inception_skeleton,
    sha256_file,
    validate_weights_file,
)

# torch-fidelity resizes uint8 inputs to 299x299 with TF1-compatible bilinear interpolation inside the network.
INCEPTION_PREPROCESSING = "uint8 -> torch-fidelity TF1 bilinear resize to 299"
STANDARD_NAME = "inception-v3-compat"
RANDOM_TRUNK_SEED = 0  # stand-in trunks (no published file) are this seed's initialisation in every run


def _check_uint8(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}")


def _to_unit_range(images: Tensor, device: torch.device) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range LPIPS and the methods use."""
    return images.to(device, torch.float32) / 127.5 - 1.0


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Initialise random trunks reproducibly without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class InceptionFeatures:
    """2048-d pool features of torch-fidelity's InceptionV3 for uint8 image batches."""

    def __init__(self, weights: ResolvedWeights, device: torch.device | str = "cpu") -> None:
        if weights.name != "inception" or weights.path is None:
            raise ValueError(f"InceptionFeatures needs an Inception weights file, got {weights}")
        validate_weights_file(CATALOGUE["inception"], weights.path)  # torch-fidelity unpickles without weights_only
        self.weights = weights
        self.device = torch.device(device)
        model = FeatureExtractorInceptionV3(STANDARD_NAME, ["2048"], feature_extractor_weights_path=str(weights.path))
        # channels_last doubles CPU throughput; features agree with the default layout to float32 rounding.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.calls = 0  # images passed through the network (the cache test counts them)

    id = property(lambda self: self.weights.extractor)
    label = property(lambda self: self.weights.label)
    weights_sha256 = property(lambda self: self.weights.sha256)
    standard = property(lambda self: self.weights.standard)
    preprocessing = INCEPTION_PREPROCESSING

    @torch.inference_mode()
    def __call__(self, images: Tensor, batch_size: int = 50) -> Tensor:
        """(N, 3, H, W) uint8 -> (N, 2048) float64 features."""
        _check_uint8(images)
        out = []
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device).contiguous(memory_format=torch.channels_last)
            (features,) = self.model(chunk)
            out.append(features.to("cpu", torch.float64))
            self.calls += len(chunk)
        return torch.cat(out) if out else torch.empty(0, 2048, dtype=torch.float64)


class TorchvisionInceptionFeatures:
    """2048-d average-pool features of torchvision's ImageNet Inception-v3, as StarGAN v2's metrics/fid.py
    takes them: images resized to 256 then 299 (bilinear), ImageNet normalisation, no input transform."""

    preprocessing = "uint8 -> bilinear resize to 256, then 299; ImageNet mean/std (StarGAN v2 metrics/fid.py)"

    def __init__(self, weights: ResolvedWeights, device: torch.device | str = "cpu") -> None:
        from torchvision.models import inception_v3

        self.weights, self.device = weights, torch.device(device)
        with _seeded(RANDOM_TRUNK_SEED):  # a stand-in (no file) is the same random network in every run
            model = inception_v3(weights=None, aux_logits=True, init_weights=weights.path is None)
        if weights.path is not None:
            model.load_state_dict(validate_weights_file(CATALOGUE["inception_torchvision"], weights.path))
        model.transform_input = False  # StarGAN v2 runs the blocks itself, without torchvision's input transform
        model.fc = nn.Identity()  # the pooled 2048-d features (dropout is off in eval mode)
        self.model = model.to(self.device).eval()

    id = property(lambda self: self.weights.extractor)
    label = property(lambda self: self.weights.label)
    weights_sha256 = property(lambda self: self.weights.sha256)
    standard = property(lambda self: self.weights.standard)

    @torch.inference_mode()
    def __call__(self, images: Tensor, batch_size: int = 50) -> Tensor:
        """(N, 3, H, W) uint8 -> (N, 2048) float64 features."""
        _check_uint8(images)
        mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
        out = []
        for chunk in images.split(batch_size):
            x = chunk.to(self.device).float() / 255
            for size in (256, 299):
                x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out.append(self.model((x - mean) / std).to("cpu", torch.float64))
        return torch.cat(out) if out else torch.empty(0, 2048, dtype=torch.float64)


# -- the Inception stand-in: random weights calibrated on toyfaces (bench.weights decides when to use it) ----
STANDIN_FEATURE_MEAN = 0.3  # order of magnitude of the published Inception's pool features


def write_inception_standin(path: Path, seed: int = STANDIN_SEED) -> None:
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
        calibration = _calibration_images(16, generator)
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


def _torchvision_features(path: Path, trunk: nn.Module, known: str) -> dict[str, Tensor]:
    """`features.N.*` tensors of a torchvision classifier file, renamed to the keys of `trunk`.

    LPIPS keeps torchvision's child indices inside its slices (`slice2.5.weight` = `features.5.weight`).
    """
    state = validate_weights_file(CATALOGUE[known], path)  # read once, without running code
    return {k: state[f"features.{k.split('.', 1)[1]}"] for k in trunk.state_dict()}


class _TorchvisionTrunk:
    """Provenance of an extractor whose trunk comes from a resolved torchvision file (or a random stand-in)."""

    network: str
    weights: ResolvedWeights

    @property
    def id(self) -> str:
        return self.network if self.standard else f"{self.network}-{self.weights.extractor}"

    @property
    def label(self) -> str:
        return self.id if self.standard else f"{self.id} ({NON_STANDARD})"

    @cached_property
    def weights_sha256(self) -> str:
        """The weights file's sha256; for a random stand-in trunk (no file), the sha256 of the tensors it runs,
        so that every row names the exact network behind it."""
        return self.weights.sha256 or tensor_sha256(self.module.state_dict())

    standard = property(lambda self: self.weights.standard)
    module: nn.Module  # the network whose tensors the extractor runs (set by each subclass)


class LpipsDistance(_TorchvisionTrunk):
    """LPIPS (v0.1, AlexNet backbone, the lpips package's linear heads): the StarGAN v2 diversity protocol.

    The package's learned linear heads ship inside the wheel; the AlexNet trunk comes from the resolved
    torchvision file, or is a fixed-seed random trunk (labelled non-standard) when there is none.
    """

    def __init__(self, weights: ResolvedWeights, device: torch.device | str = "cpu") -> None:
        import lpips

        self.weights = weights
        self.device = torch.device(device)
        with _seeded(RANDOM_TRUNK_SEED), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation notice inside lpips
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if weights.path is not None:
            model.net.load_state_dict(_torchvision_features(weights.path, model.net, "alexnet"))
        self.model = model.to(self.device).eval().requires_grad_(False)

    module = property(lambda self: self.model)
    network = "lpips-v0.1-alex"
    preprocessing = "uint8 -> [-1, 1] at evaluation size, no resize"

    @torch.inference_mode()
    def __call__(self, a: Tensor, b: Tensor, batch_size: int = 50) -> Tensor:
        """LPIPS between corresponding images of two (N, 3, H, W) uint8 batches -> (N,) float64."""
        _check_uint8(a)
        _check_uint8(b)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS needs pairs of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        out = [
            self.model(_to_unit_range(x, self.device), _to_unit_range(y, self.device))
            .flatten()
            .to("cpu", torch.float64)
            for x, y in zip(a.split(batch_size), b.split(batch_size))
        ]
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


# VGG16 feature indices after relu1_2, relu2_2, relu3_3, relu4_3: the layers style losses read.
STYLE_LAYERS = (3, 8, 15, 22)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StyleStatistics(_TorchvisionTrunk):
    """Channel-wise mean and standard deviation of VGG16 features (the statistics AdaIN transfers)."""

    def __init__(self, weights: ResolvedWeights, device: torch.device | str = "cpu") -> None:
        from torchvision.models.vgg import cfgs, make_layers

        self.weights = weights
        self.device = torch.device(device)
        with _seeded(RANDOM_TRUNK_SEED):
            trunk = make_layers(cfgs["D"])[: STYLE_LAYERS[-1] + 1]
        if weights.path is not None:
            state = validate_weights_file(CATALOGUE["vgg16"], weights.path)  # read once, without running code
            trunk.load_state_dict({k: state[f"features.{k}"] for k in trunk.state_dict()})
        self.trunk = trunk.to(self.device).eval().requires_grad_(False)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    module = property(lambda self: self.trunk)
    network = "vgg16-relu1_2-4_3-mean-std"
    preprocessing = "uint8 -> [0, 1], ImageNet normalisation, at evaluation size"

    @torch.inference_mode()
    def __call__(self, images: Tensor, batch_size: int = 50) -> Tensor:
        """(N, 3, H, W) uint8 -> (N, 2 * 960) float64: per layer, channel means then channel stds."""
        _check_uint8(images)
        out = []
        for chunk in images.split(batch_size):
            x = (chunk.to(self.device, torch.float32) / 255.0 - self.mean) / self.std
            stats = []
            for index, layer in enumerate(self.trunk):
                x = layer(x)
                if index in STYLE_LAYERS:
                    flat = x.flatten(2)
                    stats += [flat.mean(-1), flat.std(-1)]
            out.append(torch.cat(stats, 1).to("cpu", torch.float64))
        return torch.cat(out) if out else torch.empty(0, 1920, dtype=torch.float64)


# -- optional backbones (fd_dinov2, fd_clip) --------------------------------------------------------------
class TorchFidelityFeatures:
    """DINOv2 ViT-S/14 or CLIP ViT-B/32 embeddings through torch-fidelity's extractors.

    Both need their published files, which torch-fidelity fetches itself: DINOv2 through torch.hub (the
    facebookresearch/dinov2 repository and checkpoint in the torch hub cache), CLIP as a TorchScript file
    (torch hub cache, or BENCH_CLIP_WEIGHTS). There is no stand-in: without the files the metric stops with
    instructions, and the published weights make these numbers standard.
    """

    BACKBONES = {
        "dinov2": ("dinov2-vit-s-14", "dinov2", "feature_extractor_dinov2", "FeatureExtractorDinoV2"),
        "clip": ("clip-vit-b-32", "clip", "feature_extractor_clip", "FeatureExtractorCLIP"),
    }

    @classmethod
    def check_available(cls, backbone: str, weights_path: str | None = None) -> None:
        """Raise WeightsError with instructions unless torch-fidelity can load `backbone` without a download."""
        name = cls.BACKBONES[backbone][0]
        hub = Path(torch.hub.get_dir())
        if backbone == "dinov2":
            found = (hub / "facebookresearch_dinov2_main").is_dir() and any(hub.glob("checkpoints/dinov2_vits14*"))
            where = f"{hub}/facebookresearch_dinov2_main (the repository) and {hub}/checkpoints/dinov2_vits14*.pth"
        else:
            given = weights_path or os.environ.get("BENCH_CLIP_WEIGHTS")
            found = (given is not None and Path(given).is_file()) or any(hub.glob(f"checkpoints/{name}-*"))
            where = f"{hub}/checkpoints/{name}-<hash>.pt, --weights clip=PATH or BENCH_CLIP_WEIGHTS=PATH"
        if not found:
            raise WeightsError(
                f"fd_{backbone} needs the published {name} weights, which torch-fidelity downloads on first use; "
                f"none were found at {where}. Run torch-fidelity once with this extractor on a machine with internet "
                f"access (`fidelity --fid --feature-extractor {name} --input1 DIR --input2 DIR`) and copy its torch "
                f"hub cache here, or leave fd_{backbone} out of --metrics."
            )

    def __init__(self, backbone: str, device: torch.device | str = "cpu", weights_path: str | None = None) -> None:
        import importlib

        self.check_available(backbone, weights_path)
        name, feature, module, cls = self.BACKBONES[backbone]
        if backbone == "dinov2":
            weights_path = None  # torch-fidelity 0.4 loads DINOv2 only through torch.hub (from its cache here)
        else:
            weights_path = weights_path or os.environ.get("BENCH_CLIP_WEIGHTS")
        module_ = importlib.import_module(f"torch_fidelity.{module}")
        self.model = (
            getattr(module_, cls)(name, [feature], feature_extractor_weights_path=weights_path).to(device).eval()
        )
        self.device = torch.device(device)
        self.backbone = name
        self.calls = 0
        # torch-fidelity checks the hash of files it downloads itself; a user's CLIP file is checked here
        # against the sha256 its published URL carries.
        self.weights_sha256 = sha256_file(Path(weights_path)) if weights_path else ""
        self.standard = not weights_path or self.weights_sha256 == module_.MODEL_METADATA[name]["hash"]

    id = property(lambda self: self.backbone)
    preprocessing = "uint8 -> torch-fidelity TF1 bilinear resize to the backbone's input, its normalisation"
    label = property(lambda self: self.id if self.standard else f"{self.id} ({NON_STANDARD})")

    @torch.inference_mode()
    def __call__(self, images: Tensor, batch_size: int = 50) -> Tensor:
        _check_uint8(images)
        out = []
        for chunk in images.split(batch_size):
            (features,) = self.model(chunk.to(self.device))
            out.append(features.to("cpu", torch.float64))
            self.calls += len(chunk)
        return torch.cat(out)
