"""Adding a method takes one file and one registration: a toy method defined here trains, resumes, translates,
loads its "released" file and is scored by `bench run`, through the same code paths as the five real ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from bench.__main__ import main
from bench.registry import METHODS
from methods.base import Batch, Direction, Method, MethodConfig, Networks, Update, check_direction


@dataclass(frozen=True)
class ColourShiftConfig(MethodConfig):
    image_size: int = 32
    load_size: int = 32
    batch_size: int = 2
    epochs: float = 1.0
    lr: float = 0.05
    noise: float = 0.05  # input noise: a random draw, to show where a step's randomness comes from

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "tiny": {}}


class ColourShift(Method):
    """Per direction a 1x1 convolution, trained so that its outputs' channel means match the target domain's."""

    name = "colour_shift"
    Config = ColourShiftConfig
    networks = ("to_b", "to_a")

    def __init__(self, config: ColourShiftConfig) -> None:
        super().__init__(config)
        self.to_b, self.to_a = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": torch.optim.Adam([*self.to_b.parameters(), *self.to_a.parameters()], self.config.lr)}

    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        noise = self.config.noise * torch.randn(batch.a.shape, generator=rng).to(batch.a.device)
        fake_b, fake_a = nets.to_b(batch.a + noise), nets.to_a(batch.b + noise)
        means = {"b": (fake_b.mean((0, 2, 3)) - batch.b.mean((0, 2, 3))).abs().sum()}
        means["a"] = (fake_a.mean((0, 2, 3)) - batch.a.mean((0, 2, 3))).abs().sum()
        yield Update("G", means["a"] + means["b"], {f"mean_{k}": v for k, v in means.items()})

    def translate(
        self,
        x: Tensor,
        direction: Direction = "a2b",
        *,
        style: Tensor | None = None,
        reference: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        with torch.no_grad():
            return (self.to_b if check_direction(direction) == "a2b" else self.to_a)(x).clamp(-1, 1)

    official_files = ("colour_shift.pt",)

    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        return ("to_b",) if check_direction(direction) == "a2b" else ("to_a",)

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        ((state,),) = [files.values()]
        return {"to_b": state["A2B"], "to_a": state["B2A"]}  # the "authors'" names differ from ours


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # the registration ends with the test
    METHODS.register(ColourShift.name, f"{__name__}:ColourShift", "a toy: per-direction 1x1 colour shift")
    return ColourShift.name


def test_a_method_defined_in_a_test_file_runs_through_the_harness(registered: str, in_tmp: Path, standin) -> None:
    from bench.train import Checkpointer

    args = ["run", "--methods", registered, "--steps", "4", "--checkpoint-every", "2", "--metrics", "fid,kid"]
    args += ["--data-option", "size=32", "--data-option", "n_train=8", "--data-option", "n_test=8", "--no-track"]
    assert main(args) == 0
    (run,) = (in_tmp / "runs").iterdir()
    trained = Checkpointer.load(run / registered / "checkpoints" / "step_0000004.pt")["networks"]
    (run / registered / "checkpoints" / "step_0000004.pt").unlink()
    assert main([*args, "--resume"]) == 0  # continues from step 2 to the same weights
    results = sorted((in_tmp / "reports").glob("*/results.json"))
    methods = json.loads(results[-1].read_text())["methods"]
    assert methods[registered]["status"] == "ok" and methods[registered]["train"]["resumed_from"] == 2
    rows = json.loads(results[-1].read_text())["rows"]
    assert {(r["metric"], r["direction"]) for r in rows if r["method"] == registered} >= {
        ("fid", "a2b"),
        ("kid", "b2a"),
    }
    (second,) = set((in_tmp / "runs").iterdir()) - {run}
    resumed = Checkpointer.load(second / registered / "checkpoints" / "step_0000004.pt")["networks"]
    assert all(torch.equal(trained[n][k], resumed[n][k]) for n in trained for k in trained[n])

    # Its "released" file, in the authors' layout, translates a folder of images.
    torch.save({"A2B": trained["to_b"], "B2A": trained["to_a"]}, in_tmp / "colour_shift.pt")
    (in_tmp / "faces").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 120, 90)).save(in_tmp / "faces" / "one.png")
    translate = ["translate", "--method", registered, "--official", str(in_tmp / "colour_shift.pt")]
    assert main([*translate, "--input", str(in_tmp / "faces"), "--output", str(in_tmp / "out")]) == 0
    assert (in_tmp / "out" / "one.png").is_file()
