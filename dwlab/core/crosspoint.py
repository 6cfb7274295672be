"""Switch-matrix crosspoints: the one definition of their names and of crossbar wiring.

A Keithley 707B holds six cards of 8 rows x 12 columns. A crosspoint is named
``<slot><row><column>``, e.g. ``1A01`` = card 1, row A, column 1. The config, the 707B
driver and the virtual lab's matrix all check names here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

MATRIX_SLOTS = 6
MATRIX_ROWS = "ABCDEFGH"
MATRIX_COLUMNS = 12

CROSSPOINT = re.compile(r"^[1-6][A-H](0[1-9]|1[0-2])$")
FORMAT = f"<slot 1-{MATRIX_SLOTS}><row A-H><column 01-{MATRIX_COLUMNS}>, e.g. '1A01'"

Route = tuple[str, ...]
"""Crosspoints closed together (a write or a read path of one device)."""


def check_crosspoint(name: str) -> str:
    """``name`` if it is a valid crosspoint, else ValueError naming the expected form."""
    if not isinstance(name, str) or not CROSSPOINT.match(name):
        raise ValueError(f"crosspoint {name!r} is not {FORMAT}")
    return name


def crosspoint(slot: int, row: str, column: int) -> str:
    return check_crosspoint(f"{slot}{row}{column:02d}")


def crossbar_paths(shape: Sequence[int], first_slot: int, write_rows: Sequence[str],
                   read_rows: Sequence[str]) -> list[tuple[Route, Route]]:
    """(write path, read path) per flat device index of a crossbar chip on the matrix.

    The array is viewed as rows x columns (the last axis is the column; leading axes are
    flattened into rows). Word line ``r`` and bit line ``c`` each occupy one matrix column,
    word lines first, then bit lines, 12 per card from ``first_slot`` on. Device (r, c) is
    pulsed by closing ``write_rows[0]`` on its word line and ``write_rows[1]`` on its bit
    line, and read through ``read_rows`` likewise.
    """
    size = math.prod(int(s) for s in shape)
    cols = int(shape[-1]) if len(shape) else 1
    rows = size // cols
    capacity = (MATRIX_SLOTS - first_slot + 1) * MATRIX_COLUMNS
    if rows + cols > capacity:
        raise ValueError(
            f"a {rows}x{cols} crossbar needs {rows + cols} matrix columns; slots "
            f"{first_slot}-{MATRIX_SLOTS} hold {capacity}"
        )

    def line(k: int, row: str) -> str:
        return crosspoint(first_slot + k // MATRIX_COLUMNS, row, k % MATRIX_COLUMNS + 1)

    paths: list[tuple[Route, Route]] = []
    for i in range(size):
        r, c = divmod(i, cols)
        paths.append(((line(r, write_rows[0]), line(rows + c, write_rows[1])),
                      (line(r, read_rows[0]), line(rows + c, read_rows[1]))))
    return paths


def device_paths(size: int, generated: Sequence[tuple[Route, Route]] | None,
                 explicit: Mapping[int, tuple[Sequence[str], Sequence[str]]]
                 ) -> list[tuple[Route, Route]]:
    """Every device's paths: ``explicit`` entries (flat index -> (write, read)) override the
    ``generated`` crossbar wiring; every device must end up wired with valid names."""
    out: list[tuple[Route, Route] | None] = list(generated) if generated else [None] * size
    for index, (write, read) in explicit.items():
        if not 0 <= index < size:
            raise ValueError(f"wiring.devices names device {index}; the array has {size}")
        out[index] = (tuple(write), tuple(read))
    wired: list[tuple[Route, Route]] = []
    for i, path in enumerate(out):
        if path is None:
            missing = sum(p is None for p in out)
            raise ValueError(f"{missing} device(s) have no wiring (first: {i}); add a "
                             "'crossbar' or 'devices' entry")
        for name in (*path[0], *path[1]):
            check_crosspoint(name)
        wired.append(path)
    return wired
