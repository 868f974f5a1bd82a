"""Published numbers as data, the papers' protocols as presets, and `bench reproduce`."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bench.__main__ import main
from bench.config import load_config
from bench.errors import ConfigError
from bench.evaluate.fidkid import KidKernels, _blocks, block_kid, features_to_kid
from bench.evaluate.metrics import EvalOptions, kid, kid_mean_with_source
from bench.paper import TABLES_FILE, compare, load, markdown
from bench.protocols import PROTOCOLS
from tests.test_eval_cli import SMALL, _official_council


# -- the data ---------------------------------------------------------------------------------------------------
def test_the_published_numbers_pass_their_schema() -> None:
    data = load()
    assert {"ugatit_table3", "acl_gan"} <= set(data.tables)
    for cell in data.cells:
        table = data.tables[cell.table]
        assert table.protocol in PROTOCOLS and "https://" in table.source
        # KID is stored raw: printed x100 where the source prints x100, and a raw KID of these tasks is below 1
        assert (cell.printed_scale == 100) == cell.printed_metric.startswith(("kid_x100", "mean_kid_x100"))
        if cell.metric.startswith("kid"):
            assert 0 < cell.value < 1
    ugatit = [c for c in data.cells_of("ugatit_table3") if c.task in ("selfie2anime", "anime2selfie")]
    assert {c.direction for c in ugatit} == {"a2b", "b2a"} and all(c.dataset == "selfie2anime" for c in ugatit)
    assert any(item["paper"].startswith("GANs N' Roses") for item in data.not_found)  # left not found, not filled


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["cells"][0].update(value=float("nan")), "not a finite number"),
        (lambda d: d["cells"][0].pop("source", None) or d["cells"][0].update(colour="red"), "unknown keys"),
        (lambda d: d["tables"]["acl_gan"].update(protocol="mine"), "unknown protocol"),
        (lambda d: d["cells"][0].update(harness_method="pix2pix"), "not registered"),
    ],
)
def test_a_broken_entry_is_refused_with_its_place(edit, message: str, tmp_path: Path) -> None:
    data = yaml.safe_load(TABLES_FILE.read_text())
    edit(data)
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load(tmp_path / "tables.yaml")


# -- block-wise KID (TF-GAN, as GAN_Metrics-Tensorflow calls it) ------------------------------------------------
def test_block_kid_is_the_mean_and_standard_error_of_per_block_unbiased_estimates() -> None:
    rng = np.random.default_rng(0)
    fake, real = rng.normal(size=(23, 6)), rng.normal(0.4, size=(23, 6))
    estimate = block_kid(fake, real, max_block_size=10)
    assert [len(b) for b in _blocks(fake, 3)] == [7, 8, 8] and estimate.subsets == 3  # TF-GAN's split
    per_block = [
        KidKernels.of(f, r).mmd2(np.arange(len(f)), np.arange(len(r)))
        for f, r in zip(_blocks(fake, 3), _blocks(real, 3), strict=True)
    ]
    assert estimate.mean == pytest.approx(np.mean(per_block), rel=1e-12)
    assert estimate.std == pytest.approx(np.std(per_block, ddof=1) / math.sqrt(3), rel=1e-12)


def test_one_block_is_the_unbiased_full_set_estimate_of_torch_fidelity() -> None:
    rng = np.random.default_rng(1)
    fake, real = rng.normal(size=(40, 5)), rng.normal(0.2, size=(40, 5))
    whole = block_kid(fake, real, max_block_size=40)
    # one subset of the whole set is a permutation of it, and the unbiased MMD^2 ignores order
    assert whole.mean == pytest.approx(features_to_kid(fake, real, 40, 1, seed=0).mean, rel=1e-9)
    assert math.isnan(whole.std)
    same = block_kid(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)), 10)  # one distribution: mean ~ 0
    assert abs(same.mean) < 3 * same.std


def test_mean_kid_averages_the_kid_to_target_and_to_source() -> None:
    rng = np.random.default_rng(2)
    fake, target, source = rng.normal(size=(30, 4)), rng.normal(0.1, size=(30, 4)), rng.normal(1, size=(30, 4))
    options = EvalOptions(kid_estimator="blocks", bootstrap=0)
    (mean,) = kid_mean_with_source(fake, target, source, options)
    (to_target,), (to_source,) = kid(fake, target, options), kid(fake, source, options)
    assert mean.value == pytest.approx((to_target.value + to_source.value) / 2)
    assert to_source.value > to_target.value  # the source is farther: the mean KID is not a target KID


# -- protocols --------------------------------------------------------------------------------------------------
def test_a_protocol_fixes_its_options_and_refuses_a_contradiction() -> None:
    cfg = load_config(None, [("eval.protocol", "stargan_v2"), ("data.dataset", "toyfaces")])
    assert (cfg.eval.reference, cfg.eval.fid_styles, cfg.eval.styles) == ("train", 10, 10)  # over toyfaces' styles
    assert load_config(None, [("eval.protocol", "ugatit")]).eval.kid_estimator == "blocks"
    with pytest.raises(ConfigError, match="protocol ugatit fixes eval.reference='train'"):
        load_config(None, [("eval.protocol", "ugatit"), ("eval.reference", "train")])
    with pytest.raises(ConfigError, match="protocols: harness, ugatit, acl_gan, stargan_v2"):
        load_config(None, [("eval.protocol", "mine")])


def test_the_stargan_v2_protocol_without_torchvision_weights_stops_with_instructions(in_tmp: Path, capsys) -> None:
    torch.save({}, in_tmp / "x.pth")  # never loaded as weights: the extractor weights are resolved first
    args = ["eval", "--protocol", "stargan_v2", "--dataset", "toyfaces", "--data-root", str(in_tmp), *SMALL]
    assert main([*args, "--checkpoint", "cyclegan=x.pth", "--no-allow-standin", "--no-track"]) == 2
    err = capsys.readouterr().err
    assert "inception_v3_google-0cc3c7bd.pth" in err and "--weights inception_torchvision=PATH" in err


def test_torchvision_inception_features_follow_stargan_v2s_preprocessing(tmp_path: Path) -> None:
    from torchvision.models import inception_v3

    from bench.evaluate.extract import TorchvisionInceptionFeatures
    from bench.weights import ResolvedWeights

    torch.manual_seed(0)
    reference = inception_v3(weights=None, aux_logits=True, init_weights=True).eval()
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    weights = ResolvedWeights("inception_torchvision", "tv-test", tmp_path / "tv.pth", "", False, "test")
    features = TorchvisionInceptionFeatures(weights)
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    x = torch.nn.functional.interpolate(images.float() / 255, size=(256, 256), mode="bilinear")
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear")
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    reference.fc = torch.nn.Identity()
    reference.transform_input = False
    with torch.no_grad():
        expected = reference(x).double()
    assert torch.allclose(features(images, batch_size=2), expected, atol=1e-5)


# -- comparison and `bench reproduce` -----------------------------------------------------------------------------
def test_a_paper_value_is_compared_only_when_everything_matches() -> None:
    data = load()
    table = data.tables["ugatit_issue64"]
    (cell,) = [c for c in data.cells_of("ugatit_issue64") if c.metric == "kid"]
    row = {"method": "ugatit", "preset": "paper", "direction": "a2b", "metric": "kid", "dataset": "selfie2anime",
           "protocol": "ugatit: TF-GAN block-wise KID", "standard": True, "reference": "trainB", "n": 100,
           "n_ref": 100, "value": cell.value + 0.01, "ci_low": cell.value - 0.001, "ci_high": cell.value + 0.02}  # fmt: skip
    (matched,) = compare(table, [cell], [row])
    assert matched.compared and matched.difference == pytest.approx(0.01) and matched.inside_interval
    for change, reason in [
        ({"dataset": "toyfaces"}, "measured on toyfaces"),
        ({"preset": "tiny"}, "tiny preset"),
        ({"protocol": "harness: unbiased"}, "protocol harness"),
        ({"standard": False}, "non-standard"),
        ({"reference": "testB"}, "against testB"),
        ({"n": 50}, "n=50"),
    ]:
        (c,) = compare(table, [cell], [{**row, **change}])
        assert not c.compared and reason in c.reason
    (unstated,) = compare(data.tables["ugatit_table3"], [dataclasses.replace(cell, reference=None)], [row])
    assert "does not say which real images" in unstated.reason
    assert "| 2.721" in markdown(table, [matched])  # printed at the paper's scale (x100)


def test_reproduce_lists_the_tables_with_their_sources(capsys) -> None:
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "ugatit_table3" in out and "github.com/taki0112/UGATIT" in out
    assert "acl_gan" in out and "hyperplane-lab/ACL-GAN" in out and "KID printed raw" in out


def test_reproduce_on_toyfaces_measures_but_leaves_the_paper_values_alone(in_tmp: Path, standin, capsys) -> None:
    _official_council(in_tmp / "council")
    data = ["--dataset", "toyfaces", "--data-root", str(in_tmp / "data"), *SMALL, "--no-track"]
    args = ["reproduce", "acl_gan", "--checkpoint", f"council={in_tmp / 'council'}", *data, "--limit", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    (written,) = (in_tmp / "reports").glob("*/reproduce-acl_gan.md")
    text = written.read_text()
    assert text in out
    council_kid = next(line for line in text.splitlines() if line.startswith("| CouncilGAN | selfie->anime | kid"))
    assert "| 0.042 ± 0.0047 |" in council_kid and "measured on toyfaces, the paper used selfie2anime" in council_kid
    measured = [line for line in text.split("Measured in this run")[1].splitlines() if line.startswith("| council")]
    assert len(measured) == 2 and all("| acl_gan |" in line for line in measured)  # fid and kid, its protocol
    assert (
        "glasses_removal is not a dataset of this harness" in text and "MUNIT is not a method of this harness" in text
    )
    html = (written.parent / "index.html").read_text()
    assert "Paper vs measured: ACL-GAN comparison table" in html and "measured on toyfaces" in html
