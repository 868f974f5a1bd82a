"""`python -m bench convert FORMAT SOURCE OUT.safetensors`: released weights the harness cannot read directly,
converted once into a `.safetensors` file that `bench eval --checkpoint` and `bench translate --official` load.

`ugatit-tf` reads the TensorFlow 1 checkpoint of taki0112/UGATIT (the only released U-GAT-IT weights) with
TensorFlow's own reader, the optional extra `pip install '.[tf]'` that nothing else needs; the method maps the
variables onto its `tf_compat` generators without touching a file (`UGATIT.from_tensorflow`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.registry import METHODS

# format -> (method, its pure converter from {TF variable name: tensor} to a flat state, the presets it fits)
CONVERSIONS = {"ugatit-tf": ("ugatit", "from_tensorflow", "paper_tf (paper_tf_light for a light checkpoint)")}


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=sorted(CONVERSIONS), help="ugatit-tf: a TensorFlow checkpoint of taki0112/UGATIT")
    p.add_argument(
        "source", type=Path, help="checkpoint folder (with its `checkpoint` file) or prefix (UGATIT.model-N)"
    )
    p.add_argument("output", type=Path, help="the .safetensors file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def read_tensorflow_checkpoint(source: Path) -> dict[str, torch.Tensor]:
    """Every variable of a TensorFlow checkpoint (a folder's latest, or a prefix) as CPU tensors, by name."""
    try:
        import tensorflow as tf  # the optional extra; imported only here
    except ImportError:
        raise BenchError("reading a TensorFlow checkpoint needs TensorFlow: pip install '.[tf]'") from None
    try:
        reader = tf.train.load_checkpoint(str(source))
    except (ValueError, tf.errors.OpError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BenchError(f"{source} is not a readable TensorFlow checkpoint: {first_line[:200]}") from None
    return {name: torch.from_numpy(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}


def run_convert(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    method, converter, presets = CONVERSIONS[args.format]
    if args.output.suffix != ".safetensors":
        raise BenchError(
            f"the output must be a .safetensors file (the harness reads it by that suffix), got {args.output}"
        )
    if args.output.exists() and not args.overwrite:
        raise BenchError(f"{args.output} exists; pass --overwrite")
    variables = read_tensorflow_checkpoint(args.source)
    try:
        state = getattr(METHODS.get(method), converter)(variables)
    except ValueError as error:
        raise BenchError(f"{args.source} is not a {args.format} checkpoint: {error}") from error
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.output), metadata={"format": args.format, "source": str(args.source)})
    print(f"wrote {len(state)} tensors of {method} to {args.output}; load it with --preset {presets}")
    return 0
