"""StarGAN v2 against the official manifests, official checkpoint loading, losses, EMA, styles and training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.official import load_official
from bench.train import Checkpointer, TrainPlan, train, train_step
from methods.base import Batch
from methods.stargan_v2 import StarGANv2, crop_box, random_resized_crop

MANIFESTS = Path(__file__).parent / "manifests"
OFFICIAL_PARAMS = {
    "generator": 33_892_995,
    "mapping_network": 2_438_272,
    "style_encoder": 20_916_928,
    "discriminator": 20_852_290,
}
EMA_FILE = {"generator": "generator", "mapping_network": "mapping_network", "style_encoder": "style_encoder"}
HPF_KERNEL = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])  # official, / w_hpf


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"stargan_v2__{name}.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _official_file(
    tmp_path: Path, name: str, manifests: dict[str, str], drop: tuple[str, ...] = (), random: bool = True
) -> Path:
    """A file in the official layout: {network: state_dict} under the manifests' keys and shapes.

    Values are small random numbers, or one shared zero (a stride-0 view: a small file) where only the
    layout matters.
    """
    generator = torch.Generator().manual_seed(7)

    def value(shape: list[int]) -> torch.Tensor:
        return 0.05 * torch.randn(shape, generator=generator) if random else torch.zeros(()).expand(shape)

    checkpoint = {}
    for network, manifest in manifests.items():
        tensors = _manifest(manifest)["tensors"]
        state = {k: value(shape) for k, shape in tensors.items() if k not in drop}
        if "hpf.filter" in state:
            state["hpf.filter"] = HPF_KERNEL / 1.0  # w_hpf = 1
        checkpoint[network] = state
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


def _tiny(seed: int = 0, **overrides: object) -> StarGANv2:
    torch.manual_seed(seed)
    return StarGANv2.from_preset("tiny", **{"image_size": 32, "load_size": 32, **overrides})


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def paper() -> StarGANv2:
    torch.manual_seed(0)
    return StarGANv2.from_preset("paper")


# -- architecture ---------------------------------------------------------------------------------
@pytest.mark.parametrize("network", list(OFFICIAL_PARAMS))
def test_paper_network_matches_the_official_manifest(paper: StarGANv2, network: str) -> None:
    manifest = _manifest(network)
    assert _shapes(getattr(paper, network)) == manifest["tensors"]
    assert list(_shapes(getattr(paper, network))) == list(manifest["tensors"])  # state_dict order too
    assert paper.parameter_counts()[network] == manifest["params"] == OFFICIAL_PARAMS[network]
    if network != "discriminator":  # the EMA copy has the same layout and is never trained by an optimiser
        ema = getattr(paper, f"{network}_ema")
        assert _shapes(ema) == manifest["tensors"]
        assert not any(p.requires_grad for p in ema.parameters())


def test_paper_optimisers_use_the_official_settings(paper: StarGANv2) -> None:
    optimizers = paper.optimizers()
    assert set(optimizers) == {"generator", "mapping_network", "style_encoder", "discriminator"}
    lrs = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    assert lrs == {"generator": 1e-4, "mapping_network": 1e-6, "style_encoder": 1e-4, "discriminator": 1e-4}
    for opt in optimizers.values():
        assert opt.param_groups[0]["betas"] == (0.0, 0.99) and opt.param_groups[0]["weight_decay"] == 1e-4
    assert paper.lr_factor(99_999, 100_000) == 1.0  # constant learning rate


def test_paper_preset_runs_a_step_at_small_size() -> None:
    torch.manual_seed(0)
    method = StarGANv2.from_preset("paper", image_size=64, load_size=64)  # paper widths, 64 px
    x = _images(1, 64, 0)
    losses = train_step(method, Batch(x, _images(1, 64, 1)), 0)
    for mode in ("latent", "ref"):
        assert {f"D_{mode}_{k}" for k in ("real", "fake", "reg")} <= set(losses)
        assert {f"G_{mode}_{k}" for k in ("adv", "sty", "ds", "cyc")} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["G_ref_ds"] == 0.0  # batch 1: both references are the same image
    assert method.translate(x, "b2a", generator=torch.Generator().manual_seed(0)).shape == x.shape


# -- official checkpoints -------------------------------------------------------------------------
def test_load_official_ema_file_and_translate(tmp_path: Path, paper: StarGANv2) -> None:
    path = _official_file(tmp_path, "100000_nets_ema.ckpt", EMA_FILE)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code in the layout
    load_official(paper, str(path))
    for network in EMA_FILE:  # into the trained networks and their EMA copies
        for module in (getattr(paper, network), getattr(paper, f"{network}_ema")):
            assert all(torch.equal(v, checkpoint[network][k]) for k, v in module.state_dict().items())
    x, reference = _images(1, 64, 0), _images(1, 256, 1)  # G is fully convolutional; E needs 256 px
    out = paper.translate(x, "a2b", reference=reference)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() <= 1
    with torch.no_grad():  # reference-guided a2b: the EMA style encoder's head of domain B (1)
        expected = paper.generator_ema(x, paper.style_encoder_ema(reference, torch.tensor([1]))).clamp(-1, 1)
    assert torch.equal(out, expected)


def test_load_official_training_file_with_discriminator(tmp_path: Path, paper: StarGANv2) -> None:
    path = _official_file(tmp_path, "100000_nets.ckpt", {**EMA_FILE, "discriminator": "discriminator"}, random=False)
    checkpoint = torch.load(path, weights_only=True)
    state = {k: torch.randn(v.shape) for k, v in checkpoint["discriminator"].items()}  # distinct values to compare
    torch.save({**checkpoint, "discriminator": state}, path)
    load_official(paper, str(path))
    assert all(torch.equal(v, state[k]) for k, v in paper.discriminator.state_dict().items())
    assert not paper.generator_ema.state_dict()["from_rgb.weight"].any()  # the (zero) generator went in too


def test_load_official_names_a_different_domain_count(tmp_path: Path, paper: StarGANv2) -> None:
    files = {"generator": "generator", "mapping_network": "mapping_network_nd3_afhq"}
    manifests = {**files, "style_encoder": "style_encoder_nd3_afhq"}
    path = _official_file(tmp_path, "afhq_nets_ema.ckpt", manifests, random=False)
    with pytest.raises(ValueError, match="checkpoint has 3 domains, this config has 2") as error:
        load_official(paper, str(path))
    assert "shape mismatch" not in str(error.value)


@pytest.mark.parametrize("with_filter", [True, False], ids=["hpf-buffer", "released-without-buffer"])
def test_load_official_names_a_high_pass_generator(tmp_path: Path, paper: StarGANv2, with_filter: bool) -> None:
    # The released CelebA-HQ generator predates the hpf.filter buffer: the extra block must give it away.
    drop = () if with_filter else ("hpf.filter",)
    manifests = {**EMA_FILE, "generator": "generator_whpf1_celebahq"}
    path = _official_file(tmp_path, "celeba_nets_ema.ckpt", manifests, drop, random=False)
    expected = r"w_hpf=1 \(has hpf.filter" if with_filter else r"w_hpf>0 \(has hpf.filter"
    with pytest.raises(ValueError, match=expected + r".*this config has w_hpf=0"):
        load_official(paper, str(path))


def test_load_official_rejects_other_files(tmp_path: Path) -> None:
    tiny = _tiny()
    paper_file = _official_file(tmp_path, "paper_nets_ema.ckpt", EMA_FILE, random=False)
    with pytest.raises(ValueError, match=r"\[generator\] does not fit.*preset"):  # widths differ
        load_official(tiny, str(paper_file))
    torch.save({"generator": {}, "mapping_network": {}}, tmp_path / "partial.ckpt")
    with pytest.raises(ValueError, match="not a StarGAN v2"):
        load_official(tiny, str(tmp_path / "partial.ckpt"))
    optim_state = {"state": {}, "param_groups": []}
    torch.save({k: optim_state for k in EMA_FILE}, tmp_path / "100000_optims.ckpt")
    with pytest.raises(ValueError, match="optimiser states"):
        load_official(tiny, str(tmp_path / "100000_optims.ckpt"))


# -- styles and translation -----------------------------------------------------------------------
def test_same_seed_same_output_and_different_styles_differ() -> None:
    method = _tiny()
    x = _images(3, 32, 0)
    first = method.translate(x, "a2b", generator=torch.Generator().manual_seed(5))
    again = method.translate(x, "a2b", generator=torch.Generator().manual_seed(5))
    other = method.translate(x, "a2b", generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert (first - other).abs().mean() > 1e-3
    style = method.sample_style(3, "a2b", torch.Generator().manual_seed(5))
    assert style.shape == (3, method.config.style_dim)
    assert torch.equal(method.translate(x, "a2b", style=style), first)
    z = torch.randn(3, method.config.latent_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # a2b draws from the mapping head of domain B, b2a from that of A
        assert torch.equal(style, method.mapping_network_ema(z, torch.ones(3, dtype=torch.long)))
        b2a = method.sample_style(3, "b2a", torch.Generator().manual_seed(5))
        assert torch.equal(b2a, method.mapping_network_ema(z, torch.zeros(3, dtype=torch.long)))


def test_reference_guided_translation() -> None:
    method = _tiny()
    x = _images(2, 32, 0)
    refs = _images(2, 32, 1)
    out = method.translate(x, "b2a", reference=refs)
    assert (out - method.translate(x, "b2a", reference=_images(2, 32, 2))).abs().mean() > 1e-3
    one = method.translate(x, "b2a", reference=refs[:1])  # one reference styles the whole batch
    torch.testing.assert_close(one[0], out[0])
    assert (one[1] - out[1]).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="need 1 or 2"):
        method.translate(x, "b2a", reference=_images(3, 32, 3))


# -- training -------------------------------------------------------------------------------------
def test_diversity_weight_decays_linearly_as_a_function_of_the_step() -> None:
    method = _tiny(ds_iter=100)
    assert [method.lambda_ds_at(s) for s in (0, 50, 100, 150)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    x = _images(2, 32, 0)
    losses = train_step(method, Batch(x, x.flip(0)), 75)
    assert losses["lambda_ds"] == pytest.approx(0.25)
    assert method.config.lambda_ds == 1.0 and method.lambda_ds_at(0) == 1.0  # the config is never mutated


def test_ema_follows_the_trained_networks() -> None:
    method = _tiny()
    beta = method.config.ema_beta
    ema_before = {k: v.clone() for k, v in method.generator_ema.state_dict().items()}
    x = _images(2, 32, 0)
    train_step(method, Batch(x, x.flip(0)), 0)
    trained = method.generator.state_dict()
    for key, value in method.generator_ema.state_dict().items():
        torch.testing.assert_close(value, beta * ema_before[key] + (1 - beta) * trained[key])
    assert not torch.equal(method.generator_ema.state_dict()["from_rgb.weight"], ema_before["from_rgb.weight"])


def test_same_torch_seed_gives_identical_weights() -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        method = _tiny(seed)
        x = _images(2, 32, 0)
        for step in range(3):
            train_step(method, Batch(x, x.flip(0)), step)
        return {f"{n}.{k}": v for n, state in method.network_state().items() for k, v in state.items()}

    first, second, other = run(0), run(0), run(1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_random_resized_crop_follows_its_generator() -> None:
    x = _images(4, 32, 0)
    assert torch.equal(random_resized_crop(x, 0.0, torch.Generator().manual_seed(3)), x)
    cropped = random_resized_crop(x, 1.0, torch.Generator().manual_seed(3))
    assert cropped.shape == x.shape and all(not torch.equal(c, i) for c, i in zip(cropped, x))
    assert torch.equal(random_resized_crop(x, 1.0, torch.Generator().manual_seed(3)), cropped)
    for seed in range(20):  # official scale 0.8-1.0 and ratio 0.9-1.1
        top, left, height, width = crop_box(256, 256, torch.Generator().manual_seed(seed))
        assert 0.8 * 256**2 - 600 <= height * width <= 256**2 and 0.88 <= width / height <= 1.12
        assert 0 <= top <= 256 - height and 0 <= left <= 256 - width


def _plan(steps: int, checkpoint_every: int = 100) -> TrainPlan:
    return TrainPlan(steps, batch_size=2, seed=0, checkpoint_every=checkpoint_every, sample_every=100, log_every=5)


@pytest.mark.slow  # multi-step training or a paper-size step: the slow tier
def test_tiny_trains_through_the_harness(toyfaces_small, tmp_path: Path) -> None:
    method = _tiny()
    ema_before = {k: v.clone() for k, v in method.style_encoder_ema.state_dict().items()}
    seen: dict[int, dict[str, float]] = {}
    result = train(
        method,
        toyfaces_small,
        _plan(20),
        tmp_path,
        Accelerator(cpu=True),
        {"test": True},
        on_losses=lambda step, losses: seen.__setitem__(step, losses),
    )
    assert result.steps == 20 and sorted(seen) == list(range(20))
    assert all(math.isfinite(v) for losses in seen.values() for v in losses.values())
    assert seen[19]["lambda_ds"] < seen[0]["lambda_ds"] == 1.0
    assert any(not torch.equal(v, ema_before[k]) for k, v in method.style_encoder_ema.state_dict().items())
    payload = Checkpointer.load(result.checkpoint)
    assert set(payload["networks"]) == set(StarGANv2.networks)
    assert result.sample_grid is not None and result.sample_grid.is_file()


def test_resumed_run_equals_an_uninterrupted_one(toyfaces_small, tmp_path: Path) -> None:
    straight = _tiny()
    train(straight, toyfaces_small, _plan(4), tmp_path / "straight", Accelerator(cpu=True), {"test": True})

    class Interrupt(Exception):
        pass

    def crash(step: int, losses: dict[str, float]) -> None:
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        crashed = _tiny()
        train(crashed, toyfaces_small, _plan(4, 2), tmp_path / "crashed", Accelerator(cpu=True), {}, on_losses=crash)
    checkpoint = Checkpointer(tmp_path / "crashed" / "checkpoints").latest()
    resumed = _tiny(seed=99)  # different initial weights: everything must come from the checkpoint
    train(resumed, toyfaces_small, _plan(4, 2), tmp_path / "crashed", Accelerator(cpu=True), {}, checkpoint)
    a, b = straight.network_state(), resumed.network_state()
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])
