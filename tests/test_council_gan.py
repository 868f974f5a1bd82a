"""Council GAN against the official manifests, official checkpoint loading, training, schedules and sampling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.official import load_official
from bench.train import Checkpointer, TrainPlan, train, train_step
from methods.base import Batch, ConfigError
from methods.council_gan import CouncilGAN, council_comparisons, random_grayscale

MANIFESTS = Path(__file__).parent / "manifests"
OFFICIAL_PARAMS = {"gen": 17_404_236, "dis": 5_514_114, "dis_council": 6_040_194}


def _manifest(role: str) -> dict:
    return json.loads((MANIFESTS / f"council_gan__{role}_b2a.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _official_state(role: str, offset: float = 0.0) -> dict[str, torch.Tensor]:
    """Random values under the manifest's keys and shapes, as an official snapshot holds them."""
    generator = torch.Generator().manual_seed(7)
    return {
        k: torch.randn(shape, generator=generator) * 0.05 + offset for k, shape in _manifest(role)["tensors"].items()
    }


def _save_official(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"b2a": state}, path)  # the official layout: one key naming the direction
    return path


def _tiny(seed: int = 0, **overrides) -> CouncilGAN:
    torch.manual_seed(seed)
    values = {"image_size": 32, "load_size": 32, "batch_size": 2, "council_start_at_iter": 2}
    return CouncilGAN.from_preset("tiny", **{**values, **overrides})


def _batch(seed: int, size: int = 32, n: int = 2) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    a, b = (torch.rand(n, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
    return Batch(a, b)


@pytest.fixture(scope="module")
def paper() -> CouncilGAN:
    torch.manual_seed(0)
    return CouncilGAN.from_preset("paper")


# -- the paper preset and the official files ----------------------------------------------------------------
@pytest.mark.parametrize("role", ["gen", "dis", "dis_council"])
def test_paper_member_networks_match_the_official_manifests(paper: CouncilGAN, role: str) -> None:
    manifest = _manifest(role)
    member = getattr(paper, f"{role}_a2b")[0]
    assert _shapes(member) == manifest["tensors"]
    assert list(_shapes(member)) == list(manifest["tensors"])  # same order too
    assert sum(p.numel() for p in member.parameters()) == manifest["params"] == OFFICIAL_PARAMS[role]
    assert sorted(dict(member.named_buffers())) == sorted(manifest.get("buffers", []))  # the dummy AdaIN stats
    counts = paper.parameter_counts()
    assert counts[f"{role}_a2b"] == 4 * OFFICIAL_PARAMS[role] and counts[f"{role}_b2a"] == 0


def test_paper_preset_is_the_official_one_way_council(paper: CouncilGAN) -> None:
    c = paper.config
    assert (c.council_size, c.image_size, c.batch_size, c.gan_w, c.council_w) == (4, 256, 3, 26.0, 6.0)
    assert (c.council_start_at_iter, c.less_style_by, c.loss_matching_hist_size, c.mask_init) == (1000, 0.7, 100, None)
    assert paper.directions == ("a2b",)
    assert sorted(paper.optimizers()) == sorted(f"{r}_{i}" for r in ("gen", "dis", "dis_council") for i in range(4))
    group = paper.optimizers()["gen_0"].param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.5, 0.999), 1e-4)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with pytest.raises(ValueError, match="trains only"):
        paper.translate(x, "b2a")


def test_paper_preset_runs_a_council_step_at_small_size(paper: CouncilGAN) -> None:
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    before = paper.gen_a2b[3].dec.model[9].conv.weight.clone()
    losses = train_step(paper, Batch(x, x.flip(3)), 1000)  # the council is on from 1,000
    assert {"D_a2b", "council_D_a2b", "G_adv_a2b", "G_council_a2b", "loss_match_a2b"} == set(losses)
    assert all(math.isfinite(v) for v in losses.values())
    assert not torch.equal(before, paper.gen_a2b[3].dec.model[9].conv.weight)  # every member is trained
    assert paper.translate(x, generator=torch.Generator().manual_seed(0)).shape == x.shape


def test_load_official_generator_file(tmp_path: Path, paper: CouncilGAN) -> None:
    state = _official_state("gen")
    path = _save_official(tmp_path / "b2a_gen_2_01000000.pt", state)
    assert torch.load(path, weights_only=True)  # loads without unpickling code
    load_official(paper, str(path))  # official b2a (face -> anime on the swapped copy) is our a2b
    for key, value in paper.gen_a2b[2].state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    style = paper.sample_style(2, "a2b", torch.Generator().manual_seed(1))
    expected = paper.gen_a2b[2](x, [style])[0].clamp(-1, 1)
    assert torch.allclose(paper.translate(x, style=style, member=2), expected)
    with pytest.raises(ValueError, match="trains only"):
        load_official(paper, str(path), direction="b2a")


def test_load_official_directory_and_checkpoint_prefix(tmp_path: Path, paper: CouncilGAN) -> None:
    base = _official_state("gen")
    for i in range(4):
        _save_official(tmp_path / f"b2a_gen_{i}_01000000.pt", {k: v + i for k, v in base.items()})
    _save_official(tmp_path / "b2a_dis_1_01000000.pt", _official_state("dis"))
    load_official(paper, str(tmp_path))
    weight = "dec.model.9.conv.weight"
    assert all(torch.equal(paper.gen_a2b[i].state_dict()[weight], base[weight] + i) for i in range(4))
    assert torch.equal(paper.dis_a2b[1].state_dict()["cnns.0.4.weight"], _official_state("dis")["cnns.0.4.weight"])
    paper.gen_a2b[0].dec.model[9].conv.weight.data.zero_()
    load_official(paper, str(tmp_path / "01000000"))  # the official --checkpoint <dir>/<iteration> form
    assert torch.equal(paper.gen_a2b[0].state_dict()[weight], base[weight])
    (tmp_path / "b2a_gen_3_01000000.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"members \[3\]"):
        load_official(paper, str(tmp_path))


def test_load_official_explains_a_mismatch(tmp_path: Path) -> None:
    path = _save_official(tmp_path / "b2a_gen_0_01000000.pt", _official_state("gen"))
    with pytest.raises(ValueError, match="shape mismatch.*preset"):
        load_official(_tiny(), str(path))


# -- training -------------------------------------------------------------------------------------------------
@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_tiny_trains_twenty_steps_in_the_harness(toyfaces_small, tmp_path: Path) -> None:
    seen: dict[int, dict[str, float]] = {}
    method = _tiny(council_start_at_iter=5, loss_matching_hist_size=4)
    plan = TrainPlan(20, batch_size=2, seed=3, checkpoint_every=100, sample_every=100, log_every=1)
    result = train(
        method, toyfaces_small, plan, tmp_path, Accelerator(cpu=True), {"test": True}, on_losses=seen.__setitem__
    )
    assert sorted(seen) == list(range(20)) and result.steps == 20
    assert all(math.isfinite(v) for losses in seen.values() for v in losses.values())
    assert "G_council_b2a" not in seen[4] and "G_council_b2a" in seen[5]  # the council starts at step 5
    payload = Checkpointer.load(result.checkpoint)
    assert payload["train_state"]["council_history"].shape == (2, 2, 4)
    assert not torch.equal(payload["train_state"]["council_history"], torch.ones(2, 2, 4))
    assert result.sample_grid is not None and result.sample_grid.is_file()


def test_same_seed_same_weights() -> None:
    """Resuming is tested through the harness for every method (tests/test_train.py), RNG and all."""
    a, b = _tiny(seed=0), _tiny(seed=0)
    for method in (a, b):
        torch.manual_seed(5)
        for step in range(3):
            train_step(method, _batch(step), step)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_loss_matching_uses_the_histories_and_schedules_follow_the_step() -> None:
    method = _tiny(council_start_at_iter=1, loss_matching_hist_size=3)
    torch.manual_seed(0)
    train_step(method, _batch(0), 0)
    assert torch.equal(method.council_history, torch.ones_like(method.council_history))  # council still off
    losses = train_step(method, _batch(1), 1)
    gan, council = method.gan_history, method.council_history  # (direction, member, history)
    assert losses["G_adv_a2b"] == pytest.approx(float(gan[0, :, -1].mean()), rel=1e-5)
    assert losses["G_council_b2a"] == pytest.approx(float(council[1, :, -1].mean()), rel=1e-5)
    ratio = (gan[0].mean(1) / council[0].mean(1)).mean()  # mean(last GAN losses) / mean(last council losses)
    assert losses["loss_match_a2b"] == pytest.approx(float(ratio), rel=1e-5)
    assert float(gan[0, 0, 0]) == 1.0  # histories start as ones and keep their length
    paper_like = _tiny(council_start_at_iter=1000)  # the paper's schedules on a small model
    assert (paper_like.config.lr_step_size, paper_like.config.lr_gamma) == (100_000, 0.5)
    assert [paper_like.lr_factor(s, 10**6) for s in (0, 99_999, 100_000, 250_000)] == [1.0, 1.0, 0.5, 0.25]
    assert (paper_like.council_active(999), paper_like.council_active(1000)) == (False, True)


def test_council_discriminator_compares_every_other_member_first() -> None:
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        picks = council_comparisons(1, 4, 4, rng)
        assert len(picks) == 4 and sorted(picks[:3]) == [0, 2, 3] and picks[3] in (0, 2, 3)
    assert council_comparisons(0, 2, 4, rng) == [1, 1]  # the official loop stops after council_size comparisons


# -- inference ------------------------------------------------------------------------------------------------
def test_translation_is_seeded_and_varies_with_style_and_member() -> None:
    method = _tiny(mask_init=None).eval()  # official init: masks open, so styles and members show
    x = torch.rand(3, 3, 32, 32) * 2 - 1

    def run(seed: int, **kwargs) -> torch.Tensor:
        return method.translate(x, "b2a", generator=torch.Generator().manual_seed(seed), **kwargs)

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    style = method.sample_style(3, "b2a", torch.Generator().manual_seed(0))
    assert style.shape == (3, 8, 1, 1)
    other = method.sample_style(3, "b2a", torch.Generator().manual_seed(1))
    assert not torch.allclose(
        method.translate(x, "b2a", style=style, member=0), method.translate(x, "b2a", style=other, member=0)
    )
    assert not torch.allclose(
        method.translate(x, "b2a", style=style, member=0), method.translate(x, "b2a", style=style, member=1)
    )
    with pytest.raises(ValueError, match="reference"):
        method.translate(x, "b2a", reference=x)


def test_translate_many_gives_members_times_styles() -> None:
    method = _tiny(mask_init=None).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    many = method.translate_many(x, "a2b", 3, generator=torch.Generator().manual_seed(0))
    assert many.shape == (2, 3, 3, 32, 32) and not torch.equal(many[:, 0], many[:, 1])
    grid = method.translate_many(x, "a2b", 2, members=[0, 1], generator=torch.Generator().manual_seed(4))
    assert grid.shape == (2, 4, 3, 32, 32)
    style = method.sample_style(4, "a2b", torch.Generator().manual_seed(4)).view(2, 2, -1)
    assert torch.allclose(grid[:, 3], method.translate(x, "a2b", style=style[:, 1], member=1))


def test_decoder_blends_its_proposals_over_the_input_image() -> None:
    generator = _tiny().gen_a2b[0].eval()
    head = generator.dec.model[-1].conv  # 3 RGB proposals, then 3 mask logits
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    style = [torch.randn(2, 8, 1, 1)]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-5.0)  # masks (tanh(10 tanh(-5)) + 1) / 2 = 0: the input passes through
        assert torch.allclose(generator(x, style)[0], x, atol=1e-6)
        head.bias[9:].fill_(5.0)  # masks 1: the last proposal, tanh(-5), covers everything
        assert torch.allclose(generator(x, style)[0], torch.full_like(x, math.tanh(-5.0)), atol=1e-6)


def test_mask_init_starts_from_the_input_image() -> None:
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    closed = _tiny(mask_init=-0.3).translate(x, "a2b", generator=torch.Generator().manual_seed(0))
    official = _tiny(mask_init=None).translate(x, "a2b", generator=torch.Generator().manual_seed(0))
    assert (closed - x).abs().max() < 0.05  # masks ~0.003: the input passes through
    assert (official - x).abs().mean() > 0.1  # kaiming-initialised masks cover much of the image


def test_config_and_augmentation_checks() -> None:
    with pytest.raises(ConfigError, match="directions"):
        CouncilGAN.Config.preset("tiny", directions=("a2c",))
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    rng = torch.Generator().manual_seed(0)
    grey = random_grayscale(x, 1.0, rng)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert torch.equal(random_grayscale(x, 0.0, rng), x)
