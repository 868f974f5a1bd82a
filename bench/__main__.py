"""Command line: `python -m bench run | list | report | cache | sanity`.

With no arguments, `python -m bench run` is the offline demo: every registered method, tiny preset,
on the synthetic toyfaces dataset.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError
from bench.registry import DATASETS, METHODS, METRICS, UnknownNameError
from methods.base import ConfigError

log = logging.getLogger("bench")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of run settings; command-line options override it")
    p.add_argument("--methods", type=_csv, help=f"comma-separated methods (default: all: {','.join(METHODS.names())})")
    p.add_argument("--dataset", help=f"one of {', '.join(DATASETS.names())} (default: toyfaces)")
    p.add_argument("--data-root", help="dataset folder (selfie2anime: datasets/selfie2anime; toyfaces: parent folder)")
    p.add_argument(
        "--data-option",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="dataset option, repeatable (toyfaces: size, n_train, n_test, seed)",
    )
    p.add_argument("--preset", help="method preset (default: tiny for toyfaces, paper for real data)")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's epochs)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the preset's)")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--seeds",
        type=lambda text: tuple(int(v) for v in _csv(text)),
        help="comma-separated training seeds: every method trains once per seed; reports show mean +- std",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue from the last checkpoint of an earlier run with the same configuration",
    )
    p.add_argument("--work-dir", help="where checkpoints and sample grids go (default: runs)")
    p.add_argument("--reports-dir", help="where reports go (default: reports)")
    p.add_argument("--checkpoint-every", type=int, metavar="N")
    p.add_argument("--sample-every", type=int, metavar="N")
    p.add_argument("--log-every", type=int, metavar="N")
    p.add_argument("--workers", type=int, help="data-loading processes (default: 0)")
    p.add_argument(
        "--metrics",
        type=_csv,
        help=f"comma-separated metrics (default: all but fd_dinov2, fd_clip; known: {','.join(METRICS.names())})",
    )
    p.add_argument("--inception-weights", metavar="PATH", help="torch-fidelity InceptionV3 weights file for FID/KID")
    p.add_argument(
        "--weights",
        action="append",
        type=_key_value,
        metavar="NAME=PATH",
        help="pretrained file for a method's losses or a metric, repeatable (names: vgg16, alexnet)",
    )
    p.add_argument(
        "--allow-standin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="without published weights, use labelled stand-ins (default: only for toyfaces; tiny presets only for losses)",
    )
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--eval-limit", type=int, metavar="N", help="evaluate only the first N test images per direction")
    p.add_argument("--kid-subset-size", type=int)
    p.add_argument("--kid-subsets", type=int)
    _add_eval_option(p)
    p.add_argument(
        "--dump-images",
        action="store_true",
        default=None,
        help="also write the translated test images (one per input, as scored by FID/KID) as PNG to the report folder",
    )
    p.add_argument(
        "--no-feature-cache",
        dest="feature_cache",
        action="store_false",
        default=None,
        help="do not read or write the feature cache of real image sets",
    )
    p.add_argument("--no-track", dest="track", action="store_false", default=None, help="do not log to MLflow")


def _add_eval_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval-option",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="evaluation setting, repeatable: reference (test|train), styles, dfid_inputs, dfid_styles, "
        "consistency_inputs, consistency_copies, equivariance_inputs, bootstrap, ci_level, throughput_batch, ...",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train, evaluate, track and report (no arguments: offline demo)")
    _add_run_arguments(run)
    sub.add_parser("list", help="list registered methods, datasets and metrics")
    report = sub.add_parser("report", help="rebuild the HTML report of a past run from its results.json")
    report.add_argument("results", type=Path, help="path to results.json")
    cache = sub.add_parser("cache", help="list or clear the feature cache of real image sets")
    cache.add_argument("action", choices=("ls", "clear"))
    sanity = sub.add_parser("sanity", help="check that every metric ranks toyfaces reference translators as it claims")
    sanity.add_argument("--direction", choices=("a2b", "b2a"), default="a2b")
    sanity.add_argument("--seed", type=int, default=0)
    sanity.add_argument("--data-root", help="toyfaces parent folder (default: datasets/)")
    sanity.add_argument("--data-option", action="append", type=_key_value, metavar="KEY=VALUE", help="toyfaces option")
    sanity.add_argument(
        "--metrics", type=_csv, help="metrics to check (default: every metric the suite has checks for)"
    )
    sanity.add_argument("--inception-weights", metavar="PATH")
    sanity.add_argument("--weights", action="append", type=_key_value, metavar="NAME=PATH")
    sanity.add_argument("--eval-limit", type=int, metavar="N", help="use only the first N test images")
    _add_eval_option(sanity)
    return p


def cmd_list() -> int:
    for title, registry in (("methods", METHODS), ("datasets", DATASETS), ("metrics", METRICS)):
        print(f"{title}:")
        width = max(len(n) for n in registry.names())
        for name in registry.names():
            print(f"  {name:<{width}}  {registry.description(name)}")
    return 0


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config import load_config
    from bench.run import run

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    overrides["data_options"] = dict(args.data_option) if args.data_option else None
    overrides.pop("data_option")
    overrides["weights"] = {k: str(v) for k, v in args.weights} if args.weights else None
    overrides["eval_options"] = dict(args.eval_option) if args.eval_option else None
    overrides.pop("eval_option")
    cfg = load_config(args.config, overrides)
    outcome = run(cfg, command="python -m bench " + " ".join(shlex.quote(a) for a in argv))
    table = outcome.result.table()
    if not table.empty:
        print(f"\n{summary_table(table)}\n")
    for name, info in outcome.result.methods.items():
        if info["status"] != "ok":
            print(f"{name}: {info['status']}: {info['error']}", file=sys.stderr)
    if outcome.report:
        print(f"report:  {outcome.report}")
        print(f"results: {outcome.report.parent / 'results.csv'}")
    print(f"mlflow:  {outcome.tracking_uri}")
    return 0 if outcome.ok else 1


def summary_table(table: Any) -> str:
    """Quality metrics as method x direction rows (KID x100), with the extractors' labels beneath."""
    quality = table[[m in METRICS and METRICS.get(m).higher_is_better is not None for m in table["metric"]]].copy()
    quality["metric"] = [f"{m} x100" if m == "kid" else m for m in quality["metric"]]
    quality["value"] = [v * 100 if m == "kid x100" else v for v, m in zip(quality["value"], quality["metric"])]
    wide = quality.pivot_table(index=["method", "direction"], columns="metric", values="value", sort=False)
    extractors = "\n".join(f"  {e}" for e in dict.fromkeys(quality["extractor"]))
    return f"{wide.to_string(float_format=lambda v: f'{v:.4g}')}\n\nextractors:\n{extractors}"


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report
    from bench.results import RunResult

    result = RunResult.load(args.results)
    print(build_report(result, args.results.parent))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from bench.evaluate.cache import FeatureCache

    cache = FeatureCache()
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.root}")
        return 0
    entries = cache.entries()
    print(f"{cache.root}: {len(entries)} entries, {sum(e.bytes for e in entries) / 1e6:.1f} MB")
    for e in entries:
        key = e.key
        print(f"  {e.path.stem[:12]}  {e.created}  {e.count:>6} x  {e.bytes / 1e6:7.2f} MB  {e.label}")
        print(f"                {key['extractor']} @ {key['resolution']}px, images sha256 {key['content_sha256'][:12]}")
    return 0


def cmd_sanity(args: argparse.Namespace) -> int:
    from bench.evaluate.cache import FeatureCache
    from bench.evaluate.evaluator import Evaluator, metric_extractors
    from bench.evaluate.metrics import EvalOptions
    from bench.evaluate.sanity import SANITY_METRICS, run_sanity
    from bench.weights import resolve_weights

    spec = DATASETS.get("toyfaces")
    data = spec.open(Path(args.data_root) if args.data_root else None, dict(args.data_option or []))
    metrics = [METRICS.get(name) for name in (args.metrics or SANITY_METRICS)]
    weights = {k: str(v) for k, v in (args.weights or [])}
    inception = resolve_weights("inception", args.inception_weights or weights.get("inception"), allow_standin=True)
    options = EvalOptions.from_dict({**spec.eval_defaults, "seed": args.seed, **dict(args.eval_option or [])})
    extractors = metric_extractors(metrics, inception, weights, allow_standin=True, device="cpu")
    evaluator = Evaluator(data, metrics, options, extractors, cache=FeatureCache(), limit=args.eval_limit)
    result = run_sanity(evaluator, args.direction, args.seed)
    print(result.render())
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "report":
            return cmd_report(args)
        if args.command == "cache":
            return cmd_cache(args)
        if args.command == "sanity":
            return cmd_sanity(args)
        return cmd_run(args, argv)
    except (BenchError, ConfigError, UnknownNameError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
