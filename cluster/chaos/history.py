"""Jepsen-style histories of a chaos run: `HistoryRecorder` writes them, `load_history` reads them.

A history is what the clients and the nemesis observed, one event per JSON line, in the order
the recorder saw them:

    {"index": 0, "type": "invoke", "process": 3, "f": "write", "value": [1, 7], "time": 1200}
    {"index": 1, "type": "info", "process": "nemesis", "f": "kill", "value": {"nodes": [2]}, "time": 1300}
    {"index": 2, "type": "ok", "process": 3, "f": "write", "value": [1, 7], "time": 1900, "invoke": 0}
    {"index": 3, "type": "invoke", "process": 4, "f": "read", "value": [1, null], "time": 2000}
    {"index": 4, "type": "info", "process": 4, "f": "read", "value": [1, null], "time": 9000,
     "invoke": 3, "error": "timeout"}

- `index` is the event's position (0, 1, ...); an operation's id is the index of its invoke.
- `type`: `invoke`, then exactly one completion: `ok` (it happened, once), `fail` (it
  definitely did not happen) or `info` (unknown: it may have happened, or not). An invoke
  that never completed (the run ended, or crashed) counts as `info`.
- `process` is a client process id (an int, one operation in flight at a time) or
  `"nemesis"` for faults. Nemesis events are single `info` lines without `invoke`: a fault
  has no outcome to wait for (Jepsen logs them the same way).
- Completions carry `invoke` (their invoke's index) and repeat the invoke's `process` and
  `f`; `fail` and `info` carry `error` (what went wrong, for people) and repeat the invoke's
  `value`. An `ok` carries the value the client observed (reads filled in), or the invoke's
  value when the recorder was given none (writes).
- `time` is nanoseconds since the recorder started, from `time.monotonic_ns`: one clock for
  the whole history, which the real-time order of linearizability and of strict
  serializability depends on. HAZARD: record an invoke before the request can reach the
  cluster and a completion after its answer arrived; the other way round narrows the
  operation's window and gives false violations.
- Values are JSON-native. The recorder keeps every event exactly as it reads back from the
  file (tuples become lists, int dict keys become strings), so checking `recorder.events`
  and checking `load_history(path)` give the same verdict.

Each line is written and flushed when the event happens, so a crashed run leaves a file that
loads: ops without a completion read as `info`, and a last line cut short by the crash (no
newline at its end) is ignored.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import IO

CLIENT_TYPES = ("invoke", "ok", "fail", "info")
NEMESIS = "nemesis"


class HistoryFileError(ValueError):
    """A history (a file, or events in memory) does not have the shape described above."""


class HistoryRecorder:
    """Records client operations and nemesis faults as they happen (one trio thread).

    Invariant: `self._open` holds the op ids (invoke indexes) that have no completion yet.
    """

    def __init__(self, path: pathlib.Path | None) -> None:
        self._path = path
        self._file: IO[str] | None = None
        if path is not None:
            self._file = open(path, "w", encoding="utf-8", buffering=1)
        self._start_ns = time.monotonic_ns()
        self._events: list[dict] = []
        self._open: set[int] = set()

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def events(self) -> list[dict]:
        """Every event so far (a new list; the dicts are the recorder's own, do not edit)."""
        return list(self._events)

    @property
    def open_ops(self) -> list[int]:
        """Ids of operations invoked and not completed yet."""
        return sorted(self._open)

    def invoke(self, process: int, f: str, value) -> int:
        """Records that `process` starts operation `f`; returns the op id for its completion."""
        if isinstance(process, bool) or not isinstance(process, int):
            raise TypeError(f"process must be an int, got {process!r}")
        op_id = self._append({"type": "invoke", "process": process, "f": f, "value": value})
        self._open.add(op_id)
        return op_id

    def ok(self, op_id: int, value=None) -> None:
        """It happened; `value` is what the client observed (None: the invoke's value)."""
        invoke = self._complete(op_id)
        observed = invoke["value"] if value is None else value
        self._append(self._completion("ok", invoke, observed))

    def fail(self, op_id: int, error: str) -> None:
        """It definitely did not happen."""
        invoke = self._complete(op_id)
        self._append({**self._completion("fail", invoke, invoke["value"]), "error": str(error)})

    def info(self, op_id: int, error: str) -> None:
        """It may or may not have happened (a timeout, an ambiguous result, a crash)."""
        invoke = self._complete(op_id)
        self._append({**self._completion("info", invoke, invoke["value"]), "error": str(error)})

    def nemesis(self, f: str, value) -> None:
        """Records a fault (e.g. f="kill", value={"nodes": [2, 3]}) or its healing."""
        self._append({"type": "info", "process": NEMESIS, "f": f, "value": value})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _complete(self, op_id: int) -> dict:
        if op_id not in self._open:
            state = "already completed" if 0 <= op_id < len(self._events) else "never invoked"
            raise ValueError(f"operation {op_id} cannot complete: it was {state}")
        self._open.discard(op_id)
        return self._events[op_id]

    @staticmethod
    def _completion(kind: str, invoke: dict, value) -> dict:
        return {"type": kind, "process": invoke["process"], "f": invoke["f"], "value": value,
                "invoke": invoke["index"]}

    def _append(self, fields: dict) -> int:
        index = len(self._events)
        event = {"index": index, **fields, "time": time.monotonic_ns() - self._start_ns}
        try:
            line = json.dumps(event)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"history values must be JSON-native (ints, strings, lists, dicts "
                            f"with string keys): {exc}: {event!r}") from exc
        # What the file will read back as, so in-memory and on-disk checks agree.
        self._events.append(json.loads(line))
        if self._file is not None:
            self._file.write(line + "\n")  # line-buffered: flushed at the newline
        return index


def load_history(path: str | os.PathLike) -> list[dict]:
    """The events of a history file, validated; raises HistoryFileError naming the line."""
    with open(path, encoding="utf-8") as fp:
        text = fp.read()
    lines = text.split("\n")
    # A run killed mid-write leaves a last line without its newline: it never happened.
    truncated_tail = lines.pop()
    events, line_numbers = [], []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryFileError(
                f"{path}, line {line_no}: not a JSON object ({exc.msg}): {line[:200]}"
            ) from exc
        events.append(event)
        line_numbers.append(line_no)
    if truncated_tail.strip():
        try:
            events.append(json.loads(truncated_tail))
            line_numbers.append(len(lines) + 1)
        except json.JSONDecodeError:
            pass
    validate_events(events, where=str(path), line_numbers=line_numbers)
    return events


def validate_events(
    events: list[dict], where: str = "history", line_numbers: list[int] | None = None
) -> None:
    """Checks the shape of every event (see the module docstring); raises HistoryFileError.

    Errors name the event's line: `line_numbers[i]`, or i + 1 by default.
    """
    invokes: dict[int, dict] = {}  # open operations
    completed: set[int] = set()
    last_time = 0
    for position, event in enumerate(events):
        try:
            _validate_event(event, position, last_time, invokes, completed)
        except HistoryFileError as exc:
            shown = json.dumps(event)[:200] if _jsonable(event) else repr(event)[:200]
            line_no = position + 1 if line_numbers is None else line_numbers[position]
            raise HistoryFileError(f"{where}, line {line_no}: {exc}: {shown}") from None
        last_time = event["time"]


def _validate_event(event, position: int, last_time: int, invokes: dict, completed: set) -> None:
    if not isinstance(event, dict):
        raise HistoryFileError("an event must be a JSON object")
    for field in ("index", "type", "process", "f", "time"):
        if field not in event:
            raise HistoryFileError(f"missing field {field!r}")
    if event["index"] != position:
        raise HistoryFileError(f"index is {event['index']!r}, expected {position} (a line is missing "
                               f"or out of order)")
    if not isinstance(event["f"], str):
        raise HistoryFileError(f"f must be a string, got {event['f']!r}")
    _validate_time(event["time"], last_time)
    process = event["process"]
    if process == NEMESIS:
        return
    if isinstance(process, bool) or not isinstance(process, int):
        raise HistoryFileError(f"process must be an int or {NEMESIS!r}, got {process!r}")
    kind = event["type"]
    if kind not in CLIENT_TYPES:
        raise HistoryFileError(f"type must be one of {CLIENT_TYPES}, got {kind!r}")
    if kind == "invoke":
        invokes[position] = event
        return
    _validate_completion(event, invokes, completed)


def _validate_time(value, last_time: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HistoryFileError(f"time must be a non-negative int (ns), got {value!r}")
    if value < last_time:
        raise HistoryFileError(f"time {value} goes back before the previous event's {last_time}")


def _validate_completion(event: dict, invokes: dict, completed: set) -> None:
    op_id = event.get("invoke")
    if op_id in completed:
        raise HistoryFileError(f"operation {op_id} completes a second time")
    if op_id not in invokes:
        raise HistoryFileError(f"'invoke' must be the index of an earlier invoke, got {op_id!r}")
    invoke = invokes.pop(op_id)
    completed.add(op_id)
    if (event["process"], event["f"]) != (invoke["process"], invoke["f"]):
        raise HistoryFileError(f"completes operation {op_id} of process {invoke['process']} "
                               f"({invoke['f']}) as process {event['process']} ({event['f']})")
    if event["type"] != "ok" and not isinstance(event.get("error"), str):
        raise HistoryFileError(f"a {event['type']} completion needs an 'error' string")


def _jsonable(event) -> bool:
    try:
        json.dumps(event)
    except (TypeError, ValueError):
        return False
    return True
