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
- Compare-and-set (`CasOperation`, used by the chaos tool; the simulator has none): an ok
  cas needs the register to hold `expected` and sets it to `value`, atomically. It reads the
  register like a get, so an info write may be placed just before it too. An info cas is a
  *conditional* info write: it can only be placed where the register holds its `expected`,
  which may in turn need another info write just before it. So before a reader the search
  tries every *chain* of unused info writes that turns the current register into the value
  the reader needs: an unconditional write or a cas expecting the current value first, then
  cas operations, each expecting the value the previous one wrote. The argument above still
  holds: in any linearization, an info write followed by a blind write or by nothing can be
  left out, so the ones that remain form such chains, each ending just before an ok get or
  ok cas. Without info cas operations there are only chains of one write, as before.
  A `fail` cas is dropped like any fail operation. It did observe something (the register
  did not hold `expected`), but only a "not equal" constraint, which rarely exposes a bug
  that reads do not; dropping it never reports a false violation, it may miss one.
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

HAZARD: many info cas operations that can chain into the same value (values reused across
writes) make the chain enumeration before each reader exponential. Writers of unique values
(as the chaos workloads use) have at most one chain per reader.

HAZARD: the register model is only sound for single-key operations. Transactions, scans and
conditional writes other than `CasOperation` need another model; feeding their effects in as
puts and gets of single keys checks something weaker than strict serializability.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar, Iterable, Sequence

from cluster.sim.history import HistoryError, Operation, Time, _format_time

# Measured on these machines: about 0.3-0.5 us and at most ~30 bytes of cache per step, so
# the default gives up after roughly a second and ~60 MB. A linearizable, mostly sequential
# history needs a few steps per operation.
DEFAULT_MAX_STEPS = 2_000_000

# How many operations of a long linearizable prefix an explanation prints.
EXPLAIN_PREFIX_OPS_MAX = 8

_GET, _PUT, _DELETE, _CAS = 0, 1, 2, 3
_KIND_CODES = {"get": _GET, "put": _PUT, "delete": _DELETE, "cas": _CAS}


@dataclass(frozen=True, slots=True)
class CasOperation:
    """A compare-and-set of one key: if the register holds `expected`, it becomes `value`.

    The fields and statuses mean what they mean for `Operation` (cluster.sim.history): an
    `ok` cas swapped at some instant in `[call, ret]`; a `fail` cas definitely wrote nothing
    (the register did not hold `expected`); an `info` cas may have swapped at any instant
    after `call`, or never (`ret` is None). `None` as `expected` or `value` is a missing key.
    """

    process: int
    key: bytes
    expected: bytes | None
    value: bytes | None
    call: Time
    ret: Time | None
    status: str
    kind: ClassVar[str] = "cas"

    def __post_init__(self) -> None:
        # A get without a value has every other field's rules: let Operation check them.
        Operation(self.process, "get", self.key, None, self.call, self.ret, self.status)
        for name in ("expected", "value"):
            given = getattr(self, name)
            if given is not None and not isinstance(given, bytes):
                raise HistoryError(f"{name} must be bytes or None, got {type(given).__name__}")

    def __str__(self) -> str:
        end = "inf)" if self.ret is None else f"{_format_time(self.ret)}]"
        shown = f"cas {self.key!r} {self.expected!r} -> {self.value!r}"
        return f"p{self.process} {shown}  [{_format_time(self.call)}, {end} {self.status}"


AnyOperation = Operation | CasOperation


def _read_value(op: AnyOperation) -> bytes | None:
    """The register value an ok get or cas needs to see."""
    return op.expected if op.kind == "cas" else op.value


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
    linearization: tuple[AnyOperation, ...] = ()
    blocked: AnyOperation | None = None
    register: bytes | None = None
    candidates: tuple[AnyOperation, ...] = ()
    writers: tuple[AnyOperation, ...] = ()  # ops that wrote the value `blocked` needed

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
        if blocked.kind not in ("get", "cas"):
            return []
        needed = _read_value(blocked)
        if needed is None and not self.writers:
            return ["  None (missing) is only the initial value: no delete of this key"]
        if not self.writers:
            return [f"  no put of this key ever wrote {needed!r}"]
        if needed is None:
            lines = ["  None (missing) is the initial value, and written by:"]
        else:
            lines = [f"  {needed!r} was written by:"]
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
    ops: Iterable[AnyOperation], *, max_steps: int = DEFAULT_MAX_STEPS
) -> Result:
    """Checks that a key-value history is linearizable, key by key.

    Keys are checked smallest first, sharing `max_steps`; keys left when it runs out are
    UNKNOWN. Every key is checked even after a violation, while the budget lasts.
    """
    assert max_steps >= 0, max_steps
    by_key: dict[bytes, list[AnyOperation]] = defaultdict(list)
    for op in ops:
        assert isinstance(op, (Operation, CasOperation)), op
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

    __slots__ = ("op", "is_call", "kind", "value", "expected", "index", "ret", "prev", "next")

    def __init__(self, op: AnyOperation | None, is_call: bool) -> None:
        self.op = op
        self.is_call = is_call
        self.kind = -1
        self.value: bytes | None = None  # what a get observed, or what a put or cas wrote
        self.expected: bytes | None = None  # what a cas needed
        self.index = -1  # 0.. in call order
        self.ret: _Entry | None = None  # a call's return entry
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


@dataclass(frozen=True, slots=True)
class _InfoWrite:
    """An info put, delete or cas; `bit` is its bit in the search's `info_bits`.

    A cas is `conditional`: it can only be placed where the register holds `expected`.
    """

    op: AnyOperation
    call: float | int
    bit: int
    conditional: bool = False
    expected: bytes | None = None


def _relevant_ops(ops: Sequence[AnyOperation]) -> tuple[list[AnyOperation], list[AnyOperation]]:
    """Splits one key's ops into (ok ops, info writes that may matter), dropping the rest.

    An info write matters only if its value may be read: by an ok get or cas, or by an info
    cas that itself matters (as the start of its chain).
    """
    definite = [op for op in ops if op.status == "ok"]
    needed = {_read_value(op) for op in definite if op.kind in ("get", "cas")}
    info_writes = [op for op in ops if op.status == "info" and op.kind != "get"]
    info_cas = [op for op in info_writes if op.kind == "cas"]
    grown = True
    while grown:  # a fixpoint: each round adds a value or ends
        grown = False
        for op in info_cas:
            if op.value in needed and op.expected not in needed:
                needed.add(op.expected)
                grown = True
    info = [op for op in info_writes if op.value in needed]
    return definite, info


def _build_list(definite: list[AnyOperation]) -> tuple[_Entry, _Entry]:
    """The event list of one key's ok ops, by time, calls before returns at equal times."""
    events: list[tuple[float | int, int, int, _Entry]] = []
    definite = sorted(definite, key=lambda op: (op.call, op.ret))
    for index, op in enumerate(definite):
        call, ret = _Entry(op, True), _Entry(op, False)
        call.kind, call.value, call.index, call.ret = _KIND_CODES[op.kind], op.value, index, ret
        if op.kind == "cas":
            call.expected = op.expected
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


def _info_writers(info: list[AnyOperation]) -> dict[bytes | None, list[_InfoWrite]]:
    """Info puts, deletes and cas by the value they write, each list sorted by call time."""
    writers: dict[bytes | None, list[_InfoWrite]] = defaultdict(list)
    for bit_index, op in enumerate(sorted(info, key=lambda op: op.call)):
        assert op.status == "info" and op.kind in ("put", "delete", "cas"), op
        if op.kind == "cas":
            write = _InfoWrite(op, op.call, 1 << bit_index, True, op.expected)
        else:
            write = _InfoWrite(op, op.call, 1 << bit_index)
        writers[op.value].append(write)
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


def _check_key(key: bytes, ops: Sequence[AnyOperation], max_steps: int) -> KeyResult:
    definite, info = _relevant_ops(ops)
    if not definite:
        return KeyResult(key, Outcome.OK, len(ops), 0, ())
    head, tail = _build_list(definite)
    search = _Search(head, tail, len(definite), _info_writers(info), max_steps)
    outcome = search.run()
    if outcome is Outcome.OK:
        return KeyResult(key, outcome, len(ops), search.steps, search.linearization())
    return search.failure(key, outcome, ops, definite + info)


# Fields of a search stack frame: the get/put/delete/cas linearized (with the chain of info
# writes placed just before it, if any, and which choice of chain that was), the
# configuration just before it, whether it was forced (a legal get), and the parent frame.
_F_ENTRY, _F_CHOICE, _F_WRITER, _F_REGISTER, _F_LOW, _F_WINDOW, _F_INFO, _F_FORCED, _F_PARENT = range(9)


class _Search:
    """Porcupine's DFS over one key's event list (see the module docstring).

    The stack is a linked list of frame tuples (fields `_F_*`), so remembering the deepest
    stack seen costs nothing. A scan position is `(entry, choice)`: for a get or cas that
    needs a value other than the register's, `choice` indexes the info writers of that value
    to try next, or, when there are info cas operations, the chains of info writes (see
    `_chains`).
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
        # Without conditional info writes a chain is one write: the faster lookup suffices.
        self.chained = any(w.conditional for ws in info_writers.values() for w in ws)
        self.max_steps = max_steps
        self.steps = 0
        self.frame: tuple | None = None
        self.best_depth = -1
        self.best_frame: tuple | None = None
        self.best_blocked: AnyOperation | None = None
        self.best_register: bytes | None = None

    def run(self) -> Outcome:  # noqa: C901 - one hot loop, kept flat for speed
        head, ok_ops, max_steps, info_writers = self.head, self.ok_ops, self.max_steps, self.info_writers
        chained = self.chained
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
            writer = None  # the chain of info writes placed just before entry, if any
            new_info_bits = info_bits
            if kind == _GET or kind == _CAS:
                needed = entry.value if kind == _GET else entry.expected
                if needed != register:
                    if chained:
                        chains = _chains(info_writers, needed, register, info_bits, entry)
                        if choice >= len(chains):
                            entry, choice = entry.next, 0
                            continue
                        writer = chains[choice]
                    else:
                        writers = info_writers.get(needed)
                        choice = -1 if writers is None else _usable_writer(writers, choice, info_bits, entry)
                        if choice < 0:
                            entry, choice = entry.next, 0
                            continue
                        writer = (writers[choice],)
                    for write in writer:
                        new_info_bits |= write.bit
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
        self, depth: int, frame: tuple | None, blocked: AnyOperation | None, register: bytes | None
    ) -> None:
        assert depth > self.best_depth, (depth, self.best_depth)
        self.best_depth = depth
        self.best_frame = frame
        self.best_blocked = blocked
        self.best_register = register

    @staticmethod
    def _ops_of(frame: tuple | None) -> tuple[AnyOperation, ...]:
        ops = []
        while frame is not None:
            ops.append(frame[_F_ENTRY].op)
            if frame[_F_WRITER] is not None:
                ops.extend(write.op for write in reversed(frame[_F_WRITER]))
            frame = frame[_F_PARENT]
        ops.reverse()
        return tuple(ops)

    def linearization(self) -> tuple[AnyOperation, ...]:
        ops = self._ops_of(self.frame)
        assert sum(op.status == "ok" for op in ops) == self.ok_ops, (len(ops), self.ok_ops)
        return ops

    def failure(
        self,
        key: bytes,
        outcome: Outcome,
        ops: Sequence[AnyOperation],
        relevant: Sequence[AnyOperation],
    ) -> KeyResult:
        """The deepest point the search reached, as a KeyResult; `relevant`: the ops searched."""
        assert outcome is not Outcome.OK, outcome
        prefix = self._ops_of(self.best_frame)
        blocked = self.best_blocked
        assert blocked is not None or outcome is Outcome.UNKNOWN
        candidates: tuple[AnyOperation, ...] = ()
        writers: tuple[AnyOperation, ...] = ()
        if blocked is not None:
            assert blocked.ret is not None, blocked
            # The window at the deepest point: unplaced ops called before `blocked` returned.
            placed = set(map(id, prefix))
            candidates = tuple(
                op for op in relevant
                if id(op) not in placed and op is not blocked and op.call <= blocked.ret
            )
            if blocked.kind in ("get", "cas"):
                needed = _read_value(blocked)
                writers = tuple(op for op in ops if op.kind != "get" and op.value == needed)
        return KeyResult(
            key, outcome, len(ops), self.steps, prefix, blocked, self.best_register,
            candidates, writers,
        )


def _deadline(reader: _Entry) -> Time:
    """The time of the first remaining return after `reader` (a candidate) in the list.

    An info write placed just before `reader` must have been called by then: an operation
    that returned before the write was called precedes it.
    """
    deadline_entry = reader.next
    while deadline_entry.is_call:
        deadline_entry = deadline_entry.next
    return deadline_entry.op.ret


def _chains(
    info_writers: dict[bytes | None, list[_InfoWrite]],
    needed: bytes | None,
    register: bytes | None,
    info_bits: int,
    reader: _Entry,
) -> list[tuple[_InfoWrite, ...]]:
    """Every chain of unused info writes that, placed in order just before `reader`, turns
    `register` into `needed` (see the module docstring), in a deterministic order."""
    chains: list[tuple[_InfoWrite, ...]] = []
    _collect_chains(info_writers, needed, register, info_bits, _deadline(reader), (), chains)
    return chains


def _collect_chains(info_writers, needed, register, info_bits, deadline, suffix, chains) -> None:
    for writer in info_writers.get(needed, ()):
        if writer.call > deadline:
            return  # sorted by call: every later writer is too late as well
        if writer.bit & info_bits:
            continue
        chain = (writer,) + suffix
        if not writer.conditional or writer.expected == register:
            chains.append(chain)
        else:
            # A chain that starts and ends at the register changes nothing: never needed.
            _collect_chains(
                info_writers, writer.expected, register, info_bits | writer.bit, deadline, chain, chains
            )


def _usable_writer(writers: list[_InfoWrite], start: int, info_bits: int, get: _Entry) -> int:
    """The index, from `start`, of an info writer that can go just before `get`, or -1.

    It must not be linearized yet and must have been called before the first remaining
    return (see `_deadline`).
    """
    deadline = _deadline(get)
    for index in range(start, len(writers)):
        writer = writers[index]
        if writer.call > deadline:
            return -1  # sorted by call: every later writer is too late as well
        if not writer.bit & info_bits:
            return index
    return -1
