"""Evaluation shared across processes: N processes score exactly what one process scores.

The fast tests run the ranks as threads of this process, exchanging through a barrier in place of
Accelerate's collectives; the slow test launches two real processes (gloo on CPU) under `accelerate launch`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
from torch import Tensor, nn

from bench.evaluate.cache import FeatureCache
from bench.evaluate.evaluator import Evaluator
from bench.evaluate.extract import LpipsDistance, StyleStatistics
from bench.evaluate.gather import Scope
from bench.evaluate.generate import Generation
from bench.evaluate.metrics import EvalOptions
from bench.evaluate.shards import ALONE, Shards
from bench.evaluate.translator import WorkingSize
from bench.registry import METRICS
from bench.weights import resolve_weights

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def _as_ranks(world: int, work: Callable[[Shards], T]) -> list[T]:
    """`work(shards)` for every rank at once, in threads whose gather and broadcast meet at a barrier."""
    barrier = threading.Barrier(world, timeout=60)  # a rank that fails breaks it rather than hanging the rest
    slots: list[Any] = [None] * world

    def exchange(rank: int, value: Any) -> list[Any]:
        slots[rank] = value
        barrier.wait()
        everyone = list(slots)
        barrier.wait()  # nobody overwrites a slot before every rank has read them all
        return everyone

    def shards(rank: int) -> Shards:
        return Shards(
            rank,
            world,
            gather=lambda items: [item for part in exchange(rank, items) for item in part],
            broadcast=lambda value: exchange(rank, value)[0],
        )

    with ThreadPoolExecutor(world) as pool:
        futures = [pool.submit(work, shards(rank)) for rank in range(world)]
        return [future.result() for future in futures]


class NoisyNet(nn.Module):
    """A multimodal translator with parameters whose outputs depend on the style and the per-call generator."""

    name = "noisy"
    multimodal = True
    directions = ("a2b", "b2a")

    def __init__(self, size: int) -> None:
        super().__init__()
        self.config = WorkingSize(size)
        self.conv = nn.Conv2d(3 + 4, 3, 3, padding=1)
        weights = torch.Generator().manual_seed(0)  # not the global RNG, which the ranks' threads share
        with torch.no_grad():
            for parameter in self.conv.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=weights) * 0.2)
        self.batches: list[int] = []  # sizes of the batches this translator was called with

    def sample_style(self, n: int, direction: str, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(n, 4, generator=generator)

    def translate(self, x, direction="a2b", *, style=None, reference=None, generator=None) -> Tensor:
        self.batches.append(len(x))
        planes = style[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        noise = torch.randn(x.shape, generator=generator)
        return torch.tanh(self.conv(torch.cat([x, planes], 1)) + 0.3 * noise)


def _inputs(n: int, size: int = 32) -> Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_shards_split_batches_by_index_and_gather_them_in_order() -> None:
    """7 items in batches of 2 under 3 ranks: rank r runs batches r, r+3, ...; everyone gets all 7 in order."""
    ran: dict[int, list[int]] = {}

    def work(shards: Shards) -> Tensor:
        def run(rows: slice) -> Tensor:
            ran.setdefault(shards.rank, []).append(rows.start)
            return torch.arange(rows.start, rows.stop)

        return shards.batches(7, 2, run)

    results = _as_ranks(3, work)
    assert all(torch.equal(r, torch.arange(7)) for r in results)
    assert ran == {0: [0, 6], 1: [2], 2: [4]}  # the uneven last batch (one item) is rank 0's
    assert torch.equal(ALONE.batches(7, 2, lambda rows: torch.arange(rows.start, rows.stop)), torch.arange(7))
    lost = Shards(0, 2, gather=lambda items: items)  # a gather that drops the other rank's batches
    with pytest.raises(RuntimeError, match="gathered batches"):
        lost.batches(7, 2, lambda rows: torch.arange(rows.start, rows.stop))


def test_two_shards_translate_and_extract_exactly_what_one_process_does(private_cache) -> None:
    """Outputs, style sets and LPIPS of 7 inputs in batches of 2: equal bit for bit under 1 and 2 ranks, and
    every batch keeps its composition (the networks see the same inputs)."""
    lpips = LpipsDistance(resolve_weights("alexnet", None, allow_standin=True))  # built once: its init seeds globally
    inputs = _inputs(7)

    def work(shards: Shards) -> tuple[Tensor, Tensor, Any, list[int]]:
        translator = NoisyNet(32)
        generation = Generation(translator, inputs, "a2b", 32, seed=5, batch_size=2, shards=shards)
        scope = Scope(generation, "B", EvalOptions(), 2, lambda name: lpips, lambda *_: None, shards)
        sets = generation.style_sets(3)
        return generation.outputs, sets, scope.lpips(sets[:, 0], sets[:, 1]), translator.batches

    (outputs, sets, distances, batches) = work(ALONE)
    ranks = _as_ranks(2, work)
    for rank_outputs, rank_sets, rank_distances, _ in ranks:
        assert torch.equal(rank_outputs, outputs) and torch.equal(rank_sets, sets)
        assert (rank_distances == distances).all()
    assert batches == [2, 2, 2, 1] * 4  # outputs, then 3 style sets
    assert ranks[0][3] == [2, 2] * 4 and ranks[1][3] == [2, 1] * 4  # batches 0 and 2; 1 and 3 (the last)
    assert len(outputs) == 7 and len(torch.unique(outputs.flatten(1), dim=0)) == 7  # none repeated, none lost
    assert distances.shape == (7,) and (distances > 0).all()


def _evaluator(data, metrics: list[str], cache: FeatureCache, shards: Shards, built: dict) -> Evaluator:
    chosen = [METRICS.get(m) for m in metrics]
    options = EvalOptions(styles=3, bootstrap=20, kid_subsets=10)
    evaluator = Evaluator(data, chosen, options, {}, cache=cache, batch_size=3, shards=shards)
    evaluator._built = built  # networks built once, outside the threads (random trunks seed the global RNG)
    return evaluator


def test_two_shards_score_what_one_process_scores_and_only_main_touches_the_cache(
    toyfaces_small, tmp_path: Path, private_cache
) -> None:
    """FID, KID and LPIPS diversity of 8 test images in batches of 3 (3 + 3 + 2), the report's samples too.

    The set metrics read VGG statistics here, a network that costs a CPU test little at 32px (the slow test
    below runs the Inception stand-in)."""
    from bench.evaluate.panel import reference_panel

    metrics = ["fid", "kid", "lpips_diversity"]
    renderer = {t.name: t for t in reference_panel(toyfaces_small)}["renderer"]
    built = {
        "inception": StyleStatistics(resolve_weights("vgg16", None, allow_standin=True)),
        "lpips": LpipsDistance(resolve_weights("alexnet", None, allow_standin=True)),
    }

    def score(shards: Shards, cache: FeatureCache, samples: Path) -> list:
        evaluator = _evaluator(toyfaces_small, metrics, cache, shards, built)
        return evaluator.evaluate(renderer, "run", "", seed=2, directions=("a2b",), samples_dir=samples)

    expected = score(ALONE, FeatureCache(tmp_path / "alone"), tmp_path / "alone-samples")
    caches = [FeatureCache(tmp_path / "shared"), FeatureCache(tmp_path / "shared")]
    main, other = _as_ranks(2, lambda shards: score(shards, caches[shards.rank], tmp_path / f"samples-{shards.rank}"))
    assert [(r.metric, r.value, r.ci_low, r.ci_high) for r in main] == [
        (r.metric, r.value, r.ci_low, r.ci_high) for r in expected
    ]
    assert main == other  # every process computes the same rows
    assert {r.metric for r in main} == set(metrics)
    assert all(r.value > 0 for r in main if r.metric != "kid")  # KID, unbiased, may fall below 0
    assert caches[0].misses == 1 and (caches[1].misses, caches[1].hits) == (0, 0)  # testB: main's alone
    assert len(caches[0].entries()) == 1
    written = sorted(p.name for p in (tmp_path / "alone-samples").iterdir())
    assert sorted(p.name for p in (tmp_path / "samples-0").iterdir()) == written
    assert not (tmp_path / "samples-1").exists()  # the report's images are the main process's to write
    # the consistency strip augments with the global RNG, which threads (unlike processes) share
    for name in [n for n in written if "consistency" not in n]:
        assert (tmp_path / "samples-0" / name).read_bytes() == (tmp_path / "alone-samples" / name).read_bytes()


# -- two real processes ---------------------------------------------------------------------------------
SCRIPT = """
import json, sys
from pathlib import Path

import torch
from accelerate import PartialState

from bench.evaluate.cache import FeatureCache
from bench.evaluate.evaluator import Evaluator, metric_extractors
from bench.evaluate.metrics import EvalOptions
from bench.evaluate.shards import Shards
from bench.registry import DATASETS, METHODS, METRICS
from bench.weights import resolve_weights

data_root, cache_root, out = (Path(a) for a in sys.argv[1:4])
state = PartialState(cpu=True)  # cpu=True: the launched processes join over gloo
data = DATASETS.get("toyfaces").open(data_root, {"size": 32, "n_train": 8, "n_test": 8, "seed": 0})
cls = METHODS.get("stargan_v2")
torch.manual_seed(0)  # the same randomly initialised networks in every process: a stand-in for a checkpoint
method = cls(cls.Config.preset("tiny", image_size=32, load_size=32))
metrics = [METRICS.get(m) for m in ("fid", "kid", "lpips_diversity")]
inception = resolve_weights("inception", None, allow_standin=True)
extractors = metric_extractors(metrics, inception, {}, allow_standin=True, device=state.device)
cache = FeatureCache(cache_root)
options = EvalOptions(styles=3, bootstrap=20, kid_subsets=10)
shards = Shards.of(state)
evaluator = Evaluator(data, metrics, options, extractors, cache=cache, batch_size=3, shards=shards)
rows = evaluator.evaluate(method, "run", "tiny", seed=1)
if shards.main:
    rows += evaluator.noise_floor("run", ["a2b", "b2a"])
values = [[r.method, r.direction, r.metric, r.value, r.ci_low, r.ci_high] for r in rows]
report = {"world": shards.world, "rows": values, "misses": cache.misses, "hits": cache.hits}
(out / f"rank{state.process_index}.json").write_text(json.dumps(report))
"""


@pytest.mark.slow
def test_two_processes_score_what_one_process_scores(toyfaces_small, tmp_path: Path, standin) -> None:
    """StarGAN v2 (tiny, fixed initialisation) at 32px, 8 test images in batches of 3, under accelerate launch."""
    from bench.registry import DATASETS

    DATASETS.get("toyfaces").open(tmp_path / "data", {"size": 32, "n_train": 8, "n_test": 8, "seed": 0})  # once
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "1"  # what torchrun gives each process; thread counts change float sums (~1e-5)
    # --multi_gpu is what starts 2 processes (torchrun); with --cpu the launcher starts one, whatever its count
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    runs = {}
    for world, command in ((1, [sys.executable]), (2, launch)):
        out = tmp_path / f"world{world}"
        out.mkdir()
        args = [str(script), str(tmp_path / "data"), str(tmp_path / f"cache{world}"), str(out)]
        done = subprocess.run([*command, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[world] = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]

    (alone,), (main, other) = runs[1], runs[2]
    assert alone["world"] == 1 and main["world"] == other["world"] == 2
    assert {row[2] for row in alone["rows"]} >= {"fid", "kid", "lpips_diversity"}
    assert main["rows"] == alone["rows"]  # every value and interval, the noise floor included
    assert other["rows"] == [row for row in alone["rows"] if row[0] not in ("identity", "real_vs_real")]
    lpips = [row[3] for row in alone["rows"] if row[2] == "lpips_diversity"]
    assert all(v > 0 for v in lpips)  # styles change the outputs: the batches' styles and seeds are in play
    # only main touches the cache: testB and testA, and per direction the stored outputs' Inception features and
    # LPIPS pairs (FID and KID share the first), all missing in this fresh cache
    assert main["misses"] == 2 + 2 * 2 and (other["misses"], other["hits"]) == (0, 0)
    assert len(list((tmp_path / "cache2").glob("*.pt"))) == 2 + 2 * 2  # one file per miss: none written twice
