"""Tests of the chaos history recorder and loader (cluster/chaos/history.py)."""

from __future__ import annotations

import json

import pytest

from cluster.chaos.history import HistoryFileError, HistoryRecorder, load_history, validate_events


def record_sample(path):
    recorder = HistoryRecorder(path)
    w = recorder.invoke(0, "write", [1, 5])
    r = recorder.invoke(1, "read", [1, None])
    recorder.nemesis("kill", {"nodes": [2, 3]})
    recorder.ok(w)
    recorder.ok(r, [1, 5])
    c = recorder.invoke(2, "cas", (1, (5, 6)))  # tuples are stored as the lists they read back as
    recorder.fail(c, "value was not 5")
    t = recorder.invoke(3, "transfer", {"from": 0, "to": 1, "amount": 3})
    recorder.info(t, "timeout")
    recorder.invoke(4, "read", [1, None])  # still open when the run ends
    return recorder


def test_recorder_writes_each_event_as_it_happens(tmp_path):
    path = tmp_path / "history.jsonl"
    recorder = record_sample(path)
    # Not closed yet: every line is already in the file (a crashed run keeps its history).
    lines = path.read_text().splitlines()
    assert len(lines) == 10
    assert [json.loads(line) for line in lines] == recorder.events
    recorder.close()
    recorder.close()  # idempotent


def test_event_fields(tmp_path):
    recorder = record_sample(tmp_path / "h.jsonl")
    events = recorder.events
    assert [e["index"] for e in events] == list(range(10))
    assert events[0] == {"index": 0, "type": "invoke", "process": 0, "f": "write", "value": [1, 5],
                         "time": events[0]["time"]}
    assert events[2]["process"] == "nemesis" and events[2]["type"] == "info"
    assert "invoke" not in events[2]
    assert events[3] == {"index": 3, "type": "ok", "process": 0, "f": "write", "value": [1, 5],
                         "invoke": 0, "time": events[3]["time"]}
    assert events[4]["value"] == [1, 5] and events[4]["invoke"] == 1
    assert events[5]["value"] == [1, [5, 6]]
    assert events[6]["type"] == "fail" and events[6]["error"] == "value was not 5"
    assert events[8]["type"] == "info" and events[8]["error"] == "timeout"
    assert events[8]["value"] == {"from": 0, "to": 1, "amount": 3}
    times = [e["time"] for e in events]
    assert times == sorted(times) and all(isinstance(t, int) for t in times)
    assert recorder.open_ops == [9]


def test_load_round_trip(tmp_path):
    path = tmp_path / "history.jsonl"
    with record_sample(path) as recorder:
        events = recorder.events
    assert load_history(path) == events
    assert load_history(str(path)) == events


def test_recorder_without_a_file_keeps_events_in_memory():
    recorder = HistoryRecorder(None)
    op = recorder.invoke(0, "read", [0, None])
    recorder.ok(op, {0: 1})  # int dict keys become strings, as they would in the file
    assert recorder.events[1]["value"] == {"0": 1}
    validate_events(recorder.events)
    recorder.close()


def test_recorder_rejects_misuse():
    recorder = HistoryRecorder(None)
    op = recorder.invoke(0, "write", [0, 1])
    recorder.ok(op)
    with pytest.raises(ValueError, match="already completed"):
        recorder.fail(op, "late")
    with pytest.raises(ValueError, match="never invoked"):
        recorder.ok(17)
    with pytest.raises(TypeError, match="JSON-native"):
        recorder.invoke(0, "write", [0, {1, 2}])
    with pytest.raises(TypeError, match="process must be an int"):
        recorder.invoke("p1", "write", [0, 1])


def test_a_crash_mid_line_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "history.jsonl"
    record_sample(path).close()
    with open(path, "a") as fp:
        fp.write('{"index": 10, "type": "ok", "proc')  # the run died while writing this line
    events = load_history(path)
    assert len(events) == 10


def write_lines(tmp_path, lines):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


INVOKE = '{"index": 0, "type": "invoke", "process": 0, "f": "write", "value": [1, 2], "time": 5}'


@pytest.mark.parametrize("second_line, message", [
    ('{"index": 1, "type": "ok", "process": 0, "f": "write", "value": [1, 2], "invoke": 0, "time": 4}',
     "goes back"),
    ('{"index": 1, "type": "ok", "process": 0, "f": "write", "value": [1, 2], "time": 6}',
     "'invoke' must be the index of an earlier invoke"),
    ('{"index": 1, "type": "ok", "process": 1, "f": "write", "value": [1, 2], "invoke": 0, "time": 6}',
     "as process 1"),
    ('{"index": 1, "type": "info", "process": 0, "f": "write", "value": [1, 2], "invoke": 0, "time": 6}',
     "needs an 'error' string"),
    ('{"index": 1, "type": "done", "process": 0, "f": "write", "value": [1, 2], "invoke": 0, "time": 6}',
     "type must be one of"),
    ('{"index": 2, "type": "invoke", "process": 0, "f": "write", "value": [1, 3], "time": 6}',
     "expected 1"),
    ('{"index": 1, "type": "invoke", "process": 0, "f": "write", "value": [1, 3]}',
     "missing field 'time'"),
    ('{"index": 1, "type": "invoke", "process": 0.5, "f": "write", "value": [1, 3], "time": 6}',
     "process must be an int"),
    ('[1, 2, 3]', "JSON object"),
    ('{"index": 1, "type": "invoke", "process": 0, "f": "write", "value": [1, 3], "time": 6',
     "not a JSON object"),
])
def test_malformed_lines_are_named(tmp_path, second_line, message):
    path = write_lines(tmp_path, ["", INVOKE, second_line])  # a blank first line: still counted
    with pytest.raises(HistoryFileError, match=message) as raised:
        load_history(path)
    assert f"{path}, line 3:" in str(raised.value)


def test_a_second_completion_is_rejected(tmp_path):
    done = '{"index": %d, "type": "ok", "process": 0, "f": "write", "value": [1, 2], "invoke": 0, "time": 6}'
    path = write_lines(tmp_path, [INVOKE, done % 1, done % 2])
    with pytest.raises(HistoryFileError, match="line 3: operation 0 completes a second time"):
        load_history(path)
