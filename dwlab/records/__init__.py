"""Run records: folders, tables and event streams that survive a crash; PNG helpers in
``dwlab.records.plots``, the live view (TensorBoard events) in ``dwlab.records.live``, run
folders as pandas / xarray / NetCDF in ``dwlab.records.export``."""

from dwlab.records.files import (
    EventLog,
    TableWriter,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    base_metadata,
    git_revision,
    new_run_dir,
    now_iso,
    read_events,
    read_table,
    versions,
)

__all__ = [
    "EventLog", "TableWriter", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
    "base_metadata", "git_revision", "new_run_dir", "now_iso", "read_events", "read_table",
    "versions",
]
