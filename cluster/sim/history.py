"""Client-side operation histories of a key-value store: `Operation`, `History`.

A history is what clients observed, nothing more: each operation was invoked at one time and
completed (or not) at a later time, with a status. It is the input of the linearizability
checker (`cluster.sim.linearizability`), written by the simulator and by the chaos tool that
drives real processes (`--history FILE`, the JSON-lines format below).

Operations

  `Operation(process, kind, key, value, call, ret, status)`, with `kind` one of `get`, `put`,
  `delete` and `status` one of

  - `ok`: the operation took effect exactly once, at some instant in `[call, ret]`.
    For a get, `value` is what it observed (None: the key was missing).
  - `fail`: the operation definitely did not take effect (the store said so).
  - `info`: the outcome is unknown (a timeout, a crashed connection): it may have taken
    effect at any instant after `call`, or never. Its `ret` is None (infinity).

  For a put, `value` is the written value; a delete's value is None.

Processes

  A process is one single-threaded client: it has at most one operation in flight. Once an
  operation is completed, even as `info`, the process may invoke the next one. (Jepsen
  instead retires a process after an info; the checker does not care, since an info
  operation is concurrent with everything after its call either way.)

The JSON-lines format (Jepsen-style, one event per line)

    {"type": "invoke", "id": 7, "process": 2, "f": "put", "key": "k1", "value": "v9", "time": 1200}
    {"type": "ok",     "id": 7, "process": 2, "f": "put", "key": "k1", "value": "v9", "time": 1350}

  - `type` is `invoke`, `ok`, `fail` or `info`; `f` is `get`, `put` or `delete`.
  - `id` pairs an invocation with its completion. Files without `id` (Jepsen's own) are
    paired by `process`, which has at most one operation in flight.
  - `key` and `value` are bytes written as a JSON string when every byte is printable
    ASCII, else as `{"hex": "..."}`; `null` is a missing value. On reading, a string is
    encoded back with latin-1, so any text a tool wrote with latin-1 also reads back exactly.
  - `time` is a number on the recorder's clock (simulated ticks, monotonic ns, ...).
  - Lines whose `process` is not an integer (Jepsen's `"nemesis"` events) are skipped on
    reading, so a chaos tool may log its faults in the same file.
  - An invocation without a completion reads back as an `info` operation.

HAZARD: every time in one history must come from one clock. Mixing nodes' wall clocks
(which are skewed) into one history makes the real-time order the checker relies on wrong,
and the checker then reports violations that did not happen, or misses real ones.

HAZARD: a completion must be recorded with a time no earlier than the moment the client
learned the outcome, and an invocation no later than the moment the request could first
have reached the store. Recording a completion early, or an invocation late, narrows the
operation's window and produces false violations.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

KINDS = ("get", "put", "delete")
STATUSES = ("ok", "fail", "info")
EVENT_TYPES = ("invoke",) + STATUSES

# A bound on one history, so a runaway recorder fails loudly instead of eating memory.
HISTORY_OPS_MAX = 10_000_000

Time = int | float


class HistoryError(ValueError):
    """A history (or a history file) breaks the rules of this module."""


def _check_time(time: object, what: str) -> None:
    if isinstance(time, bool) or not isinstance(time, (int, float)):
        raise HistoryError(f"{what} must be an int or float, got {time!r}")
    if not math.isfinite(time):
        raise HistoryError(f"{what} must be finite, got {time!r}")


def _check_bytes_or_none(value: object, what: str) -> None:
    if value is not None and not isinstance(value, bytes):
        raise HistoryError(f"{what} must be bytes or None, got {type(value).__name__}")


def _format_time(time: Time | None) -> str:
    if time is None:
        return "inf"
    if isinstance(time, float) and time.is_integer():
        return str(int(time))
    return str(time)


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key (see the module docstring for the fields)."""

    process: int
    kind: str
    key: bytes
    value: bytes | None
    call: Time
    ret: Time | None
    status: str

    def __post_init__(self) -> None:
        if isinstance(self.process, bool) or not isinstance(self.process, int):
            raise HistoryError(f"process must be an int, got {self.process!r}")
        if self.kind not in KINDS:
            raise HistoryError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.status not in STATUSES:
            raise HistoryError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not isinstance(self.key, bytes):
            raise HistoryError(f"key must be bytes, got {type(self.key).__name__}")
        _check_bytes_or_none(self.value, "value")
        _check_time(self.call, "call")
        self._check_value_for_kind()
        self._check_ret_for_status()

    def _check_value_for_kind(self) -> None:
        if self.kind == "put" and self.value is None:
            raise HistoryError(f"a put needs a bytes value: {self}")
        if self.kind == "delete" and self.value is not None:
            raise HistoryError(f"a delete has no value: {self}")
        if self.kind == "get" and self.status != "ok" and self.value is not None:
            raise HistoryError(f"only an ok get has an observed value: {self}")

    def _check_ret_for_status(self) -> None:
        if self.status == "info":
            if self.ret is not None:
                raise HistoryError(f"an info operation has ret=None (unknown): {self}")
            return
        if self.ret is None:
            raise HistoryError(f"an {self.status} operation needs a ret time: {self}")
        _check_time(self.ret, "ret")
        if self.ret < self.call:
            raise HistoryError(f"ret {self.ret} is before call {self.call}: {self}")

    def __str__(self) -> str:
        if self.kind == "get":
            shown = f"get {self.key!r}"
            if self.status == "ok":
                shown += f" -> {self.value!r}"
        elif self.kind == "put":
            shown = f"put {self.key!r} = {self.value!r}"
        else:
            shown = f"delete {self.key!r}"
        end = "inf)" if self.ret is None else f"{_format_time(self.ret)}]"
        return f"p{self.process} {shown}  [{_format_time(self.call)}, {end} {self.status}"


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history file: an invocation or a completion."""

    type: str  # "invoke" | "ok" | "fail" | "info"
    op_id: int
    process: int
    f: str
    key: bytes
    value: bytes | None
    time: Time


@dataclass(slots=True)
class _Pending:
    process: int
    kind: str
    key: bytes
    value: bytes | None
    call: Time


class History:
    """Records invocations and completions; exports `Operation`s and JSON lines.

    Invariant: `self._outstanding` maps each process to its one operation in flight.
    Invariant: `self._ops[op_id]` is a `_Pending` while op_id is in flight, an `Operation` after.
    """

    def __init__(self, ops_max: int = HISTORY_OPS_MAX) -> None:
        assert ops_max > 0, ops_max
        self._ops_max = ops_max
        self._ops: list[_Pending | Operation] = []
        self._events: list[Event] = []
        self._outstanding: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    def invoke(
        self,
        process: int,
        kind: str,
        key: bytes,
        value: bytes | None = None,
        time: Time | None = None,
    ) -> int:
        """Records that `process` invoked an operation at `time`; returns its op id."""
        if time is None:
            raise HistoryError("invoke needs a time")
        if kind == "get" and value is not None:
            raise HistoryError(f"a get is invoked without a value, got {value!r}")
        # Validates process, kind, key, value and time; status and ret are placeholders.
        Operation(process, kind, key, value, time, time, "ok")
        if process in self._outstanding:
            raise HistoryError(
                f"process {process} already has operation {self._outstanding[process]} in flight"
            )
        if len(self._ops) >= self._ops_max:
            raise HistoryError(f"history is full ({self._ops_max} operations)")
        op_id = len(self._ops)
        self._ops.append(_Pending(process, kind, key, value, time))
        self._outstanding[process] = op_id
        self._events.append(Event("invoke", op_id, process, kind, key, value, time))
        return op_id

    def complete(
        self,
        op_id: int,
        status: str,
        value: bytes | None = None,
        time: Time | None = None,
    ) -> None:
        """Records the outcome of operation `op_id` at `time`.

        `value` is the observed value of an ok get; for a put it may repeat the written value.
        """
        if time is None:
            raise HistoryError("complete needs a time")
        if status not in STATUSES:
            raise HistoryError(f"status must be one of {STATUSES}, got {status!r}")
        pending = self._pending(op_id)
        _check_time(time, "time")
        if time < pending.call:
            raise HistoryError(f"operation {op_id} completes at {time}, before its call {pending.call}")
        value = self._completion_value(op_id, pending, status, value)
        ret = None if status == "info" else time
        op = Operation(pending.process, pending.kind, pending.key, value, pending.call, ret, status)
        assert self._outstanding[pending.process] == op_id, (pending.process, op_id)
        del self._outstanding[pending.process]
        self._ops[op_id] = op
        event_value = value if pending.kind != "get" or status == "ok" else None
        self._events.append(Event(status, op_id, op.process, op.kind, op.key, event_value, time))

    def _pending(self, op_id: int) -> _Pending:
        if not 0 <= op_id < len(self._ops):
            raise HistoryError(f"unknown operation id {op_id}")
        pending = self._ops[op_id]
        if not isinstance(pending, _Pending):
            raise HistoryError(f"operation {op_id} is already completed: {pending}")
        return pending

    @staticmethod
    def _completion_value(
        op_id: int, pending: _Pending, status: str, value: bytes | None
    ) -> bytes | None:
        _check_bytes_or_none(value, "value")
        if pending.kind == "get":
            if status != "ok" and value is not None:
                raise HistoryError(f"get {op_id} completed {status} cannot observe a value")
            return value
        if value is not None and value != pending.value:
            raise HistoryError(
                f"{pending.kind} {op_id} invoked with {pending.value!r} completes with {value!r}"
            )
        return pending.value

    def operations(self) -> list[Operation]:
        """All operations in invocation order; those still in flight come back as info."""
        ops = []
        for op in self._ops:
            if isinstance(op, _Pending):
                op = Operation(op.process, op.kind, op.key, op.value, op.call, None, "info")
            ops.append(op)
        assert len(ops) == len(self._ops)
        return ops

    # ---- JSON lines -------------------------------------------------------------------

    def to_jsonl(self) -> str:
        out = io.StringIO()
        self.write_jsonl(out)
        return out.getvalue()

    def write_jsonl(self, dest: str | os.PathLike | IO[str]) -> None:
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "w", encoding="utf-8") as fp:
                self.write_jsonl(fp)
            return
        for event in self._events:
            dest.write(json.dumps(_event_to_json(event)) + "\n")

    @classmethod
    def from_jsonl(cls, text: str) -> History:
        return cls._from_lines(text.splitlines())

    @classmethod
    def read_jsonl(cls, src: str | os.PathLike | IO[str]) -> History:
        if isinstance(src, (str, os.PathLike)):
            with open(src, encoding="utf-8") as fp:
                return cls._from_lines(fp)
        return cls._from_lines(src)

    @classmethod
    def _from_lines(cls, lines: Iterable[str]) -> History:
        history = cls()
        file_ids: dict[object, int] = {}  # the file's id -> our op id
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                history._replay(json.loads(line), file_ids)
            except (HistoryError, ValueError, KeyError, TypeError) as exc:
                raise HistoryError(f"history line {line_no}: {exc}: {line.strip()[:200]}") from exc
        return history

    def _replay(self, obj: dict, file_ids: dict[object, int]) -> None:
        if not isinstance(obj, dict):
            raise HistoryError("a line must be a JSON object")
        process = obj["process"]
        if not isinstance(process, int) or isinstance(process, bool):
            return  # a nemesis (fault) event, or another non-client line
        event_type = obj["type"]
        if event_type not in EVENT_TYPES:
            raise HistoryError(f"unknown event type {event_type!r}")
        value = _decode_bytes(obj.get("value"))
        if event_type == "invoke":
            op_id = self.invoke(process, obj["f"], _decode_bytes(obj["key"]), value, obj["time"])
            if "id" in obj:
                if obj["id"] in file_ids:
                    raise HistoryError(f"operation id {obj['id']!r} invoked twice")
                file_ids[obj["id"]] = op_id
            return
        op_id = self._completed_op_id(obj, process, file_ids)
        if isinstance(self._ops[op_id], _Pending) and self._ops[op_id].kind == "get":
            value = value if event_type == "ok" else None
        self.complete(op_id, event_type, value, obj["time"])

    def _completed_op_id(self, obj: dict, process: int, file_ids: dict[object, int]) -> int:
        if "id" in obj:
            if obj["id"] not in file_ids:
                raise HistoryError(f"completion of unknown operation id {obj['id']!r}")
            op_id = file_ids[obj["id"]]
        elif process in self._outstanding:
            op_id = self._outstanding[process]
        else:
            raise HistoryError(f"completion for process {process}, which has nothing in flight")
        op = self._ops[op_id]
        if isinstance(op, _Pending) and (op.process != process or op.kind != obj["f"]):
            raise HistoryError("completion does not match its invocation (process/f)")
        return op_id

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations())


def _encode_bytes(value: bytes | None) -> str | dict | None:
    if value is None:
        return None
    if all(0x20 <= b < 0x7F for b in value):
        return value.decode("ascii")
    return {"hex": value.hex()}


def _decode_bytes(obj: object) -> bytes | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        try:
            return obj.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise HistoryError(f"text {obj!r} is not latin-1: use {{\"hex\": ...}}") from exc
    if isinstance(obj, dict) and set(obj) == {"hex"} and isinstance(obj["hex"], str):
        return bytes.fromhex(obj["hex"])
    raise HistoryError(f"bytes must be a string or {{\"hex\": ...}}, got {obj!r}")


def _event_to_json(event: Event) -> dict:
    return {
        "type": event.type,
        "id": event.op_id,
        "process": event.process,
        "f": event.f,
        "key": _encode_bytes(event.key),
        "value": _encode_bytes(event.value),
        "time": event.time,
    }
