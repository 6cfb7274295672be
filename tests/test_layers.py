"""The import layers in pyproject.toml hold, and they reach the package-dir mapped folders.

lint-imports walks folders, so it runs from the installed layout that .ci/installed_tree.py
lays out; without it dwlab.drivers, dwlab.sim and dwlab.protocols would go unseen.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def installed_tree(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("installed_tree", ROOT / ".ci/installed_tree.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lay_out(dest)


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", ROOT / "pyproject.toml"],
        cwd=tree, capture_output=True, text=True, timeout=120,
    )


def test_the_layers_hold(tmp_path):
    result = lint_imports(installed_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder, forbidden", [
    ("drivers", "dwlab.sim"), ("sim", "dwlab.protocols"), ("protocols", "dwlab.drivers"),
])
def test_a_mapped_package_importing_a_sibling_breaks_the_layers(tmp_path, folder, forbidden):
    tree = installed_tree(tmp_path)
    package = tree / "dwlab" / folder
    package.unlink()  # a link to the real folder: edit a copy instead
    shutil.copytree(ROOT / folder, package)
    with open(package / "__init__.py", "a") as init:
        init.write(f"\nimport {forbidden}\n")

    result = lint_imports(tree)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"dwlab.{folder} -> {forbidden}" in result.stdout
