"""Linearizability checker for key-value histories: `check_register_history`.

The model is one register per key: initially None (missing); a put sets it, a delete sets it
to None, and a get must return its current value. A history is linearizable when every
operation can be given an instant inside its `[call, ret]` window such that the operations,
run one at a time in that order, give every client the answers it saw.

The algorithm is Porcupine's (anishathalye/porcupine `checker.go`), i.e. Lowe's optimisation
("Testing for linearizability", 2017) of Wing & Gong's search:

- P-compositionality: linearizability is local (Herlihy & Wing), so the history is split by
  key and each key is checked on its own.
- The calls and returns of one key's operations form a doubly linked list sorted by time.
  A depth-first search linearizes, one at a time, an operation whose call comes before the
  first remaining return ("lifting" both events out of the list), and backtracks when it
  reaches a return whose operation it could not linearize.
- A cache of visited configurations (set of linearized operations, register value) prunes
  the search: the same configuration reached by another order fails the same way.

Additions to Porcupine:

- Uncertain outcomes. `fail` operations did not happen and are dropped. `info` operations
  may have happened at any instant after their call, or never: their return is at infinity,
  and the search succeeds once every `ok` operation is linearized, whatever info operations
  remain (those never happened). Info gets are dropped (they constrain nothing).
  An info put or delete W is only ever linearized immediately before an ok get that
  observes its value. That loses no solution: in any linearization, the operation right
  after W is either such a get, or a write, or nothing; in the last two cases leaving W out
  changes no answer. So an info write whose value no ok get observed is dropped up front,
  and the others are tried only when a get needs their value: they never multiply the
  search by their own interleavings.
- A legal get is linearized greedily: when a get can be linearized now, linearizing it now
  never loses a solution (it changes no state, and nothing unlinearized must precede it),
  so on backtracking the search does not try alternatives to it.
- The set of linearized operations is a window: `low` (every ok operation numbered below it,
  in call order, is linearized) and an int bitset above it. Cache entries then stay small.

Guarantees

  `OK` means a linearization exists (it is returned, per key). `VIOLATION` means none exists
  for that key: the search was exhaustive. `UNKNOWN` means the step budget (`max_steps`,
  shared by all keys) ran out first. Time and memory are bounded by the budget: each step
  costs well under a microsecond and adds at most one cache entry.

HAZARD: `UNKNOWN` is not a pass. A caller that treats it as one hides exactly the histories
that are hardest to check (many concurrent writes, many info operations).

HAZARD: an operation whose call equals another's return is treated as concurrent with it
(calls sort before returns at equal times, as in Porcupine). With coarse clocks this hides
violations between back-to-back operations; it never reports a false one.

HAZARD: the register model is only sound for single-key operations. Transactions, scans and
conditional writes need another model; feeding their effects in as puts and gets of single
keys checks something weaker than strict serializability.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from cluster.sim.history import Operation

# Measured on these machines: about 0.3-0.5 us and at most ~30 bytes of cache per step, so
# the default gives up after roughly a second and ~60 MB. A linearizable, mostly sequential
# history needs a few steps per operation.
DEFAULT_MAX_STEPS = 2_000_000

# How many operations of a long linearizable prefix an explanation prints.
EXPLAIN_PREFIX_OPS_MAX = 8

_GET, _PUT, _DELETE = 0, 1, 2
_KIND_CODES = {"get": _GET, "put": _PUT, "delete": _DELETE}


class Outcome(enum.Enum):
    OK = "ok"
    VIOLATION = "violation"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class KeyResult:
    """The verdict for one key.

    - OK: `linearization` is a full linearization (ok operations plus the info operations
      that took effect), in order.
    - VIOLATION / UNKNOWN: `linearization` is the longest linearizable prefix found,
      `blocked` the operation that could not be placed after it (its return came first),
      `register` the register value after the prefix, and `candidates` the other
      operations that were pending there (each one tried next led to a dead end).
    """

    key: bytes
    outcome: Outcome
    ops_checked: int
    steps: int
    linearization: tuple[Operation, ...] = ()
    blocked: Operation | None = None
    register: bytes | None = None
    candidates: tuple[Operation, ...] = ()
    writers: tuple[Operation, ...] = ()  # ops that wrote the value `blocked` observed

    def explain(self) -> str:
        head = (
            f"key {self.key!r}: {_VERDICTS[self.outcome]} "
            f"({_plural(self.ops_checked, 'op')}, {_plural(self.steps, 'search step')})"
        )
        if self.outcome is Outcome.OK:
            return head
        lines = [head, *self._explain_prefix()]
        if self.blocked is None:
            return "\n".join(lines)
        lines.append(f"  register value after the prefix: {self.register!r}")
        lines.append(f"  could not be placed next: {self.blocked}")
        lines.extend(self._explain_writers())
        if self.candidates:
            lines.append("  other operations pending at that point (none of them leads further):")
            lines.extend(f"    {op}" for op in self.candidates)
        return "\n".join(lines)

    def _explain_prefix(self) -> list[str]:
        prefix = self.linearization
        lines = [f"  longest linearizable prefix found: {_plural(len(prefix), 'op')}"]
        shown = prefix[-EXPLAIN_PREFIX_OPS_MAX:]
        if len(shown) < len(prefix):
            lines.append(f"    ... {_plural(len(prefix) - len(shown), 'earlier op')}")
        first = len(prefix) - len(shown) + 1
        lines.extend(f"    {first + i:4d}. {op}" for i, op in enumerate(shown))
        return lines

    def _explain_writers(self) -> list[str]:
        blocked = self.blocked
        assert blocked is not None
        if blocked.kind != "get":
            return []
        if blocked.value is None and not self.writers:
            return ["  None (missing) is only the initial value: no delete of this key"]
        if not self.writers:
            return [f"  no put of this key ever wrote {blocked.value!r}"]
        if blocked.value is None:
            lines = ["  None (missing) is the initial value, and written by:"]
        else:
            lines = [f"  {blocked.value!r} was written by:"]
        return lines + [f"    {op}" for op in self.writers]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_VERDICTS = {
    Outcome.OK: "linearizable",
    Outcome.VIOLATION: "NOT linearizable",
    Outcome.UNKNOWN: "unknown (step budget exhausted)",
}


@dataclass(frozen=True)
class Result:
    """The verdict for a whole history: a violation on any key beats unknown beats ok."""

    outcome: Outcome
    keys: tuple[KeyResult, ...]
    steps: int
    max_steps: int

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def violation(self) -> bool:
        return self.outcome is Outcome.VIOLATION

    @property
    def unknown(self) -> bool:
        return self.outcome is Outcome.UNKNOWN

    @property
    def first(self) -> KeyResult | None:
        """The first key with this result's outcome, unless the outcome is OK."""
        if self.ok:
            return None
        return next(kr for kr in self.keys if kr.outcome is self.outcome)

    @property
    def key(self) -> bytes | None:
        first = self.first
        return None if first is None else first.key

    @property
    def violations(self) -> tuple[KeyResult, ...]:
        return tuple(kr for kr in self.keys if kr.outcome is Outcome.VIOLATION)

    def explain(self) -> str:
        counts = {o: sum(kr.outcome is o for kr in self.keys) for o in Outcome}
        summary = (
            f"{self.outcome.value}: {_plural(len(self.keys), 'key')}, {counts[Outcome.VIOLATION]} not "
            f"linearizable, {counts[Outcome.UNKNOWN]} unknown; {self.steps} of {self.max_steps} steps"
        )
        details = [kr.explain() for kr in self.keys if kr.outcome is not Outcome.OK]
        return "\n".join([summary, *details])

    __str__ = explain


def check_register_history(
    ops: Iterable[Operation], *, max_steps: int = DEFAULT_MAX_STEPS
) -> Result:
    """Checks that a key-value history is linearizable, key by key.

    Keys are checked smallest first, sharing `max_steps`; keys left when it runs out are
    UNKNOWN. Every key is checked even after a violation, while the budget lasts.
    """
    assert max_steps >= 0, max_steps
    by_key: dict[bytes, list[Operation]] = defaultdict(list)
    for op in ops:
        assert isinstance(op, Operation), op
        by_key[op.key].append(op)
    results = []
    steps_left = max_steps
    for key in sorted(by_key, key=lambda k: (len(by_key[k]), k)):
        key_result = _check_key(key, by_key[key], steps_left)
        steps_left -= key_result.steps
        assert steps_left >= 0, (steps_left, key_result.steps)
        results.append(key_result)
    outcomes = {kr.outcome for kr in results}
    if Outcome.VIOLATION in outcomes:
        outcome = Outcome.VIOLATION
    elif Outcome.UNKNOWN in outcomes:
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.OK
    return Result(outcome, tuple(results), max_steps - steps_left, max_steps)


# ---- one key ----------------------------------------------------------------------------

class _Entry:
    """A call or return event of an ok operation, in the search's doubly linked list."""

    __slots__ = ("op", "is_call", "kind", "value", "index", "ret", "prev", "next")

    def __init__(self, op: Operation | None, is_call: bool) -> None:
        self.op = op
        self.is_call = is_call
        self.kind = -1
        self.value: bytes | None = None
        self.index = -1  # 0.. in call order
        self.ret: _Entry | None = None  # a call's return entry
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


@dataclass(frozen=True, slots=True)
class _InfoWrite:
    """An info put or delete; `bit` is its bit in the search's `info_bits`."""

    op: Operation
    call: float | int
    bit: int


def _relevant_ops(ops: Sequence[Operation]) -> tuple[list[Operation], list[Operation]]:
    """Splits one key's ops into (ok ops, info ops that may matter), dropping the rest."""
    observed = {op.value for op in ops if op.kind == "get" and op.status == "ok"}
    definite = [op for op in ops if op.status == "ok"]
    info = [op for op in ops if op.status == "info" and op.kind != "get" and op.value in observed]
    return definite, info


def _build_list(definite: list[Operation]) -> tuple[_Entry, _Entry]:
    """The event list of one key's ok ops, by time, calls before returns at equal times."""
    events: list[tuple[float | int, int, int, _Entry]] = []
    definite = sorted(definite, key=lambda op: (op.call, op.ret))
    for index, op in enumerate(definite):
        call, ret = _Entry(op, True), _Entry(op, False)
        call.kind, call.value, call.index, call.ret = _KIND_CODES[op.kind], op.value, index, ret
        events.append((op.call, 0, len(events), call))
        events.append((op.ret, 1, len(events), ret))
    events.sort(key=lambda event: event[:3])
    head, tail = _Entry(None, False), _Entry(None, False)
    prev = head
    for *_, entry in events:
        prev.next, entry.prev = entry, prev
        prev = entry
    prev.next, tail.prev = tail, prev
    assert head.next is not tail, "an empty list has nothing to check"
    return head, tail


def _info_writers(info: list[Operation]) -> dict[bytes | None, list[_InfoWrite]]:
    """Info puts and deletes by the value they write, each list sorted by call time."""
    writers: dict[bytes | None, list[_InfoWrite]] = defaultdict(list)
    for bit_index, op in enumerate(sorted(info, key=lambda op: op.call)):
        assert op.status == "info" and op.kind in ("put", "delete"), op
        writers[op.value].append(_InfoWrite(op, op.call, 1 << bit_index))
    return dict(writers)


def _lift(entry: _Entry) -> None:
    entry.prev.next = entry.next
    entry.next.prev = entry.prev
    ret = entry.ret
    ret.prev.next = ret.next
    ret.next.prev = ret.prev


def _unlift(entry: _Entry) -> None:
    # The exact reverse of _lift: entries come back in LIFO order ("dancing links").
    ret = entry.ret
    ret.prev.next = ret
    ret.next.prev = ret
    entry.prev.next = entry
    entry.next.prev = entry


def _check_key(key: bytes, ops: Sequence[Operation], max_steps: int) -> KeyResult:
    definite, info = _relevant_ops(ops)
    if not definite:
        return KeyResult(key, Outcome.OK, len(ops), 0, ())
    head, tail = _build_list(definite)
    search = _Search(head, tail, len(definite), _info_writers(info), max_steps)
    outcome = search.run()
    if outcome is Outcome.OK:
        return KeyResult(key, outcome, len(ops), search.steps, search.linearization())
    return search.failure(key, outcome, ops, definite + info)


# Fields of a search stack frame: the get/put/delete linearized (with the info write placed
# just before it, if any, and which of the info writers of its value that was), the
# configuration just before it, whether it was forced (a legal get), and the parent frame.
_F_ENTRY, _F_CHOICE, _F_WRITER, _F_REGISTER, _F_LOW, _F_WINDOW, _F_INFO, _F_FORCED, _F_PARENT = range(9)


class _Search:
    """Porcupine's DFS over one key's event list (see the module docstring).

    The stack is a linked list of frame tuples (fields `_F_*`), so remembering the deepest
    stack seen costs nothing. A scan position is `(entry, choice)`: for a get whose value
    differs from the register, `choice` indexes the info writers of that value to try next.
    """

    def __init__(
        self,
        head: _Entry,
        tail: _Entry,
        ok_ops: int,
        info_writers: dict[bytes | None, list[_InfoWrite]],
        max_steps: int,
    ) -> None:
        assert ok_ops > 0, ok_ops
        assert max_steps >= 0, max_steps
        self.head = head
        self.tail = tail
        self.ok_ops = ok_ops
        self.info_writers = info_writers
        self.max_steps = max_steps
        self.steps = 0
        self.frame: tuple | None = None
        self.best_depth = -1
        self.best_frame: tuple | None = None
        self.best_blocked: Operation | None = None
        self.best_register: bytes | None = None

    def run(self) -> Outcome:  # noqa: C901 - one hot loop, kept flat for speed
        head, ok_ops, max_steps, info_writers = self.head, self.ok_ops, self.max_steps, self.info_writers
        cache: set[tuple] = set()
        # Invariant: every ok op numbered below `low` is linearized, op `low` is not;
        # bit j of `window` is set iff ok op `low + j` is linearized.
        low, window, info_bits = 0, 0, 0
        register: bytes | None = None
        frame: tuple | None = None
        depth = 0
        steps = 0
        entry, choice = head.next, 0
        while low < ok_ops:
            if steps >= max_steps:
                self.steps, self.frame = steps, frame
                if depth > self.best_depth:
                    self._remember(depth, frame, None, register)
                return Outcome.UNKNOWN
            steps += 1
            if not entry.is_call:
                # A return: its operation had to be linearized by now and could not be.
                assert entry is not self.tail, "the search ran past every return"
                if depth > self.best_depth:
                    self._remember(depth, frame, entry.op, register)
                while True:
                    if frame is None:
                        self.steps = steps
                        return Outcome.VIOLATION
                    popped = frame
                    _, _, _, register, low, window, info_bits, forced, frame = popped
                    depth -= 1
                    _unlift(popped[_F_ENTRY])
                    if not forced:
                        break
                if popped[_F_WRITER] is None:
                    entry, choice = popped[_F_ENTRY].next, 0
                else:
                    entry, choice = popped[_F_ENTRY], popped[_F_CHOICE] + 1
                continue
            kind = entry.kind
            writer = None
            new_info_bits = info_bits
            if kind == _GET:
                if entry.value != register:
                    writers = info_writers.get(entry.value)
                    choice = -1 if writers is None else _usable_writer(writers, choice, info_bits, entry)
                    if choice < 0:
                        entry, choice = entry.next, 0
                        continue
                    writer = writers[choice]
                    new_info_bits = info_bits | writer.bit
                new_register = entry.value
            elif kind == _PUT:
                new_register = entry.value
            else:
                new_register = None
            shift = entry.index - low
            if shift:
                new_low, new_window = low, window | (1 << shift)
            else:
                w = window | 1
                ones = ((~w) & (w + 1)).bit_length() - 1  # trailing ones of w
                new_low, new_window = low + ones, w >> ones
            config = (new_low, new_window, new_info_bits, new_register)
            if config in cache:
                if writer is None:
                    entry, choice = entry.next, 0
                else:
                    choice += 1
                continue
            cache.add(config)
            forced = kind == _GET and writer is None
            frame = (entry, choice, writer, register, low, window, info_bits, forced, frame)
            depth += 1
            register, low, window, info_bits = new_register, new_low, new_window, new_info_bits
            _lift(entry)
            entry, choice = head.next, 0
        self.steps, self.frame = steps, frame
        return Outcome.OK

    def _remember(
        self, depth: int, frame: tuple | None, blocked: Operation | None, register: bytes | None
    ) -> None:
        assert depth > self.best_depth, (depth, self.best_depth)
        self.best_depth = depth
        self.best_frame = frame
        self.best_blocked = blocked
        self.best_register = register

    @staticmethod
    def _ops_of(frame: tuple | None) -> tuple[Operation, ...]:
        ops = []
        while frame is not None:
            ops.append(frame[_F_ENTRY].op)
            if frame[_F_WRITER] is not None:
                ops.append(frame[_F_WRITER].op)
            frame = frame[_F_PARENT]
        ops.reverse()
        return tuple(ops)

    def linearization(self) -> tuple[Operation, ...]:
        ops = self._ops_of(self.frame)
        assert sum(op.status == "ok" for op in ops) == self.ok_ops, (len(ops), self.ok_ops)
        return ops

    def failure(
        self,
        key: bytes,
        outcome: Outcome,
        ops: Sequence[Operation],
        relevant: Sequence[Operation],
    ) -> KeyResult:
        """The deepest point the search reached, as a KeyResult; `relevant`: the ops searched."""
        assert outcome is not Outcome.OK, outcome
        prefix = self._ops_of(self.best_frame)
        blocked = self.best_blocked
        assert blocked is not None or outcome is Outcome.UNKNOWN
        candidates: tuple[Operation, ...] = ()
        writers: tuple[Operation, ...] = ()
        if blocked is not None:
            assert blocked.ret is not None, blocked
            # The window at the deepest point: unplaced ops called before `blocked` returned.
            placed = set(map(id, prefix))
            candidates = tuple(
                op for op in relevant
                if id(op) not in placed and op is not blocked and op.call <= blocked.ret
            )
            if blocked.kind == "get":
                wanted = "delete" if blocked.value is None else "put"
                writers = tuple(op for op in ops if op.kind == wanted and op.value == blocked.value)
        return KeyResult(
            key, outcome, len(ops), self.steps, prefix, blocked, self.best_register,
            candidates, writers,
        )


def _usable_writer(writers: list[_InfoWrite], start: int, info_bits: int, get: _Entry) -> int:
    """The index, from `start`, of an info writer that can go just before `get`, or -1.

    It must not be linearized yet and must have been called before the first remaining
    return (which follows `get`, a candidate, in the list): an operation returned before
    the writer was called precedes it.
    """
    deadline_entry = get.next
    while deadline_entry.is_call:
        deadline_entry = deadline_entry.next
    deadline = deadline_entry.op.ret
    for index in range(start, len(writers)):
        writer = writers[index]
        if writer.call > deadline:
            return -1  # sorted by call: every later writer is too late as well
        if not writer.bit & info_bits:
            return index
    return -1
