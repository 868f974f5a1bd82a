"""Command line: `python -m bench run | eval | translate | reproduce | convert | list | report | cache | ...`.

With no arguments, `python -m bench run` is the offline demo: every registered method, tiny preset,
on the synthetic toyfaces dataset.

`run`, `eval` and `sanity` build one configuration tree (bench/config.py): `--config FILE` (YAML), then
`--set section.key=value` and the shorthand flags, which set tree keys too, in command-line order.

Building the parser and checking a tree import nothing heavy (torch, the methods): a typo is answered in a
fraction of a second; each command imports what it runs only once its arguments are known to be good.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.config import DEVICES, MIXED_PRECISION
from bench.errors import BenchError, ConfigError
from bench.registry import DATASETS, METHODS, METRICS, UnknownNameError

log = logging.getLogger("bench")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _yaml_value(text: str) -> Any:
    """A --set value as YAML reads it: 10 is an int, [a, b] a list, null None, anything else text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YAML value: {error}") from error


class _Parser(argparse.ArgumentParser):
    """Errors as one line, like the configuration's: the message, and where the options are listed."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class _Set(argparse.Action):
    """Append a (tree key, value) pair to `args.overrides`.

    `--set` and every shorthand flag land in that one list, so they apply in command-line order and the
    last one given wins. `key` is the tree key the flag sets; empty (`--set`) or ending in "." (`--weights`,
    `--data-option`) the value is NAME=VALUE and NAME completes the key.
    """

    def __init__(self, option_strings: list[str], dest: str, key: str = "", parse: Callable = _yaml_value, **kw):
        self.key, self.parse = key, parse
        # all share one dest, so argparse would show OVERRIDES as every metavar (choices show as {a,b})
        if kw.get("nargs") != 0 and "choices" not in kw:
            kw.setdefault("metavar", option_strings[0].lstrip("-").upper().replace("-", "_"))
        super().__init__(option_strings, "overrides", **kw)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        if self.key and not self.key.endswith("."):
            item = (self.key, self.const if self.nargs == 0 else values)
        else:
            name, sep, text = values.partition("=")
            if not sep or not name.strip():
                raise argparse.ArgumentError(self, f"expected {self.metavar}, got {values!r}")
            try:
                item = (self.key + name.strip(), self.parse(text))
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentError(self, str(error)) from error
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), item]


def _key(p: argparse.ArgumentParser, *flags: str, key: str, **kw: Any) -> None:
    """A shorthand flag that sets tree key `key` to its (typed) value."""
    p.add_argument(*flags, action=_Set, key=key, **kw)


def _switch(p: argparse.ArgumentParser, flag: str, key: str, value: bool, help: str | None = None) -> None:
    """A flag without a value that sets tree key `key` to `value`."""
    p.add_argument(flag, action=_Set, key=key, nargs=0, const=value, help=help)


def _add_tree_arguments(p: argparse.ArgumentParser) -> None:
    """The configuration tree's own options, shared by run, eval and sanity."""
    p.add_argument(
        "--config", help="YAML file of the configuration tree (as --print-config writes it); flags override it"
    )
    p.add_argument(
        "--set",
        action=_Set,
        metavar="SECTION.KEY=VALUE",
        help="set any key of the tree, repeatable, values read as YAML: --set eval.styles=10, "
        "--set data.options.size=32, --set methods=[cyclegan,gnr]; --print-config lists every key",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    _add_data_arguments(p)
    _key(p, "--preset", key="preset", help="method preset (default: tiny for toyfaces, paper for real data)")
    _key(p, "--steps", key="train.steps", type=int, help="training steps (default: the preset's epochs)")
    _key(p, "--batch-size", key="train.batch_size", type=int, help="training batch size (default: the preset's)")
    _key(p, "--seed", key="seed", type=int, help="seed of training and evaluation (default: 0)")
    _key(
        p,
        "--seeds",
        key="train.seeds",
        type=lambda text: tuple(int(v) for v in _csv(text)),
        help="comma-separated training seeds: every method trains once per seed; reports show mean +- std",
    )
    _switch(
        p, "--resume", "train.resume", True, "continue from the last checkpoint of an earlier run, same configuration"
    )
    _key(p, "--work-dir", key="work_dir", help="where checkpoints and sample grids go (default: runs)")
    _key(p, "--checkpoint-every", key="train.checkpoint_every", type=int, metavar="N")
    _key(p, "--sample-every", key="train.sample_every", type=int, metavar="N")
    _key(p, "--log-every", key="train.log_every", type=int, metavar="N")
    _key(p, "--workers", key="data.workers", type=int, help="data-loading processes (default: 0)")
    _key(
        p,
        "--mixed-precision",
        key="train.mixed_precision",
        choices=MIXED_PRECISION,
        help="Accelerate's autocast of the trained networks (default: no; fp16 needs a CUDA device)",
    )
    _switch(
        p,
        "--compile",
        "train.compile",
        True,
        "torch.compile the trained networks (default: off; on CPU it did not pay off; methods whose training "
        "cannot compile, such as R1 double backward, train eager with a warning)",
    )
    _switch(
        p,
        "--channels-last",
        "train.channels_last",
        True,
        "train with NHWC weights and batches (default: off; 4-22%% faster tiny steps on CPU for StarGAN v2, GNR and "
        "Council GAN, machine-dependent for U-GAT-IT and CycleGAN)",
    )
    _add_scoring_arguments(p)
    _key(p, "--eval-limit", key="eval.limit", type=int, metavar="N", help="evaluate only the first N test images")


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    _add_tree_arguments(p)
    methods = ",".join(METHODS.names())
    _key(p, "--methods", key="methods", type=_csv, help=f"comma-separated methods (default: all: {methods})")
    _key(p, "--dataset", key="data.dataset", help=f"one of {', '.join(DATASETS.names())} (default: toyfaces)")
    _key(p, "--data-root", key="data.root", help="dataset folder (default: datasets/<name>; toyfaces: parent folder)")
    _key(
        p,
        "--data-option",
        key="data.options.",
        metavar="KEY=VALUE",
        help="same as --set data.options.KEY=VALUE, repeatable (toyfaces: size, n_train, n_test, seed)",
    )


def _add_weights_arguments(p: argparse.ArgumentParser) -> None:
    _key(
        p,
        "--weights",
        key="weights.",
        parse=str,  # paths stay text
        metavar="NAME=PATH",
        help="pretrained file for a method's losses or a metric, repeatable (inception, vgg16, alexnet, clip)",
    )
    _key(p, "--inception-weights", key="weights.inception", metavar="PATH", help="same as --weights inception=PATH")


def _add_eval_option(p: argparse.ArgumentParser) -> None:
    _key(
        p,
        "--eval-option",
        key="eval.",
        metavar="KEY=VALUE",
        help="same as --set eval.KEY=VALUE, repeatable: reference (test|train), styles, dfid_inputs, dfid_styles, "
        "consistency_inputs, consistency_copies, equivariance_inputs, bootstrap, ci_level, kid_subsets, ...",
    )


def _add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """What `bench run` and `bench eval` share: weights, metrics, evaluation settings, outputs."""
    _key(p, "--reports-dir", key="reports_dir", help="where reports go (default: reports)")
    _key(
        p,
        "--metrics",
        key="eval.metrics",
        type=_csv,
        help=f"comma-separated metrics (default: all but fd_dinov2, fd_clip; known: {','.join(METRICS.names())})",
    )
    _key(
        p,
        "--protocol",
        key="eval.protocol",
        metavar="NAME",
        help="evaluation protocol of a paper: harness (default), ugatit, acl_gan, stargan_v2 "
        "(python -m bench reproduce --list shows what each fixes)",
    )
    _key(
        p,
        "--device",
        key="device",
        choices=DEVICES,
        help="where to train and score: auto (default: a GPU when one is visible, or accelerate launch's choice), "
        "cpu, cuda",
    )
    _add_weights_arguments(p)
    standin = (
        "without published weights, use labelled stand-ins (default: only for toyfaces; tiny presets only for losses)"
    )
    _switch(p, "--allow-standin", "weights.allow_standin", True, standin)
    _switch(p, "--no-allow-standin", "weights.allow_standin", False, "never use stand-ins")
    _key(p, "--eval-batch-size", key="eval.batch_size", type=int, metavar="N")
    _add_eval_option(p)
    dump = "also write the translated test images (one per input, as scored by FID/KID) as PNG to the report folder"
    _switch(p, "--dump-images", "eval.dump_images", True, dump)
    _switch(
        p,
        "--no-feature-cache",
        "eval.feature_cache",
        False,
        "do not read or write the feature cache of real image sets",
    )
    _switch(p, "--no-track", "track", False, "do not log to MLflow")
    _key(p, "--experiment", key="experiment", parse=str, help="MLflow experiment (default: i2i-bench/<dataset>)")


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
    _key(
        p,
        "--preset",
        key="preset",
        help="method preset of released checkpoints (default: tiny for toyfaces, else paper)",
    )
    _key(p, "--seed", key="seed", type=int, help="seed of styles, KID subsets and resampling (default: 0)")
    p.add_argument("--translations", type=Path, metavar="DIR", help="score this folder of translated images ...")
    p.add_argument("--reference", type=Path, metavar="DIR", help="... against this folder of real target images")
    p.add_argument("--name", help="the name --translations rows carry (default: the folder's name)")
    _key(
        p, "--limit", "--eval-limit", key="eval.limit", type=int, metavar="N", help="score only the first N test images"
    )
    _add_scoring_arguments(p)


def _method_path(text: str) -> tuple[str, str]:
    method, sep, path = text.partition("=")
    if not sep or not method or not path:
        raise argparse.ArgumentTypeError(f"expected METHOD=PATH, got {text!r}")
    return method.strip(), path


def _add_translate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="registered method name (python -m bench list)")
    p.add_argument("--official", required=True, type=Path, help="the authors' released checkpoint file or folder")
    p.add_argument("--input", required=True, type=Path, help="folder of images to translate (searched recursively)")
    p.add_argument("--output", required=True, type=Path, help="folder for the translated <name>.png files")
    p.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="a2b (default) or b2a")
    p.add_argument("--preset", default="paper", help="the preset the checkpoint was trained with (default: paper)")
    p.add_argument("--seed", type=int, default=0, help="seed of the styles multimodal methods draw (one per image)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace PNGs already in --output")


def _add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "results", nargs="+", type=Path, help="results.json of the run to check (several: --update-baseline)"
    )
    p.add_argument("--baseline", required=True, type=Path, help="the baseline JSON file")
    p.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the baseline from these results instead (runs with several seeds, e.g. bench run --seeds 0,1,2)",
    )


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; given `command`, the options of other commands whose modules import torch are left
    out (their commands are still listed), so that parsing imports nothing heavy."""
    p = _Parser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def needs(name: str) -> bool:
        return command is None or command == name

    run = sub.add_parser("run", help="train, evaluate, track and report (no arguments: offline demo)")
    _add_run_arguments(run)
    evaluate = sub.add_parser(
        "eval", help="score checkpoints (--checkpoint) or a folder of translations (--translations) without training"
    )
    _add_eval_arguments(evaluate)
    data = sub.add_parser("data", help="fetch datasets: python -m bench data fetch selfie2anime")
    if needs("data"):
        from bench.data.fetch import add_fetch_arguments  # imports torch (through bench.data.images)

        data_actions = data.add_subparsers(dest="data_action", required=True)
        add_fetch_arguments(data_actions.add_parser("fetch", help="download, verify and lay out a dataset"))
    weights = sub.add_parser("weights", help="pretrained files: ls, fetch, import, verify")
    if needs("weights"):
        from bench.weights_cli import add_weights_arguments  # imports torch

        add_weights_arguments(weights)
    _add_translate_arguments(
        sub.add_parser("translate", help="translate a folder of images with a released checkpoint")
    )
    convert = sub.add_parser("convert", help="convert released weights the harness cannot read: ugatit-tf (TensorFlow)")
    if needs("convert"):
        from bench.convert import add_convert_arguments  # imports torch

        add_convert_arguments(convert)
    _add_check_arguments(sub.add_parser("check", help="regression gate: a run's results against a baseline"))
    reproduce = sub.add_parser("reproduce", help="a paper's table beside what its protocol measures here (--list)")
    reproduce.add_argument("table", nargs="?", help="table id (python -m bench reproduce --list)")
    reproduce.add_argument("--list", action="store_true", help="list the tables, their sources and the protocols")
    _add_eval_arguments(reproduce)
    sub.add_parser("list", help="list registered methods, datasets and metrics")
    from bench.track_cli import add_report_server_arguments, add_track_arguments

    report = sub.add_parser(
        "report", help="rebuild the HTML report of a past run from its results.json or an MLflow experiment"
    )
    report.add_argument("results", type=Path, nargs="?", help="path to results.json")
    add_report_server_arguments(report)
    add_track_arguments(sub.add_parser("track", help="MLflow: push a run's results that were not logged live"))
    cache = sub.add_parser("cache", help="list or clear the feature cache of real image sets")
    cache.add_argument("action", choices=("ls", "clear"))
    sanity = sub.add_parser("sanity", help="check that every metric ranks toyfaces reference translators as it claims")
    sanity.add_argument("--direction", choices=("a2b", "b2a"), default="a2b")
    _add_tree_arguments(sanity)
    _key(sanity, "--seed", key="seed", type=int)
    _key(sanity, "--data-root", key="data.root", help="toyfaces parent folder (default: datasets/)")
    _key(sanity, "--data-option", key="data.options.", metavar="KEY=VALUE", help="same as --set data.options.KEY=VALUE")
    _key(sanity, "--metrics", key="eval.metrics", type=_csv, help="metrics to check (default: every one with checks)")
    _add_weights_arguments(sanity)
    _key(sanity, "--eval-limit", key="eval.limit", type=int, metavar="N", help="use only the first N test images")
    _add_eval_option(sanity)
    return p


def cmd_list() -> int:
    for title, registry in (("methods", METHODS), ("datasets", DATASETS), ("metrics", METRICS)):
        print(f"{title}:")
        width = max(len(n) for n in registry.names())
        for name in registry.names():
            print(f"  {name:<{width}}  {registry.description(name)}")
    return 0


def _load(args: argparse.Namespace, *extra: tuple[str, Any]) -> Any:
    """The configuration tree of `args`: its --config file, then its overrides in order, then `extra`."""
    from bench.config import load_config

    return load_config(args.config, [*(args.overrides or []), *extra])


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    cfg = _load(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from bench.run import run  # after the checks: it imports torch, Accelerate and the harness

    return _print_outcome(run(cfg, command=_command(argv)))


def cmd_eval(args: argparse.Namespace, argv: list[str]) -> int:
    checkpoints = dict(args.checkpoint or [])
    if len(checkpoints) < len(args.checkpoint or []):
        raise ConfigError("--checkpoint names a method more than once")
    cfg = _load(args, *([("checkpoints", checkpoints)] if checkpoints else []))
    if args.translations is not None or args.reference is not None:
        if args.translations is None or args.reference is None:
            raise ConfigError("--translations DIR and --reference DIR go together: translated images, real images")
        if cfg.checkpoints:
            raise ConfigError("give either --checkpoint METHOD=PATH or --translations/--reference, not both")
        if args.print_config:
            print(cfg.to_yaml(), end="")
            return 0
        from bench.score import score_translations  # after the checks, as in cmd_run

        outcome = score_translations(cfg, args.translations, args.reference, args.name, command=_command(argv))
        return _print_outcome(outcome)
    if not cfg.checkpoints:
        raise ConfigError(
            "bench eval needs --checkpoint METHOD=PATH (repeatable) or --translations DIR --reference DIR; "
            "see python -m bench eval --help"
        )
    if cfg.methods and set(cfg.methods) != set(cfg.checkpoints):
        raise ConfigError("with --checkpoint, --methods must name exactly the methods that have a checkpoint")
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from bench.run import run

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

    if (args.results is None) == (args.mlflow_experiment is None):
        raise ConfigError("bench report needs a results.json or --mlflow-experiment NAME (one of the two)")
    if args.mlflow_experiment is not None:
        from bench.track_cli import run_report_from_server

        return run_report_from_server(args)
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
        if key.get("kind") == "translations":  # what a translator's outputs gave a metric (bench.evaluate.cache)
            extractor = key["extractor"][0]
            print(
                f"                {extractor}, translator {key['translator'][:12]}, {key['n']} inputs, seed {key['seed']}"
            )
        else:
            print(
                f"                {key['extractor']} @ {key['resolution']}px, images sha256 {key['content_sha256'][:12]}"
            )
    return 0


def cmd_sanity(args: argparse.Namespace) -> int:
    cfg = _load(args, ("data.dataset", "toyfaces"))  # the reference translators exist for toyfaces only
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from bench.evaluate.cache import FeatureCache  # after the checks: these import torch
    from bench.evaluate.evaluator import Evaluator, metric_extractors
    from bench.evaluate.sanity import SANITY_METRICS, run_sanity
    from bench.weights import resolve_weights

    data = DATASETS.get("toyfaces").open(Path(cfg.data.root) if cfg.data.root else None, cfg.data.options)
    metrics = [METRICS.get(name) for name in (cfg.eval.metrics or SANITY_METRICS)]
    weights = cfg.weights.paths()
    inception = resolve_weights("inception", weights.get("inception"), allow_standin=True)
    extractors = metric_extractors(metrics, inception, weights, allow_standin=True, device="cpu")
    evaluator = Evaluator(data, metrics, cfg.eval, extractors, cache=FeatureCache(), limit=cfg.eval.limit)
    result = run_sanity(evaluator, args.direction, cfg.seed)
    print(result.render())
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv[0] if argv else None).parse_args(argv)
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
        if args.command == "track":
            from bench.track_cli import run_track

            return run_track(args)
        if args.command == "check":
            from bench.check import run_check

            return run_check(args)
        if args.command == "reproduce":
            from bench.reproduce import run_reproduce

            return run_reproduce(args, argv, _load, _command(argv))
        if args.command == "translate":
            METHODS.check(args.method)  # before bench.translate imports torch and the method
            from bench.translate import run_translate

            return run_translate(args)
        if args.command == "convert":
            from bench.convert import run_convert

            return run_convert(args)
        if args.command == "weights":
            from bench.weights_cli import run_weights

            return run_weights(args)
        return cmd_run(args, argv)
    except (BenchError, UnknownNameError) as error:  # ConfigError is a BenchError
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
