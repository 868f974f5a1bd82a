"""CycleGAN against the official manifests, official checkpoint loading, schedule and image pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.official import load_official
from bench.train import set_learning_rates, train_step
from methods.base import Batch
from methods.cyclegan import CycleGAN, ImagePool

MANIFESTS = Path(__file__).parent / "manifests"


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"cyclegan__{name}.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def paper() -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN.from_preset("paper")


def test_paper_generator_matches_the_official_manifest(paper: CycleGAN) -> None:
    manifest = _manifest("G")
    assert _shapes(paper.G_A) == manifest["tensors"]  # same keys, same order, same shapes
    assert list(_shapes(paper.G_A)) == list(manifest["tensors"])
    assert paper.parameter_counts()["G_A"] == manifest["params"] == 11_378_179


def test_paper_discriminator_matches_the_official_manifest(paper: CycleGAN) -> None:
    manifest = _manifest("D")
    assert _shapes(paper.D_A) == manifest["tensors"]
    assert paper.parameter_counts()["D_A"] == manifest["params"] == 2_764_737


def test_paper_preset_runs_a_step_at_small_size(paper: CycleGAN) -> None:

    x = torch.rand(1, 3, 64, 64) * 2 - 1
    losses = train_step(paper, Batch(x, x), 0)
    assert set(losses) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B"}
    assert paper.translate(x).shape == x.shape


def test_paper_128_preset_uses_six_blocks() -> None:
    config = CycleGAN.Config.preset("paper_128")
    assert (config.n_blocks, config.image_size) == (6, 128)


def _official_file(tmp_path: Path, name: str, legacy: bool) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint in the official layout: random values under the manifest's keys and shapes."""
    manifest = _manifest("G_legacy_instancenorm_stats" if legacy else "G")
    generator = torch.Generator().manual_seed(7)
    state = {
        k: torch.randn(shape, generator=generator) if shape else torch.tensor(3)
        for k, shape in manifest["tensors"].items()
    }
    path = tmp_path / name
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy-running-stats"])
def test_load_official_generator(tmp_path: Path, paper: CycleGAN, legacy: bool) -> None:
    path, state = _official_file(tmp_path, "latest_net_G_A.pth", legacy)
    assert torch.load(path, weights_only=True)  # the official files load without unpickling code
    load_official(paper, str(path))
    for key, value in paper.G_A.state_dict().items():
        assert torch.equal(value, state[key])
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(paper.translate(x, "a2b"), paper.G_A(x))


def test_load_official_routes_by_name_and_directory(tmp_path: Path, paper: CycleGAN) -> None:
    _, state_b = _official_file(tmp_path, "latest_net_G_B.pth", legacy=False)
    load_official(paper, str(tmp_path / "latest_net_G_B.pth"))
    assert torch.equal(paper.G_B.state_dict()["model.1.weight"], state_b["model.1.weight"])
    load_official(paper, str(tmp_path))  # a directory of latest_net_*.pth files
    with pytest.raises(FileNotFoundError):
        load_official(paper, str(tmp_path / "empty-dir-does-not-exist"))


def test_load_official_explains_a_mismatch(tmp_path: Path) -> None:
    tiny = CycleGAN.from_preset("tiny")
    path, _ = _official_file(tmp_path, "horse2zebra.pth", legacy=False)
    with pytest.raises(ValueError, match="shape mismatch.*preset"):
        load_official(tiny, str(path))


def test_learning_rate_is_constant_then_decays_linearly() -> None:
    method = CycleGAN.from_preset("tiny")  # decay starts halfway
    assert method.lr_factor(0, 100) == 1.0 and method.lr_factor(49, 100) == 1.0
    assert method.lr_factor(75, 100) == pytest.approx(0.5)
    assert method.lr_factor(100, 100) == pytest.approx(0.0)
    set_learning_rates(method, 75, 100)
    assert method.optimizers()["G"].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_image_pool_returns_history_and_restores() -> None:
    def rng(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, rng(0)), first)  # filling: images pass through
    later = torch.full((64, 1, 1, 1), 9.0)
    out = pool.query(later, rng(1))
    assert (out != 9.0).any() and (out == 9.0).any()  # some old fakes are swapped in
    saved = pool.state()
    a = pool.query(later, rng(2))
    clone = ImagePool(4)
    clone.load_state(saved)
    assert torch.equal(clone.query(later, rng(2)), a)  # same contents and random stream, same choices
    assert torch.equal(ImagePool(0).query(first, rng(0)), first)
