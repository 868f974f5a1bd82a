"""Checkpoints released by the methods' authors: the harness finds and reads the files, each method converts them.

A method declares `official_files` (glob patterns of its released files), may narrow a folder's matches with
`pick_official(names)`, and maps the states read to its own sub-modules with the pure
`convert_official(files, direction)`. Only this module opens the files, through
`bench.inception_import.load_safely`: `torch.load(weights_only=True)` or, for `.safetensors` files (what
`bench convert` writes), `safetensors.torch.load_file`, so a file from a stranger cannot run code, and one
that is refused says so in one line.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from bench.inception_import import load_safely
from methods.base import Direction, Method, load_state_dict_checked

RELEASED = "the state_dict file the method's authors released (.pth/.pt), or a .safetensors file `bench convert` wrote"


def read_state(path: Path, supply: str = RELEASED) -> Any:
    """The dict of tensors (or of nested dicts) `path` holds, read on the CPU with `torch.load(weights_only=True)`
    (a `.safetensors` file: its flat dict of tensors). WeightsError in one line otherwise, ending "; supply
    <supply>"."""
    return load_safely(Path(path), "a weights file that loads safely as a state dict", supply)


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


def released_files(method: Method) -> str:
    """What to supply where `method`'s released checkpoint is expected."""
    return (
        f"the file {method.name}'s authors released ({', '.join(method.official_files)}) or its `bench convert` output"
    )


def load_official(
    method: Method, path: str | Path, direction: Direction | None = None, supply: str | None = None
) -> list[str]:
    """Load the authors' released checkpoint at `path` into `method`; returns the sub-modules it filled.

    `direction` says which direction a single-direction file translates where its name does not; `supply`
    what a refusal tells the user to give instead (default: the method's released files).
    Raises FileNotFoundError or ValueError with what to check, WeightsError for a file that does not load safely.
    """
    supply = supply or released_files(method)
    files = {p.name: read_state(p, supply) for p in official_paths(method, path)}
    try:
        states = method.convert_official(files, direction)
    except (KeyError, TypeError, AttributeError, IndexError) as error:  # a dict, but not of what the authors saved
        detail = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ValueError(
            f"{path} does not hold what {method.name}'s released files hold ({type(error).__name__}: {detail}); "
            f"supply {supply}"
        ) from None
    for module_path, state in states.items():
        load_state_dict_checked(method.get_submodule(module_path), state, f"{path} [{module_path}]")
    return sorted(states)
