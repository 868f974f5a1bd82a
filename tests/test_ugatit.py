"""U-GAT-IT against the official manifests and parameter counts, official checkpoint loading, AdaLIN,
rho clipping, schedule, reproducibility and a short run through the training loop.

Memory: the full paper generator (279M parameters) is built once, alone; the full method is built once,
at 96 px where its MLP is 7x smaller; the official-layout file is written for the light model (540 MB).
"""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.official import load_official
from bench.train import TrainPlan, set_learning_rates, train, train_step
from methods.base import Batch, ConfigError
from methods.ugatit import UGATIT, AdaILN, Discriminator, ResnetGenerator, instance_layer_mix

MANIFESTS = Path(__file__).parent / "manifests"


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"ugatit__{name}.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _batch(size: int, n: int = 1, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(*(torch.rand(n, 3, size, size, generator=generator) * 2 - 1 for _ in range(2)))


def _tiny(**overrides) -> UGATIT:
    return UGATIT.from_preset("tiny", image_size=32, load_size=36, n_layers_global=5, **overrides)


# -- architecture against the official manifests --------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "manifest", "count"), [("paper", "genA2B", 278_959_808), ("paper_light", "genA2B_light", 10_589_888)]
)
def test_preset_generators_match_the_official_manifests(preset: str, manifest: str, count: int) -> None:
    c = UGATIT.Config.preset(preset)
    generator = ResnetGenerator(c.ngf, c.n_res, c.image_size, c.light)  # as UGATIT builds it; alone: 1.1 GB full
    expected = _manifest(manifest)
    assert _shapes(generator) == expected["tensors"]
    assert list(_shapes(generator)) == list(expected["tensors"])  # official key order too
    assert _params(generator) == expected["params"] == count
    del generator
    gc.collect()


@pytest.mark.parametrize(
    ("scope", "manifest", "count", "patch"), [("global", "disGA", 53_130_176, 6), ("local", "disLA", 3_290_560, 30)]
)
def test_paper_discriminators_match_the_official_manifests(scope: str, manifest: str, count: int, patch: int) -> None:
    c = UGATIT.Config.paper()
    torch.manual_seed(0)
    discriminator = Discriminator(c.ndf, c.n_layers_global if scope == "global" else c.n_layers_local)
    expected = _manifest(manifest)
    assert _shapes(discriminator) == expected["tensors"]
    assert {k for k, _ in discriminator.named_buffers()} == set(expected["buffers"])  # spectral-norm u, v
    assert _params(discriminator) == expected["params"] == count
    with torch.no_grad():
        logits, cam_logit, heatmap = discriminator(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert logits.shape == (1, 1, patch, patch)  # global 6x6, local 30x30 at 256 px
    assert cam_logit.shape == (1, 2) and heatmap.shape[:2] == (1, 1)


def test_presets_and_the_light_default() -> None:
    paper, light = UGATIT.Config.paper(), UGATIT.Config.preset("paper_light")
    assert (paper.light, paper.image_size, paper.n_res, paper.cam_weight) == (False, 256, 4, 1000.0)
    assert light == paper.replace(light=True)
    assert round(paper.epochs * 3_400) == 1_000_000  # official iterations at batch 1
    assert UGATIT.Config.default_preset("paper") == "paper_light"  # runs on real data without --preset
    assert UGATIT.Config.default_preset("tiny") == "tiny"


@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_paper_preset_trains_a_step_at_96_px() -> None:
    """The full model, built once: at 96 px the flatten-MLP reads 24x24x256 instead of 64x64x256 inputs."""
    torch.manual_seed(0)
    method = UGATIT.from_preset("paper", image_size=96)
    counts = method.parameter_counts()
    assert counts["genA2B"] == 278_959_808 - 256 * (64 * 64 * 256) + 256 * (24 * 24 * 256)
    assert counts["disGA"] == 53_130_176 and counts["disLA"] == 3_290_560
    batch = _batch(96)
    losses = train_step(method, batch, 0)
    assert set(losses) == {
        *("D_A", "D_B", "G_adv_A", "G_adv_B", "G_cycle_A", "G_cycle_B"),
        *("G_identity_A", "G_identity_B", "G_cam_A", "G_cam_B"),
    }
    assert all(math.isfinite(v) for v in losses.values())
    y, cam_logit, heatmap = method.genA2B(batch.a)
    assert y.shape == (1, 3, 96, 96) and cam_logit.shape == (1, 2) and heatmap.shape == (1, 1, 24, 24)
    with pytest.raises(ValueError, match="only takes 96x96"):
        method.translate(torch.zeros(1, 3, 64, 64))  # the full MLP is tied to the training size
    del method, batch
    gc.collect()


def test_too_small_images_are_rejected_with_the_minimum() -> None:
    with pytest.raises(ConfigError, match="image_size >= 96"):
        UGATIT.from_preset("paper_light", image_size=64)  # the global D's last pad would exceed its 1x1 map
    with pytest.raises(ConfigError, match="multiple of 4"):
        UGATIT.from_preset("tiny", image_size=66)


# -- official checkpoint layout -------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_light_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UGATIT-pytorch checkpoint of the light model: random values under the manifests' keys and shapes."""
    generator = torch.Generator().manual_seed(7)
    layout = {"genA2B": "genA2B_light", "genB2A": "genA2B_light", "disGA": "disGA", "disGB": "disGA"}
    layout |= {"disLA": "disLA", "disLB": "disLA"}
    state = {
        net: {k: torch.randn(shape, generator=generator) for k, shape in _manifest(name)["tensors"].items()}
        for net, name in layout.items()
    }
    for net in ("genA2B", "genB2A"):  # rho in its trained range, as the official clipper keeps it
        state[net] = {k: v.sigmoid() if k.endswith("rho") else v for k, v in state[net].items()}
    path = tmp_path_factory.mktemp("official") / "selfie2anime_params_1000000.pt"
    torch.save(state, path)
    return path


def test_load_official_checkpoint_and_translate(official_light_file: Path) -> None:
    state = torch.load(official_light_file, weights_only=True)  # plain tensors: no pickled code
    method = UGATIT.from_preset("paper_light")
    assert method.parameter_counts() == {
        "genA2B": 10_589_888,
        "genB2A": 10_589_888,
        "disGA": 53_130_176,
        "disGB": 53_130_176,
        "disLA": 3_290_560,
        "disLB": 3_290_560,
    }
    load_official(method, str(official_light_file))
    for net in method.networks:
        for key, value in getattr(method, net).state_dict().items():
            assert torch.equal(value, state[net][key]), f"{net}.{key}"
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # the light generator takes any multiple of 4
    a2b, b2a = method.translate(x, "a2b"), method.translate(x, "b2a")
    assert a2b.shape == x.shape and torch.isfinite(a2b).all() and a2b.abs().max() <= 1
    assert torch.equal(a2b, method.genA2B(x)[0].clamp(-1, 1)) and not torch.equal(a2b, b2a)
    del method, state
    gc.collect()


def test_load_official_explains_a_mismatch(official_light_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[genA2B\].*shape mismatch.*preset"):
        load_official(_tiny(), str(official_light_file))
    bare = tmp_path / "bare_generator.pt"
    torch.save(_tiny().genA2B.state_dict(), bare)  # one state_dict instead of the six-network dict
    with pytest.raises(ValueError, match="not a UGATIT-pytorch checkpoint.*lacks genA2B"):
        load_official(_tiny(), str(bare))


# -- building blocks and training rules -----------------------------------------------------------
def test_adalin_mixes_instance_and_layer_norm() -> None:
    x = torch.randn(2, 4, 5, 5) * 3 + 1
    unbiased = dict(unbiased=True, keepdim=True)
    instance = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), **unbiased) + 1e-5)
    layer = (x - x.mean((1, 2, 3), keepdim=True)) / torch.sqrt(x.var((1, 2, 3), **unbiased) + 1e-5)
    assert torch.allclose(instance_layer_mix(x, torch.ones(1, 4, 1, 1), 1e-5), instance, atol=1e-6)
    assert torch.allclose(instance_layer_mix(x, torch.zeros(1, 4, 1, 1), 1e-5), layer, atol=1e-6)
    norm = AdaILN(4)
    assert torch.allclose(norm.rho, torch.full((1, 4, 1, 1), 0.9))
    gamma, beta = torch.rand(2, 4), torch.rand(2, 4)
    expected = (0.9 * instance + 0.1 * layer) * gamma[:, :, None, None] + beta[:, :, None, None]
    assert torch.allclose(norm(x, gamma, beta), expected, atol=1e-5)


def test_rho_is_clipped_after_every_generator_step() -> None:
    torch.manual_seed(0)
    method = _tiny(batch_size=2)
    with torch.no_grad():
        method.genA2B.UpBlock1_1.norm1.rho.fill_(1.5)  # AdaLIN
        method.genB2A.UpBlock2[3].rho.fill_(-0.5)  # LIN of the first up-sampling block
    train_step(method, _batch(32, 2), 0)
    assert torch.equal(method.genA2B.UpBlock1_1.norm1.rho, torch.ones(1, 64, 1, 1))
    assert torch.equal(method.genB2A.UpBlock2[3].rho, torch.zeros(1, 32, 1, 1))


def test_generator_losses_follow_the_official_definitions() -> None:
    """The D update runs first and leaves G untouched, so G's loss terms can be recomputed from G before the step."""
    torch.manual_seed(0)
    method = _tiny(batch_size=2)
    a, b = _batch(32, 2).a, _batch(32, 2).b
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    with torch.no_grad():
        fake_a2b, cam_a2b, _ = method.genA2B(a)
        _, cam_b2a, _ = method.genB2A(b)
        fake_a2a, cam_a2a, _ = method.genB2A(a)
        _, cam_b2b, _ = method.genA2B(b)
        expected = {  # each generator's CAM says 1 on its source domain, 0 on its target domain
            "G_cam_A": 1000 * (bce(cam_b2a, torch.ones_like(cam_b2a)) + bce(cam_a2a, torch.zeros_like(cam_a2a))),
            "G_cam_B": 1000 * (bce(cam_a2b, torch.ones_like(cam_a2b)) + bce(cam_b2b, torch.zeros_like(cam_b2b))),
            "G_cycle_A": 10 * (method.genB2A(fake_a2b)[0] - a).abs().mean(),
            "G_identity_A": 10 * (fake_a2a - a).abs().mean(),
        }
    losses = train_step(method, Batch(a, b), 0)
    for name, value in expected.items():
        assert losses[name] == pytest.approx(float(value), rel=1e-5), name


def test_discriminator_attention_uses_the_raw_weight_like_the_official_code() -> None:
    torch.manual_seed(0)
    discriminator = Discriminator(ndf=8, n_layers=4).eval()  # eval: spectral norm reuses its u, v
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        logits, cam_logit, _ = discriminator(x)
        discriminator.gap_fc.weight_orig.mul_(2.0)  # sigma doubles: the normalised weight is unchanged
        logits2, cam_logit2, _ = discriminator(x)
    assert torch.allclose(cam_logit, cam_logit2, atol=1e-6)
    assert not torch.allclose(logits, logits2)  # the map was re-weighted by the doubled raw weight


def test_learning_rate_is_constant_then_decays_linearly_to_zero() -> None:
    method = _tiny()
    assert method.lr_factor(0, 100) == 1.0 and method.lr_factor(49, 100) == 1.0  # iterations 1..50
    assert method.lr_factor(50, 100) == pytest.approx(0.98)  # iteration 51: lr - lr / 50
    assert method.lr_factor(99, 100) == 0.0
    set_learning_rates(method, 74, 100)
    assert method.optimizers()["D"].param_groups[0]["lr"] == pytest.approx(method.config.lr * 0.5)
    assert _tiny(decay_lr=False).lr_factor(99, 100) == 1.0


def test_same_seed_reproduces_and_another_seed_differs() -> None:
    def trained(seed: int) -> UGATIT:
        torch.manual_seed(seed)
        method = _tiny(batch_size=2)
        for step in range(3):
            train_step(method, _batch(32, 2, seed=step), step)
        return method

    first, second, other = trained(0), trained(0), trained(1)
    for net in first.networks:
        for key, value in first.network_state()[net].items():
            assert torch.equal(value, second.network_state()[net][key]), f"{net}.{key}"
    assert not torch.equal(first.genA2B.FC[0].weight, other.genA2B.FC[0].weight)
    x = _batch(32, 2, seed=9).a
    out = first.translate(x, "b2a", generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, second.translate(x, "b2a", generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(out, other.translate(x, "b2a"))


@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_tiny_trains_20_steps_through_the_training_loop(toyfaces_small, tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = _tiny(batch_size=2)
    before = {k: v.clone() for k, v in method.genA2B.state_dict().items()}
    seen: dict[int, dict[str, float]] = {}
    plan = TrainPlan(20, batch_size=2, seed=3, checkpoint_every=100, sample_every=100, log_every=5)
    result = train(
        method,
        toyfaces_small,
        plan,
        tmp_path,
        Accelerator(cpu=True),
        {"test": True},
        on_losses=lambda step, losses: seen.__setitem__(step, losses),
    )
    assert result.steps == 20 and sorted(seen) == list(range(20))
    assert all(math.isfinite(v) for losses in seen.values() for v in losses.values())
    assert result.sample_grid is not None and result.sample_grid.is_file()
    payload = torch.load(result.checkpoint, weights_only=True)
    assert set(payload["networks"]) == set(UGATIT.networks) and payload["method"] == "ugatit"
    assert any(not torch.equal(v, before[k]) for k, v in method.genA2B.state_dict().items())
