"""Checks a chaos run's history (cluster.chaos.history) per workload: `check_history`.

The three workloads (op shapes in cluster.chaos.history's contract with the runner):

- `register`: single-key reads, writes and compare-and-set. Checked for linearizability,
  key by key, by cluster.sim.linearizability (Porcupine's search, with a cas model). Each
  op's window is [invoke time, completion time]; `info` ops and ops never completed may
  have taken effect at any instant after their invoke, or never. A `fail` write or cas did
  not happen. A `fail` cas did observe that the value was not `old`; that "not equal"
  constraint is dropped (see the linearizability module): the check may miss a bug only a
  failed cas shows, never reports a false one. The final reads of every key are ordinary
  reads, so a lost acknowledged write is a linearizability violation like any stale read.
- `bank`: transfers between accounts and snapshot reads of all of them. Every `ok` read
  (the final one included) must show exactly the accounts 0..N-1, sum to the bank's total
  ("wrong-total") and have no negative balance ("negative-balance").
- `append`: transactions appending unique values to lists and reading lists. Checked for
  strict serializability by cluster.sim.elle (`ok` = committed, `info` or never completed =
  may have committed, `fail` = aborted; elle includes real-time edges), plus an explicit
  "lost-append" check: every `ok` append must be in the last read of its key. Elle alone
  misses a lost append that no read observed.

For every workload, a key (or, for bank, the accounts) with acknowledged writes needs an `ok`
read invoked after the last of them completed: the runner's final read. Without one, lost
writes cannot be ruled out and the run is reported as "no-final-read" (a cluster that does
not recover once every fault healed is a failure too).

Anomalies name operations by their id, the index of their invoke event in the history
(elle's `T12` is operation 12), with process, outcome and times in seconds since the run
started.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from cluster.chaos.history import NEMESIS, HistoryFileError, validate_events
from cluster.sim import elle
from cluster.sim.history import Operation
from cluster.sim.linearizability import CasOperation, Outcome, check_register_history

WORKLOADS = ("register", "bank", "append")

# The linearizability search's step budget (about 0.5 us and 30 bytes each): a few seconds
# and ~150 MB at most. Running out is reported, never taken as a pass.
REGISTER_MAX_STEPS = 5_000_000

# How many anomalies of each kind the summary shows.
SUMMARY_EXAMPLES = 3

# How many characters of an op's value an explanation shows.
VALUE_CHARS_MAX = 120


@dataclass
class Anomaly:
    kind: str  # e.g. "nonlinearizable", "wrong-total", "negative-balance", "G-single", "lost-append"
    explanation: str  # human-readable, names the ops (process, index, time)
    ops: list[int]  # event indexes involved (op ids: their invoke events)


@dataclass
class CheckResult:
    valid: bool
    workload: str
    counts: dict  # {"ok": n, "fail": n, "info": n, "invoke": n} over client ops
    anomalies: list[Anomaly]
    never_completed: int = 0  # of the info ops: invoked and never completed
    # Nemesis event f -> count. Not in the summary: the runner reports the faults it injected.
    nemesis: dict = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        c = self.counts
        unfinished = f", {self.never_completed} of them never completed" if self.never_completed else ""
        lines = [
            f"workload {self.workload}: {c['invoke']} ops (ok {c['ok']}, fail {c['fail']}, "
            f"info {c['info']}{unfinished})"
        ]
        if not self.anomalies:
            return lines + ["anomalies: none"]
        by_kind: dict[str, list[Anomaly]] = defaultdict(list)
        for anomaly in self.anomalies:
            by_kind[anomaly.kind].append(anomaly)
        classes = ", ".join(f"{kind} x{len(found)}" for kind, found in by_kind.items())
        lines.append(f"anomalies: {len(self.anomalies)} ({classes})")
        for kind, found in by_kind.items():
            lines.append(f"{kind} x{len(found)}:")
            for anomaly in found[:SUMMARY_EXAMPLES]:
                first, *rest = (anomaly.explanation or anomaly.kind).splitlines()
                lines.append(f"  - {first}")
                lines.extend(f"    {line}" for line in rest)
            if len(found) > SUMMARY_EXAMPLES:
                lines.append(f"  ... and {len(found) - SUMMARY_EXAMPLES} more")
        return lines


def check_history(
    workload: str,
    events: list[dict],
    *,
    bank_accounts: int | None = None,
    bank_total: int | None = None,
) -> CheckResult:
    """Checks a history of `workload` (see the module docstring).

    Raises HistoryFileError when the events do not have the history's or the workload's
    shape, and ValueError for a bank check without `bank_accounts` and `bank_total`.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
    validate_events(events)
    ops = client_ops(events)
    if workload == "register":
        anomalies = check_register(ops)
    elif workload == "bank":
        if bank_accounts is None or bank_total is None:
            raise ValueError("the bank check needs bank_accounts and bank_total (the number of "
                             "accounts and the sum of their initial balances)")
        anomalies = check_bank(ops, bank_accounts, bank_total)
    else:
        anomalies = check_append(ops)
    statuses = Counter(op.status for op in ops)
    counts = {"ok": statuses["ok"], "fail": statuses["fail"], "info": statuses["info"],
              "invoke": len(ops)}
    nemesis = Counter(e["f"] for e in events if e["process"] == NEMESIS)
    return CheckResult(
        valid=not anomalies, workload=workload, counts=counts, anomalies=anomalies,
        never_completed=sum(op.completion is None for op in ops), nemesis=dict(nemesis),
    )


# ---- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientOp:
    """One client operation: an invoke and its completion, if any (a never completed op is info)."""

    index: int  # the invoke event's index: the op id
    process: int
    f: str
    status: str  # "ok", "fail" or "info"
    invoke_value: object
    value: object  # an ok op's observed value; otherwise the invoke's value
    call: int  # ns
    ret: int | None  # ns; None unless ok or fail
    completion: int | None  # the completion event's index, None if never completed

    def describe(self) -> str:
        end = "..." if self.ret is None else _seconds(self.ret)
        return (f"op {self.index} (process {self.process}, {self.f} {_show(self.value)}, "
                f"{self.status}, {_seconds(self.call)}-{end})")


def client_ops(events: list[dict]) -> list[ClientOp]:
    """Pairs each client invoke with its completion, in invoke order."""
    completions = {e["invoke"]: e for e in events if e["process"] != NEMESIS and e["type"] != "invoke"}
    ops = []
    for event in events:
        if event["process"] == NEMESIS or event["type"] != "invoke":
            continue
        done = completions.get(event["index"])
        status = "info" if done is None else done["type"]
        ops.append(ClientOp(
            index=event["index"], process=event["process"], f=event["f"], status=status,
            invoke_value=event["value"],
            value=done["value"] if status == "ok" else event["value"],
            call=event["time"],
            ret=done["time"] if status in ("ok", "fail") else None,
            completion=None if done is None else done["index"],
        ))
    return ops


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.3f}s"


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= VALUE_CHARS_MAX else text[: VALUE_CHARS_MAX - 3] + "..."


def _shape_error(op: ClientOp, what: str) -> HistoryFileError:
    return HistoryFileError(f"{op.describe()}: {what}")


def _expect_f(op: ClientOp, allowed: tuple[str, ...], workload: str) -> None:
    if op.f not in allowed:
        raise _shape_error(op, f"the {workload} workload has no f={op.f!r} (expected one of {allowed})")


def _missing_final_read(what: str, last_write: ClientOp) -> Anomaly:
    return Anomaly(
        "no-final-read",
        f"{what}: no ok read was invoked after the last acknowledged write "
        f"{last_write.describe()} completed, so lost writes cannot be ruled out "
        "(did the final read fail?)",
        [last_write.index],
    )


# ---- register ---------------------------------------------------------------------------


def check_register(ops: list[ClientOp]) -> list[Anomaly]:
    by_operation: dict[int, ClientOp] = {}  # id(Operation) -> its ClientOp
    converted = []
    for op in ops:
        _expect_f(op, ("read", "write", "cas"), "register")
        operation = _register_operation(op)
        if operation is not None:
            by_operation[id(operation)] = op
            converted.append(operation)
    result = check_register_history(converted, max_steps=REGISTER_MAX_STEPS)
    anomalies = [
        _register_anomaly(key_result, by_operation)
        for key_result in result.keys
        if key_result.outcome is not Outcome.OK
    ]
    return anomalies + _register_final_reads(ops)


def _register_operation(op: ClientOp) -> Operation | CasOperation | None:
    """The linearizability checker's view of a register op, or None if it constrains nothing."""
    key, argument = _key_and_argument(op, op.invoke_value)
    ret = op.ret if op.status != "info" else None
    if op.f == "read":
        if op.status != "ok":
            return None  # a read that did not return observed nothing
        read_key, observed = _key_and_argument(op, op.value)
        if read_key != key:
            raise _shape_error(op, f"read key {key!r} returned a value for key {read_key!r}")
        return Operation(op.process, "get", _encode(key), _encode(observed), op.call, ret, "ok")
    if op.status == "fail":
        return None  # definitely did not write; a failed cas's "not equal" is dropped (docstring)
    if op.f == "write":
        kind = "delete" if argument is None else "put"
        return Operation(op.process, kind, _encode(key), _encode(argument), op.call, ret, op.status)
    if not (isinstance(argument, list) and len(argument) == 2):
        raise _shape_error(op, "a cas value must be [key, [old, new]]")
    old, new = argument
    return CasOperation(op.process, _encode(key), _encode(old), _encode(new), op.call, ret, op.status)


def _key_and_argument(op: ClientOp, value) -> tuple[object, object]:
    if not (isinstance(value, list) and len(value) == 2):
        raise _shape_error(op, f"a register {op.f} value must be [key, value], got {_show(value)}")
    return value[0], value[1]


def _encode(value) -> bytes | None:
    # JSON text identifies a value (values are unique per key); None stays a missing key.
    return None if value is None else json.dumps(value).encode()


def _register_anomaly(key_result, by_operation: dict[int, ClientOp]) -> Anomaly:
    key = json.loads(key_result.key)

    def name(operation) -> str:
        return by_operation[id(operation)].describe()

    if key_result.outcome is Outcome.UNKNOWN:
        return Anomaly(
            "linearizability-unknown",
            f"key {key}: the linearizability search ran out of steps ({key_result.steps}) "
            f"before deciding; {key_result.ops_checked} ops (too many concurrent or info "
            "writes?). Not a pass: rerun shorter or with fewer workers.",
            [],
        )
    lines = [f"key {key}: no linearization of its {key_result.ops_checked} ops exists"]
    prefix = key_result.linearization
    if prefix:
        lines.append(f"after a linearizable prefix of {len(prefix)} ops ending with "
                     f"{name(prefix[-1])}, the value is {_decode(key_result.register)};")
    else:
        lines.append(f"from the start (value {_decode(key_result.register)}),")
    blocked = key_result.blocked
    lines.append(f"nothing can explain {name(blocked)}")
    if key_result.writers:
        lines.append("the value it needed was written by: "
                     + "; ".join(name(w) for w in key_result.writers))
    if key_result.candidates:
        lines.append("ops pending then: " + "; ".join(name(c) for c in key_result.candidates))
    involved = [*prefix[-1:], blocked, *key_result.writers, *key_result.candidates]
    ops = sorted({by_operation[id(operation)].index for operation in involved})
    return Anomaly("nonlinearizable", "\n".join(lines), ops)


def _decode(value: bytes | None) -> str:
    return "null (absent)" if value is None else value.decode()


def _register_final_reads(ops: list[ClientOp]) -> list[Anomaly]:
    last_write: dict[object, ClientOp] = {}
    reads: dict[object, list[ClientOp]] = defaultdict(list)
    for op in ops:
        if op.status != "ok":
            continue
        key = op.invoke_value[0]
        if op.f == "read":
            reads[key].append(op)
        elif key not in last_write or op.ret > last_write[key].ret:
            last_write[key] = op
    return [
        _missing_final_read(f"key {key}", write)
        for key, write in last_write.items()
        if not any(read.call > write.ret for read in reads[key])
    ]


# ---- bank -------------------------------------------------------------------------------


def check_bank(ops: list[ClientOp], accounts: int, total: int) -> list[Anomaly]:
    expected_accounts = {str(account) for account in range(accounts)}
    anomalies = []
    for op in ops:
        _expect_f(op, ("read", "transfer"), "bank")
        if op.f == "read" and op.status == "ok":
            anomalies += _bank_read_anomalies(op, expected_accounts, total)
    transfers = [op for op in ops if op.f == "transfer" and op.status == "ok"]
    if transfers:
        last = max(transfers, key=lambda op: op.ret)
        if not any(op.f == "read" and op.status == "ok" and op.call > last.ret for op in ops):
            anomalies.append(_missing_final_read("accounts", last))
    return anomalies


def _bank_read_anomalies(op: ClientOp, expected_accounts: set[str], total: int) -> list[Anomaly]:
    balances = op.value
    if not isinstance(balances, dict) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in balances.values()
    ):
        raise _shape_error(op, "a bank read's value must map account ids to int balances")
    anomalies = []
    seen = set(balances)
    if seen != expected_accounts:
        missing = sorted(expected_accounts - seen, key=int)
        extra = sorted(seen - expected_accounts)
        anomalies.append(Anomaly(
            "wrong-accounts",
            f"{op.describe()} shows {len(seen)} accounts, expected {len(expected_accounts)}"
            f" (missing {missing}, unexpected {extra})",
            [op.index],
        ))
    negative = {account: b for account, b in balances.items() if b < 0}
    if negative:
        anomalies.append(Anomaly(
            "negative-balance", f"{op.describe()}: negative balance in accounts {negative}", [op.index]
        ))
    observed = sum(balances.values())
    if observed != total:
        anomalies.append(Anomaly(
            "wrong-total",
            f"{op.describe()} sums to {observed}, expected {total} (off by {observed - total:+d})",
            [op.index],
        ))
    return anomalies


# ---- append -----------------------------------------------------------------------------


def check_append(ops: list[ClientOp]) -> list[Anomaly]:
    for op in ops:
        _expect_f(op, ("txn",), "append")
    txns = [_txn(op) for op in ops]
    by_id = {op.index: op for op in ops}
    try:
        result = elle.check_list_append(txns)
    except ValueError as exc:
        raise HistoryFileError(f"append history: {exc}") from exc
    anomalies = [_elle_anomaly(found, by_id) for found in result.anomalies]
    return anomalies + _lost_appends(ops, txns)


def _txn(op: ClientOp) -> elle.Txn:
    micro_ops = _micro_ops(op, op.invoke_value)
    if op.status == "ok":
        observed = _micro_ops(op, op.value)
        if [(m.kind, m.key) for m in observed] != [(m.kind, m.key) for m in micro_ops]:
            raise _shape_error(op, f"its ok value {_show(op.value)} does not match the micro-ops invoked")
        if any(m.kind == elle.READ and not isinstance(m.value, list) for m in observed):
            raise _shape_error(op, "an ok txn's reads must be lists")
        micro_ops = observed
    else:
        # The reads of a txn that did not commit (or may not have) observed nothing known.
        micro_ops = [elle.Op(m.kind, m.key, None) if m.kind == elle.READ else m for m in micro_ops]
    return elle.Txn(
        id=op.index, process=op.process, ops=micro_ops, status=op.status, invoke_ns=op.call,
        complete_ns=op.ret if op.status == "ok" else None,
    )


def _micro_ops(op: ClientOp, value) -> list[elle.Op]:
    if not isinstance(value, list):
        raise _shape_error(op, "a txn value must be a list of micro-ops")
    micro_ops = []
    for micro in value:
        if not (isinstance(micro, list) and len(micro) == 3 and micro[0] in ("append", "r")):
            raise _shape_error(op, f"a micro-op must be [\"append\", k, v] or [\"r\", k, list], "
                                   f"got {_show(micro)}")
        f, key, argument = micro
        micro_ops.append(elle.Op(elle.APPEND if f == "append" else elle.READ, key, argument))
    return micro_ops


def _elle_anomaly(found: elle.Anomaly, by_id: dict[int, ClientOp]) -> Anomaly:
    # Elle names transactions T<id>, and ids are op ids: say who they were.
    legend = [f"T{txn_id} = {by_id[txn_id].describe()}" for txn_id in dict.fromkeys(found.txns)]
    return Anomaly(found.kind, "\n".join([found.explanation, *legend]), sorted(set(found.txns)))


def _lost_appends(ops: list[ClientOp], txns: list[elle.Txn]) -> list[Anomaly]:
    """Every ok append must be in the last ok read of its key, if that read began after it."""
    last_read: dict[object, tuple[ClientOp, list]] = {}
    appends: dict[object, list[tuple[ClientOp, object]]] = defaultdict(list)
    for op, txn in zip(ops, txns):
        if op.status != "ok":
            continue
        for micro in txn.ops:
            if micro.kind == elle.APPEND:
                appends[micro.key].append((op, micro.value))
            elif micro.key not in last_read or op.call > last_read[micro.key][0].call:
                last_read[micro.key] = (op, micro.value)
    anomalies = []
    for key, key_appends in appends.items():
        last_append = max((op for op, _ in key_appends), key=lambda op: op.ret)
        if key not in last_read or last_read[key][0].call <= last_append.ret:
            anomalies.append(_missing_final_read(f"key {key}", last_append))
        if key not in last_read:
            continue
        reader, values = last_read[key]
        present = set(values)
        for writer, value in key_appends:
            if writer.ret < reader.call and value not in present:
                anomalies.append(Anomaly(
                    "lost-append",
                    f"{writer.describe()} appended {_show(value)} to key {key} and was acknowledged, "
                    f"but the last read of key {key}, {reader.describe()}, invoked after that, "
                    f"does not contain it",
                    [writer.index, reader.index],
                ))
    return anomalies
