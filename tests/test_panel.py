"""The toyfaces reference panel: each translator behaves as the metric sanity suite assumes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from bench.data.folder import open_folder
from bench.data.images import to_uint8_tensor, uint8_to_float
from bench.data.toyfaces import STYLE_FACTORS, read_factors, render_face, sample_factors
from bench.evaluate.panel import PANEL_NAMES, STYLE_RANGES, reference_panel
from bench.registry import DATASETS

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("panel-data")
    return DATASETS.get("toyfaces").open(root, {"size": SIZE, "n_train": 20, "n_test": 10, "seed": 0})


@pytest.fixture(scope="module")
def panel(data):
    return {t.name: t for t in reference_panel(data)}


def _test_images(data, domain: str):
    """(images in [-1, 1], their factors) of the test split of `domain`."""
    image_set = data.split("test", domain)
    known = read_factors(data.root / f"test{domain}")
    return uint8_to_float(image_set.load_all(SIZE)), [known[p.name] for p in image_set.paths]


def _style_of(factors) -> torch.Tensor:
    return torch.tensor([[getattr(f, k) for k in STYLE_FACTORS] for f in factors], dtype=torch.float32)


def _render(f, domain: str, noise_seed: int = 0) -> torch.Tensor:
    return uint8_to_float(to_uint8_tensor(render_face(f, domain, SIZE, noise_seed)))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_panel_members_follow_the_protocol(panel, data):
    assert tuple(panel) == PANEL_NAMES
    for t in panel.values():
        assert list(t.parameters()) == []
        assert t.eval() is t
        assert t.config.image_size == data.image_size
        assert t.directions == ("a2b", "b2a")
        style = t.sample_style(3, "a2b", _gen(0))
        assert (style is None) == (not t.multimodal)
    assert not panel["identity"].multimodal
    assert panel["renderer"].multimodal and panel["style_collapsed"].multimodal


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_outputs_keep_shape_and_range(panel, data, direction):
    x, _ = _test_images(data, "A" if direction == "a2b" else "B")
    x = x[:4]
    for t in panel.values():
        y = t.translate(x, direction, generator=_gen(1))
        assert y.shape == x.shape and y.dtype == torch.float32, t.name
        assert y.min() >= -1 and y.max() <= 1, t.name


def test_bad_direction_and_shape_raise(panel, data):
    x, _ = _test_images(data, "A")
    for t in panel.values():
        with pytest.raises(ValueError, match="direction"):
            t.translate(x[:1], "a2a")
        with pytest.raises(ValueError, match="expected"):
            t.translate(x[:1, :, :16, :16], "a2b")


def test_renderer_recovers_content_and_renders_the_target_domain(panel, data):
    x, factors = _test_images(data, "A")
    y = panel["renderer"].translate(x, "a2b", style=_style_of(factors))
    expected = torch.stack([_render(f, "B") for f in factors])
    # domain B has no noise: only float32 rounding of the style factors may move a colour by a level
    assert (y - expected).abs().max() <= 2 / 127.5


def test_renderer_b2a_matches_the_photo_rendering_of_the_same_content(panel, data):
    x, factors = _test_images(data, "B")
    y = panel["renderer"].translate(x, "b2a", style=_style_of(factors))
    expected = torch.stack([_render(f, "A", noise_seed=12345) for f in factors])
    errors = (y - expected).abs().mean(dim=(1, 2, 3))
    # same content and style, only the sensor noise differs: far closer than another face would be
    other = (y - expected.roll(1, 0)).abs().mean(dim=(1, 2, 3))
    assert (errors < 0.05).all() and (errors < other / 3).all()


def test_renderer_flips_output_for_a_flipped_input(panel, data):
    x, factors = _test_images(data, "A")
    y = panel["renderer"].translate(x[:3].flip(-1), "a2b", style=_style_of(factors[:3]))
    expected = torch.stack([_render(f, "B").flip(-1) for f in factors[:3]])
    assert (y - expected).abs().max() <= 2 / 127.5


def test_renderer_takes_the_style_of_a_reference(panel, data):
    x, _ = _test_images(data, "A")
    references, ref_factors = _test_images(data, "B")
    renderer = panel["renderer"]
    by_reference = renderer.translate(x[:3], "a2b", reference=references[:3])
    by_style = renderer.translate(x[:3], "a2b", style=_style_of(ref_factors[:3]))
    assert torch.equal(by_reference, by_style)


def test_identity_returns_the_input(panel, data):
    x, _ = _test_images(data, "A")
    assert torch.equal(panel["identity"].translate(x, "a2b"), x)
    assert torch.equal(panel["identity"].translate(x, "b2a"), x)


def test_renderer_style_decides_the_output(panel, data):
    x, _ = _test_images(data, "A")
    x = x[:3]
    renderer = panel["renderer"]
    for direction in ("a2b", "b2a"):
        s1, s2 = renderer.sample_style(3, direction, _gen(1)), renderer.sample_style(3, direction, _gen(2))
        assert not torch.equal(renderer.translate(x, direction, style=s1), renderer.translate(x, direction, style=s2))
        assert torch.equal(renderer.translate(x, direction, style=s1), renderer.translate(x, direction, style=s1))
        # without a style, the generator decides it
        assert torch.equal(
            renderer.translate(x, direction, generator=_gen(7)), renderer.translate(x, direction, generator=_gen(7))
        )
        assert not torch.equal(
            renderer.translate(x, direction, generator=_gen(7)), renderer.translate(x, direction, generator=_gen(8))
        )


def test_style_collapsed_ignores_style(panel, data):
    x, _ = _test_images(data, "B")
    t = panel["style_collapsed"]
    for direction, inputs in (("b2a", x[:3]), ("a2b", _test_images(data, "A")[0][:3])):
        outputs = [
            t.translate(inputs, direction, style=t.sample_style(3, direction, _gen(s)), generator=_gen(s))
            for s in range(3)
        ]
        assert all(torch.equal(outputs[0], o) for o in outputs[1:])
        assert not torch.equal(outputs[0], panel["renderer"].translate(inputs, direction, generator=_gen(0)))


def test_style_resampled_changes_style_when_the_input_changes(panel, data):
    x, _ = _test_images(data, "A")
    t = panel["style_resampled"]
    style = t.sample_style(3, "a2b", _gen(0))
    first = t.translate(x[:3], "a2b", style=style, generator=_gen(5))
    assert torch.equal(first, t.translate(x[:3], "a2b", style=style, generator=_gen(5)))  # a pure function
    shifted = (x[:3] + 2 / 255).clamp(-1, 1)  # one grey level brighter: same content, same NN match
    assert not torch.equal(first, t.translate(shifted, "a2b", style=style, generator=_gen(5)))
    assert not torch.equal(first, panel["renderer"].translate(x[:3], "a2b", style=style))


def test_random_target_returns_train_images_of_the_target_domain(panel, data):
    x, _ = _test_images(data, "A")
    t = panel["random_target"]
    train_b = uint8_to_float(data.split("train", "B").load_all(SIZE))
    style = t.sample_style(len(x), "a2b", _gen(3))
    y = t.translate(x, "a2b", style=style)
    for image in y:
        assert any(torch.equal(image, candidate) for candidate in train_b)
    assert torch.equal(y, t.translate(x.flip(0), "a2b", style=style))  # content ignored, style decides
    distinct = {image.numpy().tobytes() for image in y}
    assert len(distinct) > len(x) // 2  # different styles pick different images (20 candidates)


def test_blur_and_colour_shift_degrade_the_renderer(panel, data):
    x, _ = _test_images(data, "A")
    style = panel["renderer"].sample_style(len(x), "a2b", _gen(0))
    clean = panel["renderer"].translate(x, "a2b", style=style)
    blurred = panel["renderer_blur"].translate(x, "a2b", style=style)
    shifted = panel["renderer_colour_shift"].translate(x, "a2b", style=style)

    def detail(y):
        return (y[..., 1:] - y[..., :-1]).abs().mean()

    assert detail(blurred) < 0.7 * detail(clean)
    assert shifted[:, 0].mean() > clean[:, 0].mean() + 0.1
    assert shifted[:, 2].mean() < clean[:, 2].mean() - 0.1


def test_sampled_styles_follow_the_dataset_distribution(panel):
    drawn = panel["renderer"].sample_style(4000, "a2b", _gen(0))
    rng = np.random.default_rng(0)
    real = [sample_factors(rng) for _ in range(4000)]
    for j, name in enumerate(STYLE_FACTORS):
        low, high = STYLE_RANGES[name]
        values = np.array([getattr(f, name) for f in real])
        assert low <= values.min() and values.max() <= high  # the ranges mirror sample_factors
        for sample in (values, drawn[:, j].numpy()):
            assert sample.min() >= low and sample.max() <= high
            assert abs(sample.mean() - (low + high) / 2) < 0.03 * (high - low)
            assert sample.max() - sample.min() > 0.98 * (high - low)


def test_non_toyfaces_data_raises_a_clear_error(data, tmp_path):
    root = tmp_path / "plain"
    shutil.copytree(data.root, root, ignore=shutil.ignore_patterns("factors.jsonl"))
    with pytest.raises(ValueError, match="factors.jsonl"):
        reference_panel(open_folder(root, "folder", SIZE))
