"""Golden values: pinned outputs that a change not meant to alter a network (or a training step) must keep.

Each golden stores, per tensor, its shape, float64 sum and absolute sum, 64 evenly spaced values and a sha256 of
its bytes. On the machine kind that recorded it (same torch version and CPU capability) the hash must match
exactly; elsewhere kernels may round differently, so the statistics must agree closely instead.

Re-record after an intended change with `BENCH_RECORD_GOLDENS=1 python -m pytest tests/test_goldens.py`, and
say in the commit message why the values moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

GOLDEN_DIR = Path(__file__).parent / "goldens"
RECORDING = os.environ.get("BENCH_RECORD_GOLDENS") == "1"
SAMPLES = 64


def machine() -> str:
    return f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}"


def summary(tensor: torch.Tensor) -> dict[str, Any]:
    flat = tensor.detach().cpu().contiguous().flatten()
    index = torch.linspace(0, flat.numel() - 1, min(SAMPLES, flat.numel())).long()
    return {
        "shape": list(tensor.shape),
        "sum": float(flat.double().sum()),
        "abs_sum": float(flat.double().abs().sum()),
        "samples": flat[index].double().tolist(),
        "sha256": hashlib.sha256(flat.numpy().tobytes()).hexdigest(),
    }


def check(name: str, values: dict[str, torch.Tensor | float], rtol: float = 1e-4) -> None:
    """Compare `values` with golden file `name`.json (or write it when recording)."""
    path = GOLDEN_DIR / f"{name}.json"
    got = {k: summary(v) if isinstance(v, torch.Tensor) else float(v) for k, v in values.items()}
    if RECORDING:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(json.dumps({"machine": machine(), "values": got}, indent=1, sort_keys=True) + "\n")
        return
    assert path.exists(), f"no golden {path}: record it with BENCH_RECORD_GOLDENS=1"
    golden = json.loads(path.read_text())
    expected = golden["values"]
    assert sorted(got) == sorted(expected), f"{name}: values {sorted(got)} vs golden {sorted(expected)}"
    exact = golden["machine"] == machine()
    for key, want in expected.items():
        have = got[key]
        if not isinstance(want, dict):
            assert have == want if exact else abs(have - want) <= rtol * max(1.0, abs(want)), f"{name}.{key}"
            continue
        assert have["shape"] == want["shape"], f"{name}.{key}: shape {have['shape']} vs {want['shape']}"
        if exact:
            assert have["sha256"] == want["sha256"], f"{name}.{key}: output changed (bitwise, on {machine()})"
            continue
        scale = max(1.0, want["abs_sum"] / max(1, len(want["samples"])))
        for stat in ("sum", "abs_sum"):
            assert abs(have[stat] - want[stat]) <= rtol * max(scale, abs(want["abs_sum"])), f"{name}.{key}.{stat}"
        worst = max(abs(a - b) for a, b in zip(have["samples"], want["samples"]))
        assert worst <= rtol * max(1.0, max(abs(b) for b in want["samples"])), f"{name}.{key}: {worst}"
