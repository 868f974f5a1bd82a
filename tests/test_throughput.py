"""Throughput measurement: FLOP counts against closed forms, and what measure_throughput passes and reports."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from bench.evaluate.throughput import Throughput, count_flops, machine_peak_flops, measure_throughput
from bench.evaluate.translator import WorkingSize


class _ConvTranslator(nn.Module):
    """A one-conv translator; multimodal variants add a per-image style to the output."""

    name = "conv"
    multimodal = False

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.config = WorkingSize(32)
        self.styles: list[Tensor | None] = []  # the style of every translate call

    @property
    def directions(self) -> tuple[str, ...]:
        return ("a2b", "b2a")

    def translate(self, x: Tensor, direction: str = "a2b", *, style=None, reference=None, generator=None) -> Tensor:
        self.styles.append(style)
        return torch.tanh(self.conv(x))

    def sample_style(self, n: int, direction: str, generator: torch.Generator | None = None) -> Tensor | None:
        return None


class _StyledTranslator(_ConvTranslator):
    multimodal = True

    def translate(self, x: Tensor, direction: str = "a2b", *, style=None, reference=None, generator=None) -> Tensor:
        self.styles.append(style)
        if style is None:  # what a real method does without a style: draw a new one
            style = self.sample_style(len(x), direction, generator)
        return torch.tanh(self.conv(x) + style[:, :, None, None])

    def sample_style(self, n: int, direction: str, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, 3, generator=generator)


def test_count_flops_matches_closed_forms() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.zeros(1, 3, 16, 16)) == 2 * 3 * 8 * 9 * 16 * 16
    linear = nn.Linear(5, 7)
    assert count_flops(linear, torch.zeros(4, 5)) == 2 * 5 * 7 * 4


def test_measure_throughput_reports_one_consistent_result_per_batch_size() -> None:
    translator = _ConvTranslator().train()
    results = measure_throughput(translator, "a2b", batch_sizes=(1, 4), warmup=1, iterations=3)

    assert [r.batch_size for r in results] == [1, 4]
    assert all(isinstance(r, Throughput) for r in results)
    for r in results:
        for value in (r.images_per_s, r.ms_per_image_p50, r.ms_per_image_p95, r.flops_per_image, r.peak_fraction):
            assert value is not None and math.isfinite(value) and value > 0
        assert r.ms_per_image_p95 >= r.ms_per_image_p50
        assert r.peak_memory_mb is None  # CPU
    # FLOPs scale linearly with the batch: the per-image count is the same, and is one call's count / batch.
    one_call = count_flops(translator.translate, torch.zeros(4, 3, 32, 32))
    assert results[0].flops_per_image == results[1].flops_per_image == one_call / 4
    assert translator.training  # measuring leaves a module in training mode as it found it


def test_measure_throughput_runs_in_eval_mode_without_grad() -> None:
    seen: list[tuple[bool, bool]] = []

    class _Recording(_ConvTranslator):
        def translate(self, x: Tensor, direction: str = "a2b", **kwargs) -> Tensor:
            seen.append((self.training, torch.is_grad_enabled()))
            return super().translate(x, direction, **kwargs)

    measure_throughput(_Recording().train(), "b2a", batch_sizes=(2,), warmup=1, iterations=2)
    assert seen and all(mode == (False, False) for mode in seen)


def test_measure_throughput_counts_every_call() -> None:
    translator = _ConvTranslator()
    measure_throughput(translator, "a2b", batch_sizes=(1, 2), warmup=2, iterations=3)
    assert len(translator.styles) == 2 * (1 + 2 + 3)  # per batch size: FLOP count, warm-up, timed calls


def test_multimodal_translator_gets_a_fixed_style_per_image() -> None:
    translator = _StyledTranslator()
    measure_throughput(translator, "a2b", batch_sizes=(1, 3), warmup=1, iterations=2)
    per_batch = len(translator.styles) // 2
    for styles, b in ((translator.styles[:per_batch], 1), (translator.styles[per_batch:], 3)):
        assert all(isinstance(s, Tensor) and s.shape[0] == b for s in styles)
        assert all(torch.equal(s, styles[0]) for s in styles)  # the same style on every call


def test_machine_peak_flops_is_positive_and_cached() -> None:
    peak = machine_peak_flops(torch.device("cpu"))
    assert math.isfinite(peak) and peak > 0
    assert machine_peak_flops(torch.device("cpu")) == peak


def test_machine_peak_flops_times_matmuls_at_the_callers_thread_count(monkeypatch) -> None:
    # torch.utils.benchmark.Timer runs on 1 thread unless told otherwise: a CPU peak that low would
    # inflate every peak_fraction measured at the harness's thread count
    threads: list[int] = []
    matmul = torch.mm

    def recording(a: Tensor, b: Tensor) -> Tensor:
        threads.append(torch.get_num_threads())
        return matmul(a, b)

    monkeypatch.setattr(torch, "mm", recording)
    monkeypatch.setattr("bench.evaluate.throughput._PEAK_FLOPS", {})
    assert math.isfinite(machine_peak_flops(torch.device("cpu")))
    assert len(threads) >= 2 and set(threads) == {torch.get_num_threads()}  # warm-up, then timed blocks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_sizes": ()},
        {"batch_sizes": (0,)},
        {"batch_sizes": (1, -2)},
        {"batch_sizes": (1.5,)},
        {"iterations": 0},
        {"warmup": -1},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    translator = _ConvTranslator()
    with pytest.raises(ValueError):
        measure_throughput(translator, "a2b", **kwargs)
    assert translator.styles == []  # rejected before any work
