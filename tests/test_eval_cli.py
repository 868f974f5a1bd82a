"""`python -m bench eval`: harness and released checkpoints, folders of translations, tracking, bad input.

One short `bench run` is trained once for the module; the tests score what it left behind and compare
with the numbers the run itself reported. Intervals are switched off (`bootstrap=0`) to keep the file fast:
every comparison is between two evaluations with the same options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.__main__ import main
from bench.run import load_checkpoint
from methods.council_gan import CouncilGAN
from methods.cyclegan import CycleGAN
from methods.gnr import GNR

SMALL = ["--data-option", "size=32", "--data-option", "n_train=16", "--data-option", "n_test=8"]
FAST = ["--metrics", "fid,kid", "--eval-option", "bootstrap=0"]
# every column that says what a number is and how it was computed (all but run id, method and preset)
SAME = ["direction", "metric", "value", "n", "n_ref", "reference", "extractor", "weights_sha256", "preprocessing"]
SAME += ["protocol", "standard", "seed"]


@contextmanager
def _cwd(path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)


@dataclass(frozen=True)
class Scored:
    """What one `bench run` or `bench eval` left: its working directory, results document and table."""

    cwd: Path
    report_dir: Path
    result: dict
    table: pd.DataFrame

    @classmethod
    def of(cls, cwd: Path) -> Scored:
        (report_dir,) = sorted(p.parent for p in (cwd / "reports").glob("*/results.json"))
        result = json.loads((report_dir / "results.json").read_text())
        return cls(cwd, report_dir, result, pd.DataFrame(result["rows"]))  # floats exactly as computed

    def rows(self, method: str) -> pd.DataFrame:
        frame = self.table[self.table["method"] == method]
        return frame.sort_values(["direction", "metric"]).reset_index(drop=True)


@dataclass(frozen=True)
class Trained(Scored):
    checkpoint: Path = Path()
    data: list[str] | None = None  # the data options of the run, for `bench eval` to repeat

    @property
    def test_b(self) -> Path:
        return Path(self.result["dataset"]["root"]) / "testB"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Trained:
    """`bench run --methods cyclegan --steps 2 --dump-images` on a tiny toyfaces, once for the module."""
    data = ["--data-root", str(data_root), *SMALL]
    with _cwd(tmp_path_factory.mktemp("eval-trained")) as cwd:
        assert main(["run", "--methods", "cyclegan", "--steps", "2", "--dump-images", *data, *FAST, "--no-track"]) == 0
    run = Scored.of(cwd)
    checkpoint = cwd / run.result["methods"]["cyclegan"]["train"]["checkpoint"]
    assert checkpoint == sorted(checkpoint.parent.glob("step_*.pt"))[-1]  # the final one
    return Trained(run.cwd, run.report_dir, run.result, run.table, checkpoint.resolve(), data)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Scored:
    """`bench eval --checkpoint cyclegan=<the run's final checkpoint>` with MLflow on (sqlite in its cwd)."""
    with _cwd(tmp_path_factory.mktemp("eval-scored")) as cwd:
        assert main(["eval", "--checkpoint", f"cyclegan={trained.checkpoint}", *trained.data, *FAST]) == 0
    return Scored.of(cwd)


# -- harness checkpoints ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_scoring_the_final_checkpoint_reproduces_the_run(trained: Trained, scored: Scored) -> None:
    """The run's final checkpoint scored by `bench eval` gives the run's FID and KID rows, reference rows included."""
    for method in ("cyclegan", "identity", "real_vs_real"):
        expected, got = trained.rows(method), scored.rows(method)
        assert len(got) == 4 and set(got["metric"]) == {"fid", "kid"}  # two directions
        pd.testing.assert_frame_equal(got[SAME], expected[SAME])
    info = scored.result["methods"]["cyclegan"]
    assert info["status"] == "ok" and info["train"] is None
    assert info["checkpoint"] == {"path": str(trained.checkpoint), "kind": "harness"}
    assert info["config"] == trained.result["methods"]["cyclegan"]["config"]  # the fingerprint's configuration
    assert scored.result["config"]["checkpoints"] == {"cyclegan": str(trained.checkpoint)}
    assert (scored.cwd / info["sample_grid"]).is_file()
    (run_dir,) = (scored.cwd / "runs").glob("*/cyclegan")
    assert not (run_dir / "fingerprint.json").exists() and not (run_dir / "checkpoints").exists()  # not resumable
    assert (scored.report_dir / "index.html").is_file() and (scored.report_dir / "results.csv").is_file()


@pytest.mark.slow
def test_eval_is_tracked_as_one_mlflow_run(scored: Scored, trained: Trained, fid_inception) -> None:
    """With tracking on, the eval is one finished MLflow run with its metrics and the scored checkpoint's path."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{scored.cwd / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("i2i-bench/toyfaces").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id == scored.result["methods"]["cyclegan"]["mlflow_run_id"]
    table = scored.rows("cyclegan")
    for direction in ("a2b", "b2a"):
        for metric in ("fid", "kid"):  # the standard Inception: no "_nonstandard" suffix
            (value,) = table.loc[(table["direction"] == direction) & (table["metric"] == metric), "value"]
            assert run.data.metrics[f"{metric}_{direction}"] == pytest.approx(value, rel=1e-12)
    assert not any(key.startswith("train/") for key in run.data.metrics)  # nothing was trained
    assert run.data.tags["scored_checkpoint"] == str(trained.checkpoint)
    assert run.data.tags["method"] == "cyclegan" and run.data.tags["standard"] == "true"
    assert {"index.html", "results.csv", "results.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


# -- folders of translations ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dumped_translations_score_as_the_run_scored_them(trained: Trained, in_tmp: Path, capsys) -> None:
    """The a2b images `--dump-images` wrote, scored against testB, give the run's a2b FID, KID and noise floor."""
    folder = trained.report_dir / "images" / "cyclegan" / "a2b"
    args = ["eval", "--translations", str(folder), "--reference", str(trained.test_b), "--allow-standin"]
    assert main([*args, "--eval-option", "bootstrap=0", "--no-track"]) == 0  # default metrics: fid, kid
    assert "Traceback" not in capsys.readouterr().err
    result = Scored.of(in_tmp)
    assert set(result.result["methods"]) == {"a2b"}  # rows carry the folder's name
    assert result.result["methods"]["a2b"]["status"] == "ok"
    got, expected = result.rows("a2b"), trained.rows("cyclegan")
    expected = expected[expected["direction"] == "a2b"].reset_index(drop=True)
    assert list(got["metric"]) == ["fid", "kid"] and (got["n"] == 8).all() and (got["n_ref"] == 8).all()
    assert got["value"].tolist() == pytest.approx(expected["value"].tolist(), rel=1e-6)
    assert got["extractor"].tolist() == expected["extractor"].tolist()
    assert got["preprocessing"].str.contains(f"fake: files of {folder}", regex=False).all()
    floor, run_floor = result.rows("real_vs_real"), trained.rows("real_vs_real")
    run_floor = run_floor[run_floor["direction"] == "a2b"].reset_index(drop=True)
    assert list(floor["metric"]) == ["fid", "kid"] and (floor["direction"] == "a2b").all()
    assert floor["value"].tolist() == pytest.approx(run_floor["value"].tolist(), rel=1e-6)
    assert result.rows("identity").empty  # its A side holds the translations: an identity row would be their score


# -- the authors' released checkpoints --------------------------------------------------------------------------
def _official_gnr(path: Path) -> GNR:
    """A `GNR_checkpoint.pt` of a tiny GNR whose weights differ from a fresh initialisation."""
    torch.manual_seed(11)
    source = GNR.from_preset("tiny").eval()
    torch.save({"G_A2B_ema": source.G_A2B_ema.state_dict(), "G_B2A_ema": source.G_B2A_ema.state_dict()}, path)
    return source


def _official_council(folder: Path) -> CouncilGAN:
    """A folder of official `b2a_gen_<i>_<iteration>.pt` files, {'b2a': state_dict}, of a tiny council.

    The masks start open (official init) so that the members' weights show in every output.
    """
    torch.manual_seed(12)
    source = CouncilGAN.from_preset("tiny", mask_init=None).eval()
    folder.mkdir()
    for i, member in enumerate(source.gen_a2b):
        torch.save({"b2a": member.state_dict()}, folder / f"b2a_gen_{i}_00000100.pt")
    return source


@pytest.mark.slow
def test_released_checkpoints_are_scored_end_to_end(data_root: Path, in_tmp: Path, capsys) -> None:
    """A GNR file and a Council GAN folder in the official layouts load under the tiny preset and are scored;
    a CycleGAN generator file holds one direction, and only that direction is scored."""
    gnr_file, council_dir = in_tmp / "GNR_checkpoint.pt", in_tmp / "council"
    _official_gnr(gnr_file)
    _official_council(council_dir)
    generator_a = in_tmp / "latest_net_G_A.pth"
    torch.save(CycleGAN.from_preset("tiny").G_A.state_dict(), generator_a)
    args = ["eval", "--checkpoint", f"gnr={gnr_file}", "--checkpoint", f"council={council_dir}", "--dataset"]
    args[1:1] = ["--checkpoint", f"cyclegan={generator_a}"]
    data = ["toyfaces", "--data-root", str(data_root), *SMALL, *FAST, "--limit", "6", "--no-track"]
    assert main([*args, *data]) == 0
    assert "Traceback" not in capsys.readouterr().err
    result = Scored.of(in_tmp)
    assert set(result.result["methods"]) == {"gnr", "council", "cyclegan"}
    assert result.result["methods"]["cyclegan"]["directions"] == ["a2b"]  # G_B would be random weights
    assert set(result.rows("cyclegan")["direction"]) == {"a2b"}
    for name, path in (("gnr", gnr_file), ("council", council_dir)):
        info = result.result["methods"][name]
        assert info["status"] == "ok" and info["preset"] == "tiny" and info["train"] is None
        assert info["checkpoint"] == {"path": str(path.resolve()), "kind": "official"}
        rows = result.rows(name)
        # the Council files are official b2a (the harness's a2b) only: b2a would score random weights
        assert info["directions"] == (["a2b", "b2a"] if name == "gnr" else ["a2b"])
        assert set(rows["direction"]) == set(info["directions"])
        for direction in info["directions"]:
            scored = rows[rows["direction"] == direction]
            assert sorted(scored["metric"]) == ["fid", "kid"] and (scored["n"] == 6).all()  # --limit 6
    assert set(result.rows("real_vs_real")["direction"]) == {"a2b", "b2a"}


def test_load_checkpoint_really_loads_released_weights(tmp_path: Path) -> None:
    """After `load_checkpoint`, a fresh model translates exactly as the model whose weights were released."""
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    gnr = _official_gnr(tmp_path / "GNR_checkpoint.pt")
    torch.manual_seed(0)
    fresh = GNR.from_preset("tiny").eval()
    style = fresh.sample_style(2, "a2b", torch.Generator().manual_seed(3))
    assert not torch.equal(fresh.translate(x, "a2b", style=style), gnr.translate(x, "a2b", style=style))
    assert load_checkpoint(fresh, str(tmp_path / "GNR_checkpoint.pt")).kind == "official"
    for direction in ("a2b", "b2a"):
        assert torch.equal(fresh.translate(x, direction, style=style), gnr.translate(x, direction, style=style))

    council = _official_council(tmp_path / "council")
    torch.manual_seed(0)
    fresh_council = CouncilGAN.from_preset("tiny").eval()
    style = council.sample_style(2, "a2b", torch.Generator().manual_seed(3))
    before = fresh_council.translate(x, "a2b", style=style, member=0)
    assert not torch.allclose(before, council.translate(x, "a2b", style=style, member=0), atol=1e-3)
    assert load_checkpoint(fresh_council, str(tmp_path / "council")).kind == "official"
    for member in range(council.config.council_size):  # official b2a files are the harness's a2b
        expected = council.translate(x, "a2b", style=style, member=member)
        assert torch.equal(fresh_council.translate(x, "a2b", style=style, member=member), expected)


# -- bad input --------------------------------------------------------------------------------------------------
def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_missing_checkpoint_is_refused(in_tmp: Path, capsys) -> None:
    """A checkpoint path that does not exist: exit 2 with the path in the message, before any work."""
    missing = in_tmp / "runs" / "nothing" / "step_0000002.pt"
    assert main(["eval", "--checkpoint", f"cyclegan={missing}", *FAST, "--no-track"]) == 2
    err = _error(capsys)
    assert str(missing) in err and "does not exist" in err
    assert not (in_tmp / "reports").exists()


@pytest.mark.parametrize("preset", [[], ["--preset", "tiny"]], ids=["fingerprint", "preset"])
def test_a_checkpoint_of_another_method_fails_that_method(
    trained: Trained, in_tmp: Path, capsys, preset: list[str]
) -> None:
    """A cyclegan harness checkpoint given as gnr's: gnr fails with a message naming both methods, exit 1."""
    code = main(["eval", "--checkpoint", f"gnr={trained.checkpoint}", *preset, *trained.data, *FAST, "--no-track"])
    err = _error(capsys)
    assert code == 1, err
    assert "gnr: failed" in err and "'cyclegan'" in err and "'gnr'" in err
    assert Scored.of(in_tmp).result["methods"]["gnr"]["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--translations", "a2b"], "--translations DIR and --reference DIR go together"),
        (["--reference", "testB"], "--translations DIR and --reference DIR go together"),
        (["--translations", "a2b", "--reference", "testB", "--metrics", "lpips_diversity"], "set metrics only"),
        (["--translations", "a2b", "--reference", "testB", "--checkpoint", "cyclegan=x.pt"], "not both"),
        ([], "needs --checkpoint METHOD=PATH (repeatable) or --translations DIR --reference DIR"),
        (["--checkpoint", "cyclegn=x.pt"], "Did you mean: cyclegan"),
        (["--checkpoint", "cyclegan=x.pt", "--checkpoint", "cyclegan=y.pt"], "more than once"),
        (["--checkpoint", "cyclegan=x.pt", "--methods", "gnr"], "--methods must name exactly"),
    ],
    ids=["no-reference", "no-translations", "per-input-metric", "both-modes", "neither", "typo", "twice", "methods"],
)
def test_inconsistent_options_are_refused(in_tmp: Path, capsys, args: list[str], message: str) -> None:
    """Options that cannot go together: exit 2 with a message that says what to give, nothing written."""
    assert main(["eval", *args, "--no-track"]) == 2
    assert message in _error(capsys)
    assert not (in_tmp / "reports").exists() and not (in_tmp / "runs").exists()


def test_a_folder_with_one_readable_image_is_refused(trained: Trained, in_tmp: Path, capsys) -> None:
    """Set metrics need at least two images: a folder of one good and one broken file stops with exit 2."""
    folder = in_tmp / "translations"
    folder.mkdir()
    (folder / "00000.png").write_bytes((trained.test_b / "00000.png").read_bytes())
    (folder / "00001.png").write_bytes(b"not a png")
    args = ["eval", "--translations", str(folder), "--reference", str(trained.test_b), "--allow-standin"]
    assert main([*args, "--no-track"]) == 2
    err = _error(capsys)
    assert str(folder) in err and "1 readable image(s) (1 unreadable)" in err and "at least 2" in err
