"""Checkpoints released by the methods' authors: the harness finds and reads the files, each method converts them.

A method declares `official_files` (glob patterns of its released files), may narrow a folder's matches with
`pick_official(names)`, and maps the states read to its own sub-modules with the pure
`convert_official(files, direction)`. Only this module opens the files, with `torch.load(weights_only=True)`
or, for `.safetensors` files (what `bench convert` writes), `safetensors.torch.load_file`, so a file from a
stranger cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import torch

from methods.base import Direction, Method, load_state_dict_checked


def read_state(path: Path) -> Any:
    """What `torch.load(weights_only=True)` reads from `path`, on the CPU (a `.safetensors` file: its flat dict
    of tensors); ValueError in one line otherwise."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable safetensors file: {str(error).strip()[:200]}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} is not a weights file that loads safely (torch.load weights_only=True): {first_line[:200]}. "
            "Supply the state_dict file the method's authors released."
        ) from None


def official_paths(method: Method, path: str | Path) -> list[Path]:
    """The released files that `path` names: the file itself, or the files in a folder that match the
    method's patterns, as the method picks them. A path that does not exist but whose folder does selects
    that folder's matching files whose names contain its last part (the official `--checkpoint
    <dir>/<iteration>` form of Council GAN)."""
    source = Path(path).expanduser()
    if source.is_file():
        return [source]
    if source.is_dir():
        folder, names = source, [p.name for p in source.iterdir() if p.is_file()]
    elif source.parent.is_dir():
        folder, names = source.parent, [p.name for p in source.parent.iterdir() if source.name in p.name]
    else:
        raise FileNotFoundError(f"{source} does not exist")
    matching = sorted(n for n in names if any(fnmatch(n, pattern) for pattern in method.official_files))
    picked = method.pick_official(matching) if matching else []
    if not picked:
        raise FileNotFoundError(
            f"{source} holds no released {method.name} file (looked for {', '.join(method.official_files)})"
        )
    return [folder / name for name in picked]


def load_official(method: Method, path: str | Path, direction: Direction | None = None) -> list[str]:
    """Load the authors' released checkpoint at `path` into `method`; returns the sub-modules it filled.

    `direction` says which direction a single-direction file translates where its name does not.
    Raises FileNotFoundError or ValueError with what to check.
    """
    files = {p.name: read_state(p) for p in official_paths(method, path)}
    states = method.convert_official(files, direction)
    for module_path, state in states.items():
        load_state_dict_checked(method.get_submodule(module_path), state, f"{path} [{module_path}]")
    return sorted(states)
