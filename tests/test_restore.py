"""Resuming from checkpoints that do not fit: one-line errors and warnings, never torch's multi-line text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.train import Checkpointer, checkpoint_payload, restore
from methods.cyclegan import CycleGAN


def _cyclegan(ngf: int) -> CycleGAN:
    torch.manual_seed(0)
    method = CycleGAN.from_preset("tiny", image_size=32, load_size=32, ngf=ngf, n_blocks=1)
    method.optimizers()
    return method


def test_a_checkpoint_of_another_width_fails_in_one_line_naming_key_and_shapes() -> None:
    narrow, wide = _cyclegan(8), _cyclegan(16)
    payload = checkpoint_payload(narrow, 5, {"test": True})
    before = {k: v.clone() for k, v in wide.G_A.state_dict().items()}
    with pytest.raises(BenchError) as caught:
        restore(wide, payload, "runs/x/step_0000005.pt")
    message = str(caught.value)
    assert "\n" not in message and "size mismatch" not in message
    # the first mis-shaped key of the first network, with the file's and the model's shapes
    key = next(k for k, v in wide.G_A.state_dict().items() if v.shape != payload["networks"]["G_A"][k].shape)
    file_shape, model_shape = tuple(payload["networks"]["G_A"][key].shape), tuple(wide.G_A.state_dict()[key].shape)
    assert "G_A: " in message and f"{key}: file {file_shape} vs model {model_shape}" in message
    assert "runs/x/step_0000005.pt" in message and "without --resume" in message and "preset" in message
    assert all(torch.equal(before[k], v) for k, v in wide.G_A.state_dict().items())  # nothing half-loaded


def test_a_checkpoint_of_the_same_configuration_still_restores() -> None:
    trained, fresh = _cyclegan(8), _cyclegan(8)
    with torch.no_grad():
        trained.G_A.model[1].weight.add_(1.0)
    assert restore(fresh, checkpoint_payload(trained, 5, {"test": True})) == 5
    assert torch.equal(fresh.G_A.model[1].weight, trained.G_A.model[1].weight)


def test_a_truncated_newer_checkpoint_is_skipped_with_a_one_line_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer = Checkpointer(tmp_path)
    method = _cyclegan(8)
    older = checkpointer.save(checkpoint_payload(method, 1, {"test": True}))
    newer = checkpointer.save(checkpoint_payload(method, 2, {"test": True}))
    newer.write_bytes(newer.read_bytes()[: newer.stat().st_size // 2])  # a crash mid-write, without the rename
    with caplog.at_level(logging.WARNING, logger="bench.train"):
        assert checkpointer.latest_readable() == older
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = record.getMessage()
    assert "\n" not in text and newer.name in text and "weights_only" not in text
    assert "using the checkpoint before it" in text
