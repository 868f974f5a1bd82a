"""The import rules of the README's Layout section: the import-linter contracts in pyproject.toml, and the
allow-list of third-party libraries in `methods` (a forbidden contract can only list the ones it rejects)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
# The libraries the official implementations use for their losses and augmentations.
METHOD_LIBRARIES = {"torch", "torchvision", "kornia", "lpips"}


def test_import_contracts_are_kept() -> None:
    # A subprocess: import-linter puts its working directory on sys.path. No cache: nothing left in the checkout.
    lint = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    result = subprocess.run([sys.executable, "-c", lint], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout


def test_methods_import_only_torch_torchvision_kornia_lpips_and_the_standard_library() -> None:
    graph = grimp.build_graph("methods", include_external_packages=True, cache_dir=None)
    outside = {  # top-level packages each module of `methods` imports, other than the standard library
        module: {name.split(".")[0] for name in graph.find_modules_directly_imported_by(module)}
        - set(sys.stdlib_module_names)
        - {"methods"}
        for module in graph.modules
        if module == "methods" or module.startswith("methods.")
    }
    assert "methods.gnr" in outside  # the graph holds the method files
    assert {module: names - METHOD_LIBRARIES for module, names in outside.items() if names - METHOD_LIBRARIES} == {}
    # The interface is imported by every layer of the harness (bench.data included), so it pulls in torch only.
    assert outside["methods.base"] <= {"torch"}
