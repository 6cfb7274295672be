import os

import pytest

from dwlab.records import EventLog, TableWriter, atomic_write_json, read_events, read_table


def test_table_rows_survive_a_torn_last_line(tmp_path):
    path = tmp_path / "t.csv"
    with TableWriter(path, ["a", "b"]) as t:
        t.append({"a": 1, "b": 2})
        t.append({"a": 3, "b": 4})
    with open(path, "a") as fh:  # a write cut short by a kill
        fh.write("5,")
    assert read_table(path) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_table_reopen_appends_and_checks_header(tmp_path):
    path = tmp_path / "t.csv"
    TableWriter(path, ["a"]).close()
    with TableWriter(path, ["a"]) as t:
        t.append({"a": 7})
    assert read_table(path) == [{"a": "7"}]
    with pytest.raises(ValueError, match="header"):
        TableWriter(path, ["x"])
    with TableWriter(path, ["a"]) as t, pytest.raises(ValueError, match="unknown column"):
        t.append({"zzz": 1})


def test_event_log_and_atomic_json(tmp_path):
    log = EventLog(tmp_path / "e.jsonl")
    log.write({"step": 1})
    log.close()
    with open(tmp_path / "e.jsonl", "a") as fh:
        fh.write('{"step": 2')
    assert read_events(tmp_path / "e.jsonl") == [{"step": 1}]
    atomic_write_json(tmp_path / "m.json", {"x": 1})
    assert (tmp_path / "m.json").read_text().strip().startswith("{")
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
