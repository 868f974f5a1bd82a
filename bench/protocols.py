"""Evaluation protocols: how each paper computed its numbers, as named presets of the evaluation options.

A paper's value can be set beside a measured one only when both were computed the same way. A protocol fixes
what changes the numbers: the feature network, how images reach it, the real reference split, outputs per
input for multimodal methods, the KID estimator and its subsets or blocks, and the scale KID is printed at.
`--protocol NAME` (`eval.protocol`) selects one; a `--set` that contradicts it is refused, and every row's
`protocol` field starts with its name. Sources of each choice are listed with it (see also
shared/research/paper_tables.md, section 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError

GAN_METRICS_TF = "https://github.com/taki0112/GAN_Metrics-Tensorflow (main.py at 5e358b7)"
TFGAN_KID = "TF-GAN kernel_classifier_distance_and_std_from_activations: contiguous blocks, standard error over blocks"


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    extractor: str  # weights catalogue name of the FID/KID network
    resize: str  # how images reach the network
    kid_scale: int  # the scale the protocol's sources print KID at (rows stay raw)
    fixed: dict[str, Any] = field(default_factory=dict)  # eval options the protocol sets
    sources: dict[str, str] = field(default_factory=dict)  # choice -> where it comes from

    def describe(self) -> dict[str, Any]:
        """The protocol's choices in one row: extractor, resize, reference, styles, KID scale and subsets."""
        kid = (
            f"blocks of at most {self.fixed['kid_block_size']}"
            if self.fixed.get("kid_estimator") == "blocks"
            else "100 random subsets of min(1000, n/2)"
        )
        return {
            "protocol": self.name,
            "extractor": self.extractor,
            "resize": self.resize,
            "reference": self.fixed.get("reference", "test"),
            "styles per input (FID)": self.fixed.get("fid_styles", 1),
            "KID printed": f"x{self.kid_scale}" if self.kid_scale != 1 else "raw",
            "KID estimator": kid,
        }


TF_FID_INCEPTION = "the 2015-12-05 TF Inception (pool_3, 2048-d), as torch-fidelity ports it"
TF_RESIZE = "bilinear to 299 inside the network (TF1-compatible), from uint8"

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "harness",
            "this harness's defaults: TF-FID Inception, test split, KID over random subsets",
            "inception",
            TF_RESIZE,
            100,
            {},
            {"extractor": "torch-fidelity (TF-FID weights)", "KID": "torch-fidelity kid_features_to_metric"},
        ),
        Protocol(
            "ugatit",
            "U-GAT-IT's tables as far as the research establishes them: GAN_Metrics-Tensorflow's block-wise KID",
            "inception",
            TF_RESIZE,
            100,
            {"reference": "test", "kid_estimator": "blocks", "kid_block_size": 10, "fid_styles": 1},
            {
                "tool": f"likely {GAN_METRICS_TF} (same first author; taki0112/UGATIT#64), not confirmed by the authors",
                "KID": f"{TFGAN_KID}, max_block_size=10 ({GAN_METRICS_TF})",
                "extractor": "tfgan's default graph, the 2015-12-05 Inception, pool_3",
                "reference": "not stated by the paper; the test split (100 per domain) is what its test script "
                "translates. taki0112/UGATIT#64 compared against 100 trainB images",
                "KID printed": "x100 (Table 3 image, taki0112/UGATIT README)",
                "mean KID": "`--metrics kid,kid_mean_with_source` adds GAN_Metrics-Tensorflow's mean KID",
            },
        ),
        Protocol(
            "acl_gan",
            "ACL-GAN's table: GAN_Metrics-Tensorflow (the authors, hyperplane-lab/ACL-GAN#6), KID printed raw",
            "inception",
            TF_RESIZE,
            1,
            {"reference": "test", "kid_estimator": "blocks", "kid_block_size": 10, "fid_styles": 1},
            {
                "tool": "hyperplane-lab/ACL-GAN#6: the authors used taki0112/GAN_Metrics-Tensorflow",
                "KID": f"{TFGAN_KID}, max_block_size=10",
                "KID printed": "raw (hyperplane-lab/ACL-GAN figures/table.png)",
                "reference": "not stated; the test split",
            },
        ),
        Protocol(
            "stargan_v2",
            "StarGAN v2's evaluation: torchvision's ImageNet Inception-v3, training images, 10 styles per input",
            "inception_torchvision",
            "resize to 256 then 299 (bilinear), ImageNet mean/std normalisation",
            100,
            {"reference": "train", "fid_styles": 10, "styles": 10},
            {
                "extractor": "clovaai/stargan-v2 metrics/fid.py: torchvision inception_v3(pretrained=True), avgpool",
                "reference": "clovaai/stargan-v2 metrics/eval.py: FID against the target domain's training images",
                "styles": "num_outs_per_domain = 10 (metrics/eval.py); LPIPS over all 45 pairs (metrics/lpips.py)",
                "resize": "metrics/fid.py: Resize 256 then 299, ImageNet normalisation",
            },
        ),
    )
}


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def apply_protocol(given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The eval section: `defaults` (a dataset's), then the user's `given` values, then the protocol's.

    A given value that contradicts the protocol is refused: its numbers would carry the protocol's name
    without following it.
    """
    chosen = protocol(given.get("protocol", "harness"))
    clashes = [k for k, v in chosen.fixed.items() if k in given and given[k] != v]
    if clashes:
        told = ", ".join(f"eval.{k}={given[k]!r} (it uses {chosen.fixed[k]!r})" for k in clashes)
        raise ConfigError(
            f"protocol {chosen.name} fixes {told}; drop the setting, or use --protocol harness to choose freely"
        )
    return {**defaults, **given, **chosen.fixed}
