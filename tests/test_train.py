"""The training loop: finite losses, atomic checkpoints, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.errors import BenchError
from bench.train import Checkpointer, TrainingDiverged, TrainPlan, default_total_steps, harness_checkpoint, train
from methods.base import Method, Update
from methods.cyclegan import CycleGAN

FINGERPRINT = {"test": True}


class Interrupt(Exception):
    pass


def _method(seed: int = 0) -> Method:
    torch.manual_seed(seed)
    return CycleGAN.from_preset("tiny", image_size=32, load_size=36, batch_size=2)


def _plan(steps: int, checkpoint_every: int = 100) -> TrainPlan:
    return TrainPlan(steps, batch_size=2, seed=3, checkpoint_every=checkpoint_every, sample_every=100, log_every=1)


def _weights(method: Method) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n, state in method.network_state().items() for k, v in state.items()}


def test_short_run_has_finite_losses_and_writes_outputs(toyfaces_small, tmp_path: Path) -> None:
    seen: dict[int, dict[str, float]] = {}
    method = _method()
    result = train(
        method,
        toyfaces_small,
        _plan(3),
        tmp_path,
        Accelerator(cpu=True),
        FINGERPRINT,
        on_losses=lambda step, losses: seen.__setitem__(step, losses),
    )
    assert sorted(seen) == [0, 1, 2] and result.steps == 3
    assert all(torch.isfinite(torch.tensor(list(v.values()))).all() for v in seen.values())
    assert result.checkpoint == tmp_path / "checkpoints" / "step_0000003.pt"
    assert result.sample_grid is not None and result.sample_grid.is_file()
    payload = torch.load(result.checkpoint, weights_only=True)  # no pickled code in our checkpoints
    assert payload["step"] == 3 and payload["method"] == "cyclegan"
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))  # no temporary file left behind


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(toyfaces_small, tmp_path: Path) -> None:
    straight = _method()
    train(straight, toyfaces_small, _plan(6), tmp_path / "straight", Accelerator(cpu=True), FINGERPRINT)

    crashed = _method()

    def crash(step: int, losses: dict[str, float]) -> None:
        if step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            crashed,
            toyfaces_small,
            _plan(6, checkpoint_every=3),
            tmp_path / "crashed",
            Accelerator(cpu=True),
            FINGERPRINT,
            on_losses=crash,
        )
    checkpoint = Checkpointer(tmp_path / "crashed" / "checkpoints").latest()
    assert checkpoint is not None and checkpoint.name == "step_0000003.pt"

    resumed = _method(seed=99)  # different initial weights: everything must come from the checkpoint
    result = train(
        resumed,
        toyfaces_small,
        _plan(6),
        tmp_path / "resumed",
        Accelerator(cpu=True),
        FINGERPRINT,
        resume_from=checkpoint,
    )
    assert result.resumed_from == 3 and result.steps == 6
    expected, got = _weights(straight), _weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def _tiny(name: str, seed: int = 0) -> Method:
    """A registered method's tiny preset at 32 px (or its smallest), batch 2, random stand-in loss networks."""
    from bench.registry import METHODS

    torch.manual_seed(seed)
    cls = METHODS.get(name)
    size = 48 if name == "ugatit" else 32  # U-GAT-IT's six-layer discriminator needs 48 px
    method = cls.from_preset("tiny", image_size=size, load_size=size, batch_size=2)
    for network in cls.pretrained_networks(method.config):
        method.attach_pretrained(network, None)
    return method


# CycleGAN in the fast tier; the other four train several steps twice each: the slow tier
SLOW = pytest.mark.slow
RESUMED = ["cyclegan", *(pytest.param(n, marks=SLOW) for n in ("ugatit", "stargan_v2", "council", "gnr"))]


@pytest.mark.parametrize("name", RESUMED)
def test_every_method_resumes_exactly(name: str, toyfaces_small, tmp_path: Path) -> None:
    """Stopped after a checkpoint and resumed in a process whose global RNG has moved on, every method ends
    with the tensors of an uninterrupted run: every random stream is a function of (seed, step)."""
    straight = _tiny(name)
    train(straight, toyfaces_small, _plan(4), tmp_path / "straight", Accelerator(cpu=True), FINGERPRINT)
    crashed = _tiny(name)

    def crash(step: int, losses: dict[str, float]) -> None:
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            crashed, toyfaces_small, _plan(4, 2), tmp_path / "crashed", Accelerator(cpu=True), FINGERPRINT, None, crash
        )
    resumed = _tiny(name, seed=99)  # other weights and another global RNG state: all must come from the file
    torch.rand(7)
    checkpoint = Checkpointer(tmp_path / "crashed" / "checkpoints").latest()
    assert checkpoint is not None and checkpoint.name == "step_0000002.pt"
    train(resumed, toyfaces_small, _plan(4), tmp_path / "resumed", Accelerator(cpu=True), FINGERPRINT, checkpoint)
    expected, got = _weights(straight), _weights(resumed)
    differing = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not differing, f"{len(differing)} of {len(expected)} tensors differ, e.g. {differing[:3]}"


def test_restored_checkpoint_has_the_same_weights(toyfaces_small, tmp_path: Path) -> None:
    method = _method()
    result = train(method, toyfaces_small, _plan(2), tmp_path, Accelerator(cpu=True), FINGERPRINT)
    fresh = _method(seed=5)
    again = train(
        fresh,
        toyfaces_small,
        _plan(2),
        tmp_path / "again",
        Accelerator(cpu=True),
        FINGERPRINT,
        resume_from=result.checkpoint,
    )
    assert again.resumed_from == 2 and again.steps == 2  # nothing left to train
    assert all(torch.equal(a, b) for a, b in zip(_weights(method).values(), _weights(fresh).values()))


def test_checkpointer_keeps_the_newest(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3):
        checkpointer.save({"step": step})
    assert [p.name for p in checkpointer.all()] == ["step_0000002.pt", "step_0000003.pt"]


def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    checkpointer = Checkpointer(tmp_path, keep=3)
    for step in (2, 4):
        checkpointer.save({"step": step, "weights": torch.arange(1000.0)})
    newest = checkpointer.latest()
    newest.write_bytes(newest.read_bytes()[:300])  # cut short, as a crash of a non-atomic copy leaves it
    assert checkpointer.latest_readable() == tmp_path / "step_0000002.pt"
    assert "step_0000004.pt is damaged" in caplog.text and "using the checkpoint before it" in caplog.text
    (tmp_path / "step_0000002.pt").write_bytes(b"")
    assert checkpointer.latest_readable() is None


def _disk_full_after(nbytes: int):
    """A writer that puts `nbytes` bytes in the file, then fails as a full disk does."""

    def write(obj, path, *args, **kwargs) -> None:
        Path(path).write_bytes(b"x" * nbytes)
        raise OSError(28, "No space left on device")

    return write


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save({"step": 2})
    before = (tmp_path / "step_0000002.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _disk_full_after(100))
    with pytest.raises(BenchError, match=r"No space left on device.*step_0000002.pt, is intact"):
        checkpointer.save({"step": 4})
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000002.pt"]  # no partial file left behind
    assert (tmp_path / "step_0000002.pt").read_bytes() == before


def test_a_full_disk_while_writing_results_or_the_report_keeps_the_previous_files(tmp_path: Path, monkeypatch):
    from bench.report import build_report
    from tests.test_report_leaderboard import _result, _row

    result = _result([_row("cyclegan", "fid", 100.0, 90.0, 110.0)])
    result.save(tmp_path)
    build_report(result, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result.rows.append(_row("gnr", "fid", 90.0, 80.0, 100.0))
    monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **k: _disk_full_after(10)(None, self))
    for write in (lambda: result.save(tmp_path), lambda: build_report(result, tmp_path)):
        with pytest.raises(BenchError, match="No space left on device; the previous .* is intact"):
            write()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_non_finite_loss_stops_with_a_clear_error(toyfaces_small, tmp_path: Path, monkeypatch) -> None:
    method = _method()
    diverged = torch.tensor(float("nan"), requires_grad=True)
    monkeypatch.setattr(
        method, "training_step", lambda nets, batch, step, rng: iter([Update("G", diverged, {"G": diverged})])
    )
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 0"):
        train(method, toyfaces_small, _plan(2), tmp_path, Accelerator(cpu=True), FINGERPRINT)


def test_default_steps_follow_the_preset_epochs(toyfaces_small) -> None:
    method = _method()  # tiny: 1 epoch, batch 2, 24 training images per domain
    assert default_total_steps(method, toyfaces_small, 2) == 12


def test_resume_finds_a_checkpoint_whose_configuration_holds_tuples(tmp_path: Path) -> None:
    """Configs with tuple fields (GNR's aug_scale, Council GAN's directions) match their own JSON sidecar."""
    import json

    from bench.run import find_resumable
    from methods.gnr import GNR

    fingerprint = {"method": "gnr", "config": GNR.Config.tiny().to_dict(), "seed": 0}
    assert isinstance(fingerprint["config"]["aug_scale"], tuple)
    run_dir = tmp_path / "run-1" / "gnr"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "fingerprint.json").write_text(json.dumps(fingerprint))
    torch.save({"step": 40}, run_dir / "checkpoints" / "step_0000040.pt")  # resume opens the newest readable one
    assert find_resumable(tmp_path, "gnr", fingerprint) == run_dir / "checkpoints" / "step_0000040.pt"
    assert find_resumable(tmp_path, "gnr", {**fingerprint, "seed": 1}) is None


def test_a_checkpoint_of_the_old_format_is_scored_but_not_resumed(toyfaces_small, tmp_path: Path) -> None:
    """Format 1 saved global RNG states and drew other random streams: resuming it could not be exact."""
    method = _method()
    result = train(method, toyfaces_small, _plan(1), tmp_path, Accelerator(cpu=True), FINGERPRINT)
    payload = Checkpointer.load(result.checkpoint)
    old = tmp_path / "old.pt"
    torch.save({**payload, "format": 1}, old)
    assert harness_checkpoint(old) is not None  # the network layout is the same: it can be scored
    with pytest.raises(BenchError, match="format 1.*resumes format 2"):
        train(_method(), toyfaces_small, _plan(2), tmp_path / "again", Accelerator(cpu=True), FINGERPRINT, old)


def test_a_run_whose_optimiser_state_cannot_fit_is_refused_before_the_first_step(
    toyfaces_small, tmp_path, monkeypatch, caplog
):
    import logging

    from bench import memory
    from bench.errors import ConfigError

    caplog.set_level(logging.WARNING, logger="bench.memory")

    method = _method()
    adam = {name: opt for name, opt in method.optimizers().items() if isinstance(opt, torch.optim.Adam)}
    assert adam and len(adam) == len(method.optimizers())  # CycleGAN: Adam for G and D
    parameters = sum(p.numel() for opt in adam.values() for g in opt.param_groups for p in g["params"])
    floor = memory.training_memory_floor(method)
    assert floor == 3 * 4 * parameters  # float32 gradient + Adam's two moments per parameter
    memory.check_training_memory(method, torch.device("cpu"), available=floor)  # enough for the floor: no error
    assert "may run out of memory" in caplog.text  # but not for a typical peak
    caplog.clear()
    memory.check_training_memory(method, torch.device("cpu"), available=3 * floor)
    assert "may run out of memory" not in caplog.text
    with pytest.raises(ConfigError, match=r"cyclegan will not fit: .* GiB .* available"):
        memory.check_training_memory(method, torch.device("cpu"), available=floor - 1)

    monkeypatch.setattr(memory, "available_memory", lambda device: floor // 2)
    before = _weights(method)
    with pytest.raises(ConfigError, match="paper_light"):
        train(method, toyfaces_small, _plan(3), tmp_path, Accelerator(cpu=True), {"test": True})
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert all(torch.equal(before[k], v) for k, v in _weights(method).items())  # not a step taken


@pytest.mark.slow  # inductor compiles C++ for each network: 10-90 s on 2 CPU cores
def test_a_compiled_run_trains_the_same_weights_and_saves_the_usual_keys(
    toyfaces_small, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.train import prepare
    from tests.test_toy_method import ColourShift

    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        method = ColourShift.from_preset("tiny")
        plan = TrainPlan(3, 2, seed=3, checkpoint_every=100, sample_every=100, log_every=1, compile=compiled)
        runs[compiled] = (
            method,
            train(method, toyfaces_small, plan, tmp_path / str(compiled), Accelerator(cpu=True), {}),
        )
    nets, _ = prepare(runs[True][0], Accelerator(cpu=True), compile=True)
    assert isinstance(nets.to_b, torch._dynamo.eval_frame.OptimizedModule)  # it is really compiled
    (eager, eager_result), (compiled, compiled_result) = runs[False], runs[True]
    saved = torch.load(compiled_result.checkpoint, weights_only=True)["networks"]
    assert saved.keys() == torch.load(eager_result.checkpoint, weights_only=True)["networks"].keys()
    assert all("_orig_mod" not in key for state in saved.values() for key in state)  # loadable without compile
    for key, value in _weights(eager).items():
        torch.testing.assert_close(_weights(compiled)[key], value, rtol=1e-5, atol=1e-6)  # fused kernels round

    class Uncompilable(ColourShift):
        not_compilable = "a reason"

    method = Uncompilable.from_preset("tiny")
    monkeypatch.setattr(torch, "compile", lambda *args, **kwargs: pytest.fail("a method that cannot compile was"))
    plan = TrainPlan(1, 2, seed=3, checkpoint_every=100, sample_every=100, log_every=1, compile=True)
    train(method, toyfaces_small, plan, tmp_path / "eager", Accelerator(cpu=True), {})
    assert "colour_shift trains without torch.compile: a reason" in caplog.text


def test_a_channels_last_run_trains_in_nhwc_to_the_same_losses(toyfaces_small, tmp_path: Path) -> None:
    losses: dict[str, dict[int, dict[str, float]]] = {}
    layouts: list[bool] = []
    for layout in ("contiguous", "channels_last"):
        torch.manual_seed(0)
        method = CycleGAN.from_preset("tiny", image_size=32, load_size=32, batch_size=2)
        forward = method.G_A.forward

        def spy(x, *args, _forward=forward, **kwargs):  # records the layout of the batches the generator gets
            layouts.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return _forward(x, *args, **kwargs)

        method.G_A.forward = spy
        plan = TrainPlan(
            2, 2, seed=3, checkpoint_every=100, sample_every=100, log_every=1, channels_last=layout != "contiguous"
        )
        seen = losses.setdefault(layout, {})
        result = train(
            method,
            toyfaces_small,
            plan,
            tmp_path / layout,
            Accelerator(cpu=True),
            FINGERPRINT,
            on_losses=seen.__setitem__,
        )
        if layout == "channels_last":
            conv = next(m for m in method.G_A.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
            fresh = CycleGAN.from_preset("tiny", image_size=32, load_size=32, batch_size=2)
            fresh.load_network_state(torch.load(result.checkpoint, weights_only=True)["networks"])  # loads as usual
            x = toyfaces_small.split("test", "A").load_all(32, 2).float() / 127.5 - 1
            method.eval()
            torch.testing.assert_close(fresh.translate(x), method.translate(x), rtol=1e-4, atol=1e-5)
    assert any(layouts) and not all(layouts)  # NHWC batches in the channels-last run only
    for key, value in losses["contiguous"][0].items():  # before any update only rounding tells them apart
        assert losses["channels_last"][0][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
