"""GANs N' Roses against the official manifests, official checkpoint loading, LPIPS weights, seeds and training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench.official import load_official, read_state
from bench.train import train_step
from methods.base import Batch, ConfigError
from methods.gnr import GNR, blur_kernel

MANIFESTS = Path(__file__).parent / "manifests"


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"gans_n_roses__{name}.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _random_state(manifest: dict, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=generator) for k, shape in manifest["tensors"].items()}


def _tiny(seed: int = 0, **overrides) -> GNR:
    torch.manual_seed(seed)
    return GNR.from_preset("tiny", **{"image_size": 32, "load_size": 32, **overrides})


def _vgg16_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision `vgg16-397923af.pth`-style file (features plus a classifier key) with random values."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(5)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def paper() -> GNR:
    torch.manual_seed(0)
    return GNR.from_preset("paper")


def test_paper_networks_match_the_official_manifests(paper: GNR) -> None:
    for attr, name, params in (
        ("G_A2B_ema", "G_A2B_ema", 39_581_207),
        ("G_B2A", "G_A2B_ema", 39_581_207),
        ("D_A", "D_A_main_branch", 18_365_315),
        ("D_L", "D_L", 265_985),
    ):
        manifest = _manifest(name)
        assert _shapes(getattr(paper, attr)) == manifest["tensors"], attr
        assert list(_shapes(getattr(paper, attr))) == list(manifest["tensors"]), attr  # same order
        assert paper.parameter_counts()[attr] == manifest["params"] == params
    buffers = {k for k, _ in paper.G_A2B_ema.named_buffers()}
    assert buffers == set(_manifest("G_A2B_ema")["buffers"])  # the 18 constant blur kernels, by official name
    assert not any(p.requires_grad for p in paper.G_A2B_ema.parameters())  # EMA copies are never trained
    train_default = GNR.from_preset("paper", num_down=3).G_A2B  # main-branch train.py default
    assert _shapes(train_default) == _manifest("G_num_down3_train_default")["tensors"]


def test_blur_kernels_are_the_official_constants(paper: GNR) -> None:
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected = torch.outer(kernel, kernel) / 64
    assert torch.equal(paper.G_A2B.encoder.stem[1].conv2[0].kernel, expected)
    assert torch.equal(paper.G_A2B.convs[0].conv.blur.kernel, expected * 4)  # after a 2x transposed conv
    assert torch.equal(paper.G_A2B.to_rgbs[0].upsample.kernel, blur_kernel(4.0))
    x = torch.randn(1, 2, 8, 8)
    up = paper.G_A2B.to_rgbs[0].upsample(x)  # zero-insert, pad (2, 1), blur: constant images stay constant
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(paper.G_A2B.to_rgbs[0].upsample(torch.ones(1, 1, 8, 8))[..., 2:-2, 2:-2], torch.ones(1))


def test_load_official_released_generator_and_translate(tmp_path: Path, paper: GNR) -> None:
    state = _random_state(_manifest("G_A2B_ema"), seed=7)
    path = tmp_path / "GNR_checkpoint.pt"
    torch.save({"G_A2B_ema": state}, path)
    assert torch.load(path, weights_only=True)  # plain tensors: loads without unpickling code
    load_official(paper, str(path))
    for key, value in paper.G_A2B_ema.state_dict().items():
        assert torch.equal(value, state[key]), key  # kernels included
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    y = paper.translate(x, "a2b", generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    with pytest.raises(ValueError, match="G_A2B_ema"):
        torch.save({"generator": state}, tmp_path / "other.pt")
        load_official(paper, str(tmp_path / "other.pt"))


def test_load_official_explains_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "GNR_checkpoint.pt"
    torch.save({"G_A2B_ema": _random_state(_manifest("G_A2B_ema"), seed=1)}, path)
    with pytest.raises(ValueError, match=r"G_A2B_ema.*(missing|shape mismatch).*preset"):
        load_official(_tiny(), str(path))


def test_load_official_full_training_checkpoint(tmp_path: Path) -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    full = {name: state for name, state in source.network_state().items()}
    full["D_B"] = {"old.train_branch.weight": torch.zeros(1)}  # a later D definition: skipped with a warning
    full.update(G_optim={"state": {}, "param_groups": []}, iter=1999)
    torch.save(full, tmp_path / "ck.pt")
    with pytest.warns(UserWarning, match="skipped D_B"):
        load_official(target, str(tmp_path / "ck.pt"))
    for attr in ("G_A2B", "G_B2A", "G_A2B_ema", "G_B2A_ema", "D_A", "D_L"):
        for key, value in getattr(target, attr).state_dict().items():
            assert torch.equal(value, full[attr][key]), (attr, key)
    assert not torch.equal(target.D_B.g_final.weight, source.D_B.g_final.weight)


def test_vgg16_weights_fill_the_lpips_trunk(tmp_path: Path) -> None:
    path, state = _vgg16_file(tmp_path)
    method = _tiny()
    rng = torch.get_rng_state()
    method.attach_pretrained("vgg16", read_state(path))
    assert torch.equal(torch.get_rng_state(), rng)  # building the LPIPS network draws nothing from the run's RNG
    trunk = method._frozen["lpips"].net
    loaded = trunk.state_dict()  # lpips keeps torchvision's child indices inside slice1..slice5
    assert torch.equal(loaded["slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(loaded["slice3.14.bias"], state["features.14.bias"])
    assert torch.equal(loaded["slice5.28.weight"], state["features.28.weight"])
    assert all(not p.requires_grad for p in trunk.parameters()) and not method._frozen["lpips"].training
    assert not any(k.startswith("_frozen") or "lpips" in k for k in method.state_dict())  # never saved
    assert GNR.pretrained_networks(GNR.Config.paper()) == {"vgg16": False}
    assert GNR.pretrained_networks(GNR.Config.tiny()) == {"vgg16": True}
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "not_vgg.pth")
    with pytest.raises(ValueError, match="VGG16"):
        method.attach_pretrained("vgg16", read_state(tmp_path / "not_vgg.pth"))
    with pytest.raises(ConfigError):
        method.attach_pretrained("alexnet", None)


@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_paper_preset_needs_vgg_weights_then_trains_a_step_at_64px(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = GNR.from_preset("paper", image_size=64, load_size=64, batch_size=1)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with pytest.raises(ConfigError, match="VGG16"):
        train_step(method, Batch(x, x), 1)
    method.attach_pretrained("vgg16", read_state(_vgg16_file(tmp_path)[0]))
    losses = train_step(method, Batch(x, x.flip(-1)), 0)  # step 0 includes the lazy R1 term
    assert set(losses) == {"D_adv", "D_r1", "G_adv", "G_consistency", "G_cycle", "G_lpips", "G_style"}
    assert all(math.isfinite(v) for v in losses.values()) and losses["D_r1"] > 0


@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_tiny_trains_with_the_harness_loop(toyfaces_small, tmp_path: Path) -> None:
    from accelerate import Accelerator

    from bench.train import TrainPlan, train

    method, seen = _tiny(), {}
    ema_before = method.G_A2B_ema.to_rgb1.bias.clone()
    plan = TrainPlan(20, batch_size=4, seed=3, checkpoint_every=100, sample_every=100, log_every=5)
    result = train(
        method, toyfaces_small, plan, tmp_path, Accelerator(cpu=True), {"test": True}, on_losses=seen.__setitem__
    )
    assert result.steps == 20 and sorted(seen) == list(range(20))
    assert all(math.isfinite(v) for losses in seen.values() for v in losses.values())
    assert seen[0]["D_r1"] > 0 and seen[1]["D_r1"] == 0 and seen[16]["D_r1"] > 0  # lazy R1 every 16 steps
    assert not torch.equal(method.G_A2B_ema.to_rgb1.bias, ema_before)  # EMA follows the trained generator
    assert result.sample_grid is not None and result.sample_grid.is_file()


def test_same_seed_same_weights_and_ema_update() -> None:
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    runs = []
    for _ in range(2):
        method = _tiny(seed=4, lambda_cycle_lpips=0.0)
        for step in range(3):
            train_step(method, Batch(x, x.flip(0)), step)
        runs.append(method)
    for attr in runs[0].networks:
        for (key, a), b in zip(
            getattr(runs[0], attr).state_dict().items(), getattr(runs[1], attr).state_dict().values()
        ):
            assert torch.equal(a, b), (attr, key)
    # One more step moves every EMA parameter by (1 - decay) of the way to the live one.
    method, decay = runs[0], runs[0].config.ema_decay
    before = method.G_B2A_ema.mapping[0].weight.clone()
    train_step(method, Batch(x, x.flip(0)), 3)
    assert torch.allclose(
        method.G_B2A_ema.mapping[0].weight, decay * before + (1 - decay) * method.G_B2A.mapping[0].weight
    )


def test_styles_seeds_and_references_steer_translation() -> None:
    method = _tiny()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    for direction in ("a2b", "b2a"):
        one = method.translate(x, direction, generator=torch.Generator().manual_seed(1))
        again = method.translate(x, direction, generator=torch.Generator().manual_seed(1))
        other = method.translate(x, direction, generator=torch.Generator().manual_seed(2))
        assert torch.equal(one, again)
        assert (one - other).abs().mean() > 1e-3  # different styles, different outputs
        style = method.sample_style(3, direction, torch.Generator().manual_seed(1))
        assert style.shape == (3, 8) and torch.equal(method.translate(x, direction, style=style), one)
        ref_1, ref_2 = torch.rand(2, 1, 3, 32, 32) * 2 - 1
        by_ref = method.translate(x, direction, reference=ref_1)  # one reference image for the whole batch
        assert (
            by_ref.shape == x.shape and (by_ref - method.translate(x, direction, reference=ref_2)).abs().mean() > 1e-4
        )


def test_learning_rate_halves_in_steps() -> None:
    method = GNR.from_preset("paper")  # decay every 100k of 300k iterations
    assert method.lr_factor(0, 300_000) == 1.0 and method.lr_factor(99_999, 300_000) == 1.0
    assert method.lr_factor(100_000, 300_000) == 0.5 and method.lr_factor(299_999, 300_000) == 0.25
    betas = {name: opt.param_groups[0]["betas"] for name, opt in method.optimizers().items()}
    assert betas == {"G": (0.0, 0.99), "D": (0.0, pytest.approx(0.99 ** (16 / 17)))}


def test_augmentation_is_per_sample_and_seeded() -> None:
    method = _tiny()
    one = torch.rand(1, 3, 32, 32).expand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    a = method.augment(one)
    torch.manual_seed(0)
    assert torch.equal(method.augment(one), a)  # driven by the global torch RNG
    assert (a[0] - a[1:]).abs().flatten(1).mean(1).min() > 1e-3  # every copy of the image is warped differently


def _style_spread(method: GNR, image: torch.Tensor) -> float:
    """Summed variance of the style codes of 16 augmentations of one image (fixed augmentation seed)."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        styles = method.G_A2B("encode", method.augment(image.expand(16, -1, -1, -1)))[1]
    return float(styles.var(0, unbiased=False).sum())


@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_consistency_loss_makes_styles_augmentation_invariant(toyfaces_small) -> None:
    from bench.data.images import uint8_to_float

    images_a = uint8_to_float(toyfaces_small.split("train", "A").load_all(32, 16))
    images_b = uint8_to_float(toyfaces_small.split("train", "B").load_all(32, 16))
    held_out = uint8_to_float(toyfaces_small.split("test", "A").load_all(32, 1))
    method = _tiny(seed=0, lambda_cycle_lpips=0.0)
    before = _style_spread(method, held_out)
    for step in range(50):
        pick = torch.arange(4) + 4 * (step % 4)
        train_step(method, Batch(images_a[pick], images_b[pick]), step)
    assert _style_spread(method, held_out) < 0.5 * before
