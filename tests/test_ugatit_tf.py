"""U-GAT-IT's TensorFlow release: the `tf_compat` generator, the pure converter and `bench convert ugatit-tf`.

Without TensorFlow the converter's layout rules are checked on the official variable names (the manifests in
tests/manifests, scaled down, and at full size on the meta device). With the `tf` extra a small TF graph
written as taki0112/UGATIT builds it (`UGATIT.generator`, `ops.py`, official variable names) is saved as a TF1
checkpoint, converted by the CLI, and its forward pass compared with the converted PyTorch model.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.__main__ import main
from bench.data.images import float_to_uint8, uint8_to_float
from bench.official import load_official
from bench.train import load_checkpoint
from methods.base import state_mismatch
from methods.ugatit import UGATIT, ResnetGenerator, convert_tensorflow_generator

MANIFESTS = Path(__file__).parent / "manifests"
TOLERANCE = 1e-4


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"ugatit__{name}.json").read_text())


def _scaled_shapes(light: bool, ch: int, side: int) -> dict[str, list[int]]:
    """The TF generator manifest (ch 64, 256 px) with every width scaled to `ch` and the bottleneck to `side`."""
    widths = {64: ch, 128: 2 * ch, 256: 4 * ch, 512: 8 * ch, 1048576: side * side * 4 * ch, 3: 3, 1: 1}
    shapes = {}
    for name, shape in _manifest("tf_generator_B_light" if light else "tf_generator_B")["tensors"].items():
        kernel = shape[:2] if len(shape) == 4 else []  # conv kernel sizes stay
        shapes[name] = kernel + [widths[d] for d in shape[len(kernel) :]]
    return shapes


def _random_variables(shapes: dict[str, list[int]], scopes: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    """Values that keep activations in range: kernels ~ 1/sqrt(fan-in), norms' gamma near 1, rho in [0, 1]."""
    rng = np.random.default_rng(seed)
    values = {}
    for scope in scopes:
        for name, shape in shapes.items():
            leaf = name.rsplit("/", 1)[1]
            if leaf == "kernel":
                value = rng.normal(0, 1 / math.sqrt(math.prod(shape[:-1])), shape)
            elif leaf == "rho":
                value = rng.uniform(0, 1, shape)  # some below 0.1, where TF's smoothing clips to 0
            elif leaf == "gamma":
                value = 1 + rng.normal(0, 0.2, shape)
            else:
                value = rng.normal(0, 0.2, shape)
            values[name.replace("generator_B/", f"{scope}/", 1)] = value.astype(np.float32)
    return values


# -- the converter, without TensorFlow ----------------------------------------------------------------------------
@pytest.mark.parametrize(("manifest", "light"), [("tf_generator_B", False), ("tf_generator_B_light", True)])
def test_every_official_variable_fills_the_paper_tf_generator(manifest: str, light: bool) -> None:
    """At full size, on the meta device (no memory): all 92 official names land on the 92 keys, shapes right."""
    variables = {n: torch.empty(s, device="meta") for n, s in _manifest(manifest)["tensors"].items()}
    variables["generator_B/conv/conv2d/kernel/Adam"] = torch.empty(7, 7, 3, 64, device="meta")  # slots: ignored
    with torch.device("meta"):
        generator = ResnetGenerator(64, 4, 256, light, tf_compat=True)
    state = convert_tensorflow_generator(variables, "generator_B")
    assert state_mismatch(generator, state) is None
    assert sum(v.numel() for v in state.values()) == _manifest(manifest)["params"]
    assert UGATIT.Config.preset("paper_tf_light" if light else "paper_tf").tf_compat


def test_converter_layouts() -> None:
    ch, side = 2, 3
    variables = {
        k: torch.from_numpy(v) for k, v in _random_variables(_scaled_shapes(False, ch, side), ("g",), 0).items()
    }
    state = convert_tensorflow_generator(variables, "g")
    conv = variables["g/conv_0/conv2d/kernel"]  # HWIO -> OIHW
    assert torch.equal(state["DownBlock.5.weight"], conv.permute(3, 2, 0, 1))
    assert torch.equal(state["gamma.weight"], variables["g/MLP/gamma/dense/kernel"].t())  # [in, out] -> [out, in]
    assert torch.equal(state["cam_fc.weight"], variables["g/CAM_logit/kernel"].t())
    rho = variables["g/adaptive_resblock2/res1/instance_layer_norm/rho"]
    assert torch.equal(state["UpBlock1_3.norm1.rho"], rho.reshape(1, -1, 1, 1))  # unchanged: the module clips
    assert torch.equal(state["DownBlock.12.conv_block.2.weight"], variables["g/resblock_0/res1/instance_norm/gamma"])
    # The full MLP: TF flattens NHWC (h, w, c); the converted weight reads PyTorch's NCHW flatten.
    x = torch.randn(2, 4 * ch, side, side)
    tf_output = x.permute(0, 2, 3, 1).reshape(2, -1) @ variables["g/MLP/linear_0/dense/kernel"]
    torch.testing.assert_close(F.linear(x.flatten(1), state["FC.0.weight"]), tf_output)
    generator = ResnetGenerator(ch, 4, 4 * side, light=False, tf_compat=True)
    assert state_mismatch(generator, state) is None
    with pytest.raises(ValueError, match="no place"):
        convert_tensorflow_generator({**variables, "g/extra/kernel": conv}, "g")
    with pytest.raises(ValueError, match="no TensorFlow variable under scope"):
        convert_tensorflow_generator(variables, "generator_B")


def test_tf_compat_keeps_the_default_generator_and_differs_where_tf_does() -> None:
    torch.manual_seed(0)
    default = ResnetGenerator(4, 2, 16, light=False)
    torch.manual_seed(0)
    assert torch.equal(ResnetGenerator(4, 2, 16, False, tf_compat=False).FC[0].weight, default.FC[0].weight)
    tf = ResnetGenerator(4, 2, 16, light=False, tf_compat=True)
    assert "cam_fc.weight" in tf.state_dict() and "gap_fc.weight" not in tf.state_dict()
    assert tf.DownBlock[4].padding == (1, 0, 1, 0) and default.DownBlock[4].padding == (1, 1, 1, 1)
    assert bool((tf.UpBlock1_1.norm1.rho == 1.0).all())  # TF's initial rho, used as 0.9


def test_a_converted_file_loads_under_the_tf_presets_only(tmp_path: Path) -> None:
    """What `bench convert` writes (a flat `genA2B.` / `genB2A.` state) scores and translates with `tiny_tf`."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    released = UGATIT.from_preset("tiny_tf").eval()
    state = {f"{g}.{k}": v for g in ("genA2B", "genB2A") for k, v in getattr(released, g).state_dict().items()}
    folder = tmp_path / "converted"
    folder.mkdir()
    save_file(state, str(folder / "ugatit_tf.safetensors"))
    with pytest.raises(ValueError, match="paper_tf"):
        load_official(UGATIT.from_preset("tiny"), folder / "ugatit_tf.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_official(UGATIT.from_preset("tiny_tf"), tmp_path / "bad.safetensors")
    fresh = UGATIT.from_preset("tiny_tf")
    assert load_official(fresh, folder) == ["genA2B", "genB2A"]  # a folder holding the converted file
    assert torch.equal(fresh.genB2A.FC[0].weight, released.genB2A.FC[0].weight)

    images = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    (tmp_path / "in").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "in" / f"face_{i}.png")
    args = ["translate", "--method", "ugatit", "--official", str(folder / "ugatit_tf.safetensors")]
    assert main([*args, "--preset", "tiny_tf", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
    with torch.no_grad():
        expected = float_to_uint8(released.translate(uint8_to_float(images), "a2b"))
    for i, want in enumerate(expected):
        assert np.array_equal(np.array(Image.open(tmp_path / "out" / f"face_{i}.png")), want.permute(1, 2, 0).numpy())


def test_convert_without_tensorflow_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow raises ImportError
    assert main(["convert", "ugatit-tf", str(tmp_path), str(tmp_path / "out.safetensors")]) == 2
    assert "pip install '.[tf]'" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


# -- against TensorFlow -----------------------------------------------------------------------------------------
def _tf_generator(tf, x, ch: int, n_res: int, light: bool, scope: str):
    """taki0112/UGATIT's `generator` (d508e8f) in TF2's compat.v1 API, variables named as the release's.

    tf.layers.conv2d / dense become get_variable under `conv2d` / `dense` scopes (the names those layers give),
    tf.contrib.layers.instance_norm its moments and beta/gamma: the same computations.
    """
    v1 = tf.compat.v1

    def conv(x, channels, kernel, stride, pad, scope):
        with v1.variable_scope(scope):
            if pad:  # ops.conv: asymmetric when kernel - stride is odd
                before, after = (pad, pad) if (kernel - stride) % 2 == 0 else (pad, kernel - stride - pad)
                x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="REFLECT")
            with v1.variable_scope("conv2d"):
                w = v1.get_variable("kernel", [kernel, kernel, x.shape[-1], channels])
                b = v1.get_variable("bias", [channels])
            return tf.nn.bias_add(tf.nn.conv2d(x, w, [1, stride, stride, 1], "VALID"), b)

    def dense(x, units, scope):
        with v1.variable_scope(scope), v1.variable_scope("dense"):
            x = tf.reshape(x, [x.shape[0], -1])  # tf.layers.flatten: NHWC order
            return tf.matmul(x, v1.get_variable("kernel", [x.shape[-1], units])) + v1.get_variable("bias", [units])

    def instance_norm(x, scope):
        with v1.variable_scope(scope):
            beta, gamma = v1.get_variable("beta", [x.shape[-1]]), v1.get_variable("gamma", [x.shape[-1]])
            mean, var = tf.nn.moments(x, [1, 2], keepdims=True)
            return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-5)

    def ilnorm(x, smoothing, scope, gamma=None, beta=None):  # adaptive_instance_layer_norm / layer_instance_norm
        with v1.variable_scope(scope):
            ins_mean, ins_var = tf.nn.moments(x, [1, 2], keepdims=True)
            ln_mean, ln_var = tf.nn.moments(x, [1, 2, 3], keepdims=True)
            x_ins, x_ln = (x - ins_mean) / tf.sqrt(ins_var + 1e-5), (x - ln_mean) / tf.sqrt(ln_var + 1e-5)
            rho = v1.get_variable("rho", [x.shape[-1]])
            if smoothing:
                rho = tf.clip_by_value(rho - 0.1, 0.0, 1.0)
            if gamma is None:
                gamma, beta = v1.get_variable("gamma", [x.shape[-1]]), v1.get_variable("beta", [x.shape[-1]])
            return (rho * x_ins + (1 - rho) * x_ln) * gamma + beta

    def cam(x, pooled, reuse):  # fully_connected_with_w: one kernel and bias for both branches
        with v1.variable_scope("CAM_logit", reuse=reuse):
            w, b = v1.get_variable("kernel", [x.shape[-1], 1]), v1.get_variable("bias", [1])
            logit = tf.matmul(pooled, w) + b
            return logit, x * tf.gather(tf.transpose(tf.nn.bias_add(w, b)), 0)

    channel = ch
    with v1.variable_scope(scope):
        x = tf.nn.relu(instance_norm(conv(x, channel, 7, 1, 3, "conv"), "ins_norm"))
        for i in range(2):
            x = tf.nn.relu(instance_norm(conv(x, channel * 2, 3, 2, 1, f"conv_{i}"), f"ins_norm_{i}"))
            channel *= 2
        for i in range(n_res):
            with v1.variable_scope(f"resblock_{i}"):
                with v1.variable_scope("res1"):
                    y = tf.nn.relu(instance_norm(conv(x, channel, 3, 1, 1, "conv_0"), "instance_norm"))
                with v1.variable_scope("res2"):
                    x = x + instance_norm(conv(y, channel, 3, 1, 1, "conv_0"), "instance_norm")
        gap_logit, x_gap = cam(x, tf.reduce_mean(x, [1, 2]), reuse=False)
        gmp_logit, x_gmp = cam(x, tf.reduce_max(x, [1, 2]), reuse=True)
        cam_logit = tf.concat([gap_logit, gmp_logit], -1)
        x = tf.nn.relu(conv(tf.concat([x_gap, x_gmp], -1), channel, 1, 1, 0, "conv_1x1"))
        heatmap = tf.reduce_sum(x, -1)
        with v1.variable_scope("MLP"):  # UGATIT.MLP: ch * n_res wide
            h = tf.reduce_mean(x, [1, 2]) if light else x
            for i in range(2):
                h = tf.nn.relu(dense(h, ch * n_res, f"linear_{i}"))
            gamma = tf.reshape(dense(h, ch * n_res, "gamma"), [-1, 1, 1, ch * n_res])
            beta = tf.reshape(dense(h, ch * n_res, "beta"), [-1, 1, 1, ch * n_res])
        for i in range(n_res):
            with v1.variable_scope(f"adaptive_resblock{i}"):
                with v1.variable_scope("res1"):
                    y = conv(x, channel, 3, 1, 1, "conv_0")
                    y = tf.nn.relu(ilnorm(y, True, "instance_layer_norm", gamma, beta))
                with v1.variable_scope("res2"):
                    x = x + ilnorm(conv(y, channel, 3, 1, 1, "conv_0"), True, "instance_layer_norm", gamma, beta)
        for i in range(2):
            size = [int(x.shape[1]) * 2, int(x.shape[2]) * 2]
            x = conv(v1.image.resize_nearest_neighbor(x, size), channel // 2, 3, 1, 1, f"up_conv_{i}")
            x = tf.nn.relu(ilnorm(x, False, f"layer_ins_norm_{i}"))
            channel //= 2
        return tf.tanh(conv(x, 3, 7, 1, 3, "G_logit")), cam_logit, heatmap


@pytest.fixture(scope="module")
def tensorflow():
    return pytest.importorskip(
        "tensorflow", reason="TensorFlow is the optional extra for converting U-GAT-IT's release: pip install '.[tf]'"
    )


@pytest.mark.slow  # builds and runs the TensorFlow graph (the tf extra): the slow tier, like the browser tests
@pytest.mark.parametrize("light", [False, True], ids=["full", "light"])
def test_converted_tensorflow_checkpoint_matches_the_tensorflow_graph(
    tensorflow, light: bool, tmp_path: Path, capsys
) -> None:
    tf, v1 = tensorflow, tensorflow.compat.v1
    c = UGATIT.Config.preset("tiny_tf", light=light)
    size, ch = c.image_size, c.ngf
    scopes = {"genA2B": "generator_B", "genB2A": "generator_A"}  # as UGATIT.generate_a2b / generate_b2a
    values = _random_variables(_scaled_shapes(light, ch, size // 4), tuple(scopes.values()), seed=1)
    images = np.random.default_rng(2).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    checkpoint = tmp_path / f"UGATIT_selfie2anime_lsgan_{c.n_res}resblock_6dis_1_1_10_10_1000_sn_smoothing"
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, images.shape)
        outputs = {attr: _tf_generator(tf, x, ch, c.n_res, light, scope) for attr, scope in scopes.items()}
        assert {v.op.name for v in v1.global_variables()} == set(values)  # the official names, nothing more
        assigns = [v.assign(values[v.op.name]) for v in v1.global_variables()]
        with v1.Session(graph=graph) as session:
            session.run(assigns)
            v1.train.Saver().save(session, str(checkpoint / "UGATIT.model"), global_step=1000000)
            expected = session.run(outputs, {x: images})

    out = tmp_path / "ugatit_tf.safetensors"
    assert main(["convert", "ugatit-tf", str(checkpoint), str(out)]) == 0
    assert "paper_tf" in capsys.readouterr().out
    method = UGATIT(c).eval()
    assert load_checkpoint(method, str(out)).directions == ("a2b", "b2a")  # what bench eval --checkpoint runs
    worst = 0.0
    with torch.no_grad():
        for attr, (tf_image, tf_cam, tf_heatmap) in expected.items():
            image, cam_logit, heatmap = getattr(method, attr)(torch.from_numpy(images).permute(0, 3, 1, 2))
            for got, want in ((image.permute(0, 2, 3, 1), tf_image), (cam_logit, tf_cam), (heatmap[:, 0], tf_heatmap)):
                worst = max(worst, float((got - torch.from_numpy(want)).abs().max()))
    print(f"max |TF - PyTorch| ({'light' if light else 'full'}): {worst:.2e}")
    assert worst <= TOLERANCE
