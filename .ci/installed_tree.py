"""Lay out the dwlab package as installed, in symlinks, for tools that walk folders.

dwlab.drivers, dwlab.sim and dwlab.protocols live in the top-level folders drivers/, sim/
and protocols/, mapped by ``[tool.setuptools.package-dir]``. An editable install resolves
them with an import hook; lint-imports and mypy never run it and walk ``dwlab/`` alone, so
they would miss those packages. Run from ``DEST``, they see ``DEST/dwlab`` with every
subpackage in place (links, so an edit or a new file shows at once).

Usage: python .ci/installed_tree.py DEST
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def lay_out(dest: Path, root: Path = ROOT) -> Path:
    """Fill ``dest`` with the installed layout of the package; returns ``dest``."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools["package-dir"]
    # Parents sort before their subpackages, so a subpackage may already lie inside a link.
    for package in sorted(folders):
        source = (root / folders[package]).resolve()
        target = dest.joinpath(*package.split("."))
        if "." not in package:  # a top-level package: a real folder, to hold mapped children
            target.mkdir(parents=True)
            for entry in source.iterdir():
                (target / entry.name).symlink_to(entry)
        elif not target.exists():
            target.symlink_to(source)
        elif target.resolve() != source:
            raise SystemExit(f"{package}: mapped to {source}, but its parent puts it at "
                             f"{target.resolve()}; the tree cannot hold both")
    return dest


if __name__ == "__main__":
    lay_out(Path(sys.argv[1]))
