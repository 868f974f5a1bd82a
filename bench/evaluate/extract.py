"""The only module that runs a feature network over images."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from bench.weights import CATALOGUE, ResolvedWeights, validate_weights_file

# torch-fidelity resizes uint8 inputs to 299x299 with TF1-compatible bilinear interpolation inside the network.
INCEPTION_PREPROCESSING = "uint8 -> torch-fidelity TF1 bilinear resize to 299"


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

    @torch.no_grad()
    def __call__(self, images: Tensor, batch_size: int = 50) -> Tensor:
        """(N, 3, H, W) uint8 -> (N, 2048) float64 features."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}")
        out = []
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device).contiguous(memory_format=torch.channels_last)
            (features,) = self.model(chunk)
            out.append(features.to("cpu", torch.float64))
        return torch.cat(out) if out else torch.empty(0, 2048, dtype=torch.float64)


STANDARD_NAME = "inception-v3-compat"
