"""Hostile and malformed weights files and checkpoints, through every place the harness opens one.

A pickle whose `__reduce__` would run code (touch a marker file) is refused by every loader with one line that
says what the file is not and what to supply, and the marker never appears; torch's multi-line text, which
advises re-running with `weights_only=False`, never reaches the user. Files that are not state dicts (a list,
a tensor, text, zero bytes, a truncated archive) get the same one-line form, and a state dict with a tensor of
the wrong shape names the key and both shapes.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.__main__ import main
from bench.errors import BenchError, WeightsError
from bench.evaluate.cache import CacheKey, FeatureCache
from bench.inception_import import load_torchscript_state
from bench.official import read_state
from bench.registry import METHODS
from bench.train import Checkpointer, checkpoint_payload, harness_checkpoint, load_checkpoint
from bench.weights import resolve_weights

SMALL = ["--data-option", "size=32", "--data-option", "n_train=16", "--data-option", "n_test=8"]
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "add_safe_globals", "Traceback")


class RunsShell:
    """Unpickling this runs `touch <marker>` in a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class TouchesFile:
    """Unpickling this calls `Path.touch` on the marker (pickled as getattr(Path, 'touch'))."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _torch_saved_shell(path: Path, marker: Path) -> None:
    torch.save({"model.1.weight": RunsShell(marker)}, path)


def _pickled_shell(path: Path, marker: Path) -> None:  # a legacy (non-zip) file, as pickle.dump writes it
    path.write_bytes(pickle.dumps({"model.1.weight": RunsShell(marker)}, protocol=2))


def _torch_saved_touch(path: Path, marker: Path) -> None:
    torch.save(TouchesFile(marker), path)


HOSTILE: dict[str, Callable[[Path, Path], None]] = {
    "torch.save-os.system": _torch_saved_shell,
    "pickle-os.system": _pickled_shell,
    "torch.save-Path.touch": _torch_saved_touch,
}


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request, tmp_path: Path) -> tuple[Path, Path]:
    """(a crafted .pth whose unpickling would create the marker, the marker); the marker does not exist."""
    marker = tmp_path / "code-ran.marker"
    path = tmp_path / "latest_net_G_A.pth"  # a name bench.official maps onto CycleGAN's G_A
    HOSTILE[request.param](path, marker)
    assert not marker.exists()
    return path, marker


def _one_line_refusal(message: str, path: Path) -> str:
    message = message.removeprefix("error: ").strip()
    assert len(message.splitlines()) == 1, message
    assert f"{path} is not " in message and "; supply " in message, message  # translate prefixes the method
    assert not any(text in message for text in UNSAFE_ADVICE), message
    return message


def test_the_crafted_pickles_really_run_code_when_loaded_unsafely(tmp_path: Path) -> None:
    """The hostile files are what they claim: an unsafe load would run their code (here, in this test only)."""
    for name, write in HOSTILE.items():
        marker = tmp_path / f"{name}.marker"
        write(tmp_path / f"{name}.pth", marker)
        if name.startswith("pickle"):
            pickle.loads((tmp_path / f"{name}.pth").read_bytes())
        else:
            torch.load(tmp_path / f"{name}.pth", weights_only=False)  # what torch's advice would have one do
        assert marker.exists(), name


# -- (d) bench.official.read_state, and every other loader, called directly -----------------------------
LOADERS: dict[str, Callable[[Path], object]] = {
    "read_state": read_state,
    "weights vgg16": lambda p: resolve_weights("vgg16", str(p), allow_standin=True),
    "weights alexnet": lambda p: resolve_weights("alexnet", str(p), allow_standin=True),
    "weights inception": lambda p: resolve_weights("inception", str(p), allow_standin=True),
    "weights inception_torchvision": lambda p: resolve_weights("inception_torchvision", str(p), allow_standin=True),
    "harness_checkpoint": harness_checkpoint,
    "Checkpointer.load (resume)": Checkpointer.load,
    "load_checkpoint (eval)": lambda p: load_checkpoint(METHODS.get("cyclegan").from_preset("tiny"), str(p)),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_pickle_that_would_run_code_is_refused_by_every_loader(hostile, loader: str) -> None:
    path, marker = hostile
    with pytest.raises(BenchError) as raised:
        LOADERS[loader](path)
    message = _one_line_refusal(str(raised.value), path)
    assert "nothing from it ran" in message
    assert not marker.exists()


def test_a_pickle_in_a_torchscript_place_is_refused_in_one_line(hostile) -> None:
    path, marker = hostile
    with pytest.raises(WeightsError) as raised:
        load_torchscript_state(path)
    _one_line_refusal(str(raised.value), path)
    assert not marker.exists()


def test_a_planted_feature_cache_entry_is_recomputed_without_running_it(
    hostile, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, marker = hostile
    cache = FeatureCache(tmp_path / "cache")
    key = CacheKey("inception", "0" * 64, "pre", 32, "1" * 64)
    cache.root.mkdir()
    planted = cache.root / f"{key.digest()}.pt"
    planted.write_bytes(path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="bench.evaluate.cache"):
        assert torch.equal(cache.features(key, "set", lambda: torch.ones(2, 3)), torch.ones(2, 3))
    (warning,) = [r.getMessage() for r in caplog.records]
    _one_line_refusal(warning.removesuffix("; recomputing"), planted)
    assert cache.misses == 1 and not marker.exists()
    assert torch.equal(cache.features(key, "set", lambda: torch.zeros(2, 3)), torch.ones(2, 3))  # the rewrite


# -- (a)-(c) through the command line: exit 2, one line, the code never runs ----------------------------
def _images(folder: Path, size: int, n: int = 2) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (size, size), (40 * i, 90, 160)).save(folder / f"img_{i}.png")
    return folder


def _cli_refusal(capsys, argv: list[str], path: Path) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    return _one_line_refusal(captured.err, path)


def test_translate_official_refuses_a_pickle_that_would_run_code(hostile, tmp_path: Path, capsys) -> None:
    path, marker = hostile
    inputs = _images(tmp_path / "in", 32)
    argv = ["translate", "--method", "cyclegan", "--preset", "tiny", "--official", str(path)]
    _cli_refusal(capsys, [*argv, "--input", str(inputs), "--output", str(tmp_path / "out")], path)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_eval_checkpoint_refuses_a_pickle_that_would_run_code(hostile, in_tmp: Path, capsys) -> None:
    path, marker = hostile
    argv = ["eval", "--checkpoint", f"cyclegan={path}", "--metrics", "fid", "--no-track", *SMALL]
    _cli_refusal(capsys, argv, path)
    assert not marker.exists() and not (in_tmp / "reports").exists()


def test_run_weights_vgg16_refuses_a_pickle_that_would_run_code(tmp_path: Path, in_tmp: Path, capsys) -> None:
    """--weights vgg16=FILE for GNR's LPIPS loss: refused while the session opens, before anything trains."""
    marker = tmp_path / "code-ran.marker"
    path = tmp_path / "vgg16-397923af.pth"
    _torch_saved_shell(path, marker)
    argv = ["run", "--methods", "gnr", "--preset", "tiny", "--weights", f"vgg16={path}", "--metrics", "fid"]
    message = _cli_refusal(capsys, [*argv, "--no-track", *SMALL], path)
    assert "vgg16 weights" in message and "supply vgg16-397923af.pth from https://" in message
    assert not marker.exists() and not (in_tmp / "runs").exists()


# -- files that are not state dicts --------------------------------------------------------------------
NOT_STATE_DICTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "list": (lambda p: torch.save([torch.zeros(2)], p), "it holds a list, not a dict of tensors"),
    "tensor": (lambda p: torch.save(torch.zeros(2, 3), p), "it holds a tensor of shape (2, 3), not a dict"),
    "text": (lambda p: p.write_text("model.1.weight = 0.5\n"), "not a torch.save file: it starts with b'mode'"),
    "zero-byte": (lambda p: p.write_bytes(b""), "it is empty, 0 bytes"),
    "truncated": (
        lambda p: (torch.save({"w": torch.zeros(64)}, p), p.write_bytes(p.read_bytes()[:300])),
        "a truncated or damaged torch.save archive",
    ),
}


@pytest.mark.parametrize("kind", sorted(NOT_STATE_DICTS))
def test_a_file_that_is_not_a_state_dict_says_what_it_is_not(kind: str, tmp_path: Path, capsys) -> None:
    write, reason = NOT_STATE_DICTS[kind]
    path = tmp_path / "latest_net_G_A.pth"
    write(path)
    for loader in ("read_state", "weights vgg16", "harness_checkpoint", "load_checkpoint (eval)"):
        with pytest.raises(BenchError) as raised:
            LOADERS[loader](path)
        assert f"({reason}" in _one_line_refusal(str(raised.value), path), loader
    inputs = _images(tmp_path / "in", 32)
    argv = ["translate", "--method", "cyclegan", "--preset", "tiny", "--official", str(path), "--input", str(inputs)]
    message = _cli_refusal(capsys, [*argv, "--output", str(tmp_path / "out")], path)
    assert f"is not a weights file that loads safely as a state dict ({reason}" in message


def test_a_safetensors_file_that_is_not_one_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "converted.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(WeightsError) as raised:
        read_state(path)
    assert "not a readable safetensors file" in _one_line_refusal(str(raised.value), path)


# -- state dicts of the wrong shape --------------------------------------------------------------------
def _reshaped(state: dict[str, torch.Tensor], key: str = "model.1.weight") -> dict[str, torch.Tensor]:
    """`state` with `key` of the same numbers in another shape: (16, 3, 7, 7) -> (16, 21, 7)."""
    out = dict(state)
    out[key] = state[key].reshape(16, 21, 7)
    return out


WRONG = "model.1.weight: file (16, 21, 7) vs model (16, 3, 7, 7)"


def test_a_released_file_with_a_reshaped_tensor_names_the_key_and_both_shapes(tmp_path: Path, capsys) -> None:
    method = METHODS.get("cyclegan").from_preset("tiny")
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(_reshaped(method.G_A.state_dict()), path)

    with pytest.raises(BenchError) as raised:  # what bench eval --checkpoint runs
        load_checkpoint(METHODS.get("cyclegan").from_preset("tiny"), str(path))
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and WRONG in message and "1 shape mismatch" in message, message

    inputs = _images(tmp_path / "in", 32)
    argv = ["translate", "--method", "cyclegan", "--preset", "tiny", "--official", str(path), "--input", str(inputs)]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and WRONG in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_state_dict_with_a_non_tensor_value_is_refused_in_one_line(tmp_path: Path) -> None:
    method = METHODS.get("cyclegan").from_preset("tiny")
    path = tmp_path / "latest_net_G_A.pth"
    torch.save({**method.G_A.state_dict(), "model.1.bias": [0.0] * 16}, path)
    with pytest.raises(BenchError) as raised:  # CycleGAN's converter checks the released file itself
        load_checkpoint(method, str(path))
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and "is not a CycleGAN network state_dict" in message, message

    payload = checkpoint_payload(method, 1, {})  # a harness checkpoint: the key is named
    payload["networks"]["G_A"]["model.1.bias"] = [0.0] * 16
    torch.save(payload, tmp_path / "step_0000001.pt")
    with pytest.raises(BenchError) as raised:
        load_checkpoint(method, str(tmp_path / "step_0000001.pt"))
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and "G_A: 1 not a tensor: model.1.bias: a list" in message, message


def _harness_checkpoint(tmp_path: Path, reshape: bool) -> Path:
    method = METHODS.get("cyclegan").from_preset("tiny")
    payload = checkpoint_payload(method, 1, {})  # scored with --preset: its fingerprint is not read
    if reshape:
        payload["networks"]["G_B"] = _reshaped(payload["networks"]["G_B"])
    path = tmp_path / "step_0000001.pt"
    torch.save(payload, path)
    return path


def test_a_harness_checkpoint_with_a_reshaped_tensor_names_network_key_and_shapes(tmp_path: Path) -> None:
    path = _harness_checkpoint(tmp_path, reshape=True)
    assert harness_checkpoint(path) is not None  # it is one of the harness's checkpoints, just not this model's
    with pytest.raises(BenchError) as raised:
        load_checkpoint(METHODS.get("cyclegan").from_preset("tiny"), str(path))
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and f"G_B: 1 shape mismatch: {WRONG}" in message, message
    assert "size mismatch for" not in message  # not torch's multi-line dump


def test_eval_reports_the_reshaped_tensor_as_that_methods_failure(tmp_path: Path, in_tmp: Path, capsys) -> None:
    """Through `bench eval`: the method fails (exit 1, as for any method that cannot be scored) with the key and
    both shapes in its error, logged in one line and kept in results.json."""
    path = _harness_checkpoint(tmp_path, reshape=True)
    argv = ["eval", "--checkpoint", f"cyclegan={path}", "--preset", "tiny", "--metrics", "fid"]
    assert main([*argv, "--eval-option", "bootstrap=0", "--no-track", "--allow-standin", *SMALL]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "shape mismatch" in line]
    assert "cyclegan" in line and WRONG in line
    (results,) = (in_tmp / "reports").glob("*/results.json")
    assert WRONG in json.loads(results.read_text())["methods"]["cyclegan"]["error"]


def test_weights_of_the_wrong_shape_name_the_key_and_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3)}, path)
    with pytest.raises(WeightsError) as raised:
        resolve_weights("vgg16", str(path), allow_standin=True)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert "features.0.weight has shape (64, 3, 3), vgg16 needs (64, 3, 3, 3)" in message, message
