"""Command line: `python -m bench run | eval | list | report | cache | sanity | weights | data`.

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
    _add_data_arguments(p)
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
    p.add_argument("--checkpoint-every", type=int, metavar="N")
    p.add_argument("--sample-every", type=int, metavar="N")
    p.add_argument("--log-every", type=int, metavar="N")
    p.add_argument("--workers", type=int, help="data-loading processes (default: 0)")
    _add_scoring_arguments(p)
    p.add_argument("--eval-limit", type=int, metavar="N", help="evaluate only the first N test images per direction")


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
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


def _add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """What `bench run` and `bench eval` share: weights, metrics, evaluation settings, outputs."""
    p.add_argument("--reports-dir", help="where reports go (default: reports)")
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


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    _add_data_arguments(p)
    p.add_argument(
        "--checkpoint",
        action="append",
        type=_method_path,
        metavar="METHOD=PATH",
        help="score this checkpoint of METHOD, repeatable: a harness checkpoint (runs/.../step_*.pt, its own "
        "configuration) or the authors' released file (with --preset, default paper on real data)",
    )
    p.add_argument("--preset", help="method preset of released checkpoints (default: tiny for toyfaces, else paper)")
    p.add_argument("--seed", type=int, help="seed of styles, KID subsets and resampling (default: 0)")
    p.add_argument("--translations", type=Path, metavar="DIR", help="score this folder of translated images ...")
    p.add_argument("--reference", type=Path, metavar="DIR", help="... against this folder of real target images")
    p.add_argument("--name", help="the name --translations rows carry (default: the folder's name)")
    p.add_argument(
        "--limit", "--eval-limit", dest="eval_limit", type=int, metavar="N", help="score only the first N test images"
    )
    _add_scoring_arguments(p)


def _method_path(text: str) -> tuple[str, str]:
    method, sep, path = text.partition("=")
    if not sep or not method or not path:
        raise argparse.ArgumentTypeError(f"expected METHOD=PATH, got {text!r}")
    return method.strip(), path


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
    evaluate = sub.add_parser(
        "eval", help="score checkpoints (--checkpoint) or a folder of translations (--translations) without training"
    )
    _add_eval_arguments(evaluate)
    from bench.data.fetch import add_fetch_arguments
    from bench.weights_cli import add_weights_arguments

    data = sub.add_parser("data", help="fetch datasets: python -m bench data fetch selfie2anime")
    data_actions = data.add_subparsers(dest="data_action", required=True)
    add_fetch_arguments(data_actions.add_parser("fetch", help="download, verify and lay out a dataset"))
    add_weights_arguments(sub.add_parser("weights", help="pretrained files: ls, fetch, import, verify"))
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


def _overrides(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """RunConfig fields from parsed options (None: not given, so the YAML file or the default holds)."""
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip)}
    overrides["data_options"] = dict(overrides.pop("data_option") or []) or None
    overrides["weights"] = {k: str(v) for k, v in args.weights} if args.weights else None
    overrides["eval_options"] = dict(overrides.pop("eval_option") or []) or None
    return overrides


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config import load_config
    from bench.run import run

    cfg = load_config(args.config, _overrides(args))
    return _print_outcome(run(cfg, command=_command(argv)))


def cmd_eval(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config import load_config
    from bench.run import run
    from bench.score import score_translations

    overrides = _overrides(args, skip=("checkpoint", "translations", "reference", "name"))
    if args.translations is not None or args.reference is not None:
        if args.translations is None or args.reference is None:
            raise ConfigError("--translations DIR and --reference DIR go together: translated images, real images")
        if args.checkpoint:
            raise ConfigError("give either --checkpoint METHOD=PATH or --translations/--reference, not both")
        cfg = load_config(args.config, overrides)
        outcome = score_translations(cfg, args.translations, args.reference, args.name, command=_command(argv))
        return _print_outcome(outcome)
    if not args.checkpoint:
        raise ConfigError(
            "bench eval needs --checkpoint METHOD=PATH (repeatable) or --translations DIR --reference DIR; "
            "see python -m bench eval --help"
        )
    checkpoints = dict(args.checkpoint)
    if len(checkpoints) < len(args.checkpoint):
        raise ConfigError("--checkpoint names a method more than once")
    unknown = [m for m in checkpoints if m not in METHODS]
    if unknown:
        METHODS.get(unknown[0])  # raises with "did you mean"
    if args.methods and set(args.methods) != set(checkpoints):
        raise ConfigError("with --checkpoint, --methods must name exactly the methods that have a checkpoint")
    overrides["checkpoints"] = checkpoints
    cfg = load_config(args.config, overrides)
    return _print_outcome(run(cfg, command=_command(argv)))


def _command(argv: list[str]) -> str:
    return "python -m bench " + " ".join(shlex.quote(a) for a in argv)


def _print_outcome(outcome: Any) -> int:
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
        if args.command == "eval":
            return cmd_eval(args, argv)
        if args.command == "data":
            from bench.data.fetch import run_fetch

            return run_fetch(args)
        if args.command == "weights":
            from bench.weights_cli import run_weights

            return run_weights(args)
        return cmd_run(args, argv)
    except (BenchError, ConfigError, UnknownNameError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
