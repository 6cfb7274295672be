"""The backends the DeviceArray contract suite runs over.

Each entry is ``(id, factory)``; ``factory()`` returns a fresh, small ``DeviceArray`` and a
cleanup callable that the suite calls after the test (it must release every resource the
factory took: servers, sockets, files). Append an entry for every new backend.
"""

from __future__ import annotations

from collections.abc import Callable

from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.core.device import DeviceArray

Factory = Callable[[], tuple[DeviceArray, Callable[[], None]]]


def _twin(preset: str) -> Factory:
    def factory() -> tuple[DeviceArray, Callable[[], None]]:
        array = TwinArray((4, 4), preset=preset, seed=11)
        return array, array.safe_state

    return factory


CONTRACT_BACKENDS: list[tuple[str, Factory]] = [
    (f"twin-{preset}", _twin(preset)) for preset in PRESETS
]


def _hardware_on_virtual_lab() -> tuple[DeviceArray, Callable[[], None]]:
    """A 4 x 4 HardwareArray driving the virtual lab's SCPI servers through pyvisa-py."""
    import shutil
    import tempfile
    from pathlib import Path

    from test_virtual_lab_support import lab_config, open_lab_array

    folder = Path(tempfile.mkdtemp(prefix="dwlab-contract-"))
    lab, array = open_lab_array(lab_config(folder, shape=(4, 4)))

    def cleanup() -> None:
        try:
            array.close()
        finally:
            lab.stop()
            shutil.rmtree(folder, ignore_errors=True)

    return array, cleanup


CONTRACT_BACKENDS.append(("hardware-virtual-lab", _hardware_on_virtual_lab))
