"""`python -m bench translate` with released checkpoints in the authors' file layouts, made by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.__main__ import main
from bench.data.images import float_to_uint8, uint8_to_float
from bench.registry import METHODS
from methods.base import Method


def _official_layout(method: Method, folder: Path) -> Path:
    """Write `method`'s translation weights as its authors release them; returns what --official takes."""
    folder.mkdir(parents=True)
    states = method.network_state()
    if method.name == "cyclegan":
        torch.save(states["G_A"], folder / "latest_net_G_A.pth")
        torch.save(states["G_B"], folder / "latest_net_G_B.pth")
        torch.save(states["D_A"], folder / "latest_net_D_A.pth")
    elif method.name == "ugatit":
        for step in (1000, 2000):  # the newest is picked from a results folder
            torch.save(states if step == 2000 else {}, folder / f"selfie2anime_params_{step:07d}.pt")
    elif method.name == "stargan_v2":
        net = ("generator", "mapping_network", "style_encoder")
        torch.save({n: states[f"{n}_ema"] for n in net}, folder / "100000_nets_ema.ckpt")
        torch.save({"generator": {"param_groups": []}}, folder / "100000_optims.ckpt")  # ignored in a folder
    elif method.name == "gnr":
        torch.save({"G_A2B_ema": states["G_A2B_ema"], "G_B2A_ema": states["G_B2A_ema"]}, folder / "GNR_checkpoint.pt")
    elif method.name == "council":  # the released files are official b2a, which is this harness's a2b
        for i, member in enumerate(method.gen_a2b):
            torch.save({"b2a": member.state_dict()}, folder / f"b2a_gen_{i}_01000000.pt")
    return folder


def _inputs(folder: Path, size: int, n: int = 3) -> torch.Tensor:
    folder.mkdir(parents=True)
    images = torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"face_{i}.png")
    return images


@pytest.mark.parametrize("name", ["cyclegan", "ugatit", "stargan_v2", "council", "gnr"])
def test_translate_writes_what_the_released_weights_translate(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    released = METHODS.get(name).from_preset("tiny").eval()
    official = _official_layout(released, tmp_path / "official")
    size = released.config.image_size
    images = _inputs(tmp_path / "in", size)
    args = ["translate", "--method", name, "--official", str(official), "--preset", "tiny", "--seed", "5"]
    assert main([*args, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
    with torch.no_grad():
        expected = released.translate(uint8_to_float(images), "a2b", generator=torch.Generator().manual_seed(5))
    for i, want in enumerate(float_to_uint8(expected)):
        got = np.array(Image.open(tmp_path / "out" / f"face_{i}.png"))
        assert np.array_equal(got, want.permute(1, 2, 0).numpy()), f"{name}: face_{i}.png"


def test_translate_refuses_what_it_cannot_do_faithfully(tmp_path: Path, capsys) -> None:
    torch.manual_seed(1)
    released = METHODS.get("cyclegan").from_preset("tiny")
    folder = tmp_path / "only_a"
    folder.mkdir()
    torch.save(released.G_A.state_dict(), folder / "latest_net_G_A.pth")
    _inputs(tmp_path / "in", released.config.image_size)
    base = ["translate", "--method", "cyclegan", "--preset", "tiny", "--input", str(tmp_path / "in")]

    # A direction whose generator the files do not hold would translate with random weights.
    assert main([*base, "--official", str(folder), "--output", str(tmp_path / "out"), "--direction", "b2a"]) == 2
    assert "no weights for G_B" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    # Existing outputs are kept unless --overwrite.
    assert main([*base, "--official", str(folder), "--output", str(tmp_path / "out")]) == 0
    before = (tmp_path / "out" / "face_0.png").read_bytes()
    assert main([*base, "--official", str(folder), "--output", str(tmp_path / "out"), "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "face_0.png").read_bytes() == before

    # A file that is not a safe weights file: one line that says what to supply, no unsafe advice.
    (tmp_path / "notes.pth").write_text("not weights")
    assert main([*base, "--official", str(tmp_path / "notes.pth"), "--output", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "loads safely" in err and "weights_only=False" not in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--official", str(tmp_path / "missing"), "--output", str(tmp_path / "o3")]) == 2
    assert "holds no released cyclegan file" in capsys.readouterr().err
