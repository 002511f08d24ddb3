"""Elle-style strict-serializability checker for list-append histories: `check_list_append`.

The workload: every key holds a list. A transaction is a sequence of micro-operations,
`append(k, v)` (v is unique per key across the whole history) and `read(k)` (returns the
whole list, in append order). Because a read returns every value appended so far, in order,
one read reveals the version order of its key up to that point. That is what lets Elle infer
a dependency graph from the observations alone and look for cycles in polynomial time
(Kleppmann & Alvaro, "Elle: Inferring Isolation Anomalies from Experimental Observations",
VLDB 2020; Jepsen's `elle.list-append`). The checker uses only the standard library, so the
simulator and a real-process chaos tester can both use it.

Which observations count

- Only reads of `ok` transactions are observations. Reads of `fail` transactions never
  happened; reads of `info` transactions are unknown (the client got no answer).
- Graph nodes: every `ok` transaction, plus every `info` transaction one of whose appends an
  `ok` read observed (it must have committed). `fail` transactions are never nodes.

Method

1. Internal consistency, per `ok` transaction and key: a read must equal the transaction's
   previous read of the key followed by its own appends since; with no previous read, it
   must end with the transaction's own appends so far. Violation: "internal".
2. Version order, per key: the longest `ok` read is the order. Every other read must be a
   prefix of it ("incompatible-order" otherwise, naming both reads' transactions). Appends
   that no read observed stay unordered.
3. Observation anomalies, per `ok` read: a value appended by a `fail` transaction ("G1a"),
   a value nobody appended ("dirty", Jepsen's garbage read), a value twice in one list
   ("duplicate"), a list ending with a value its writer overwrote later in the same
   transaction ("G1b").
4. Dependency edges between graph nodes, using each transaction's *external* read of a key
   (its first read of it, before any own append to it; later reads are covered by step 1):
   - ww(k): T1 -> T2 when T2 appended the next version of k after T1's version, in the
     inferred order (versions by non-nodes, e.g. aborted or garbage ones, are skipped);
   - wr(k): T1 -> T2 when T2's external read of k ended with a value T1 appended;
   - rw(k): T1 -> T2 when T1's external read of k ended at version v (or was empty) and T2
     appended the next version after v;
   - rt: T1 -> T2 when T1 (ok) completed strictly before T2 was invoked. Only a transitive
     reduction-ish subset is added: a sweep over invoke/complete events keeps the
     "frontier" (completed transactions with no completed real-time successor yet) and links
     it to each invocation; when T completes, the frontier members that preceded T are
     replaced by T. Every real-time pair stays connected by a path of rt edges, and in a
     mostly sequential history each transaction gets about one rt edge.
5. Cycles: Tarjan's strongly connected components over all edges; within each component,
   the most severe cycle found, trying in turn: ww only ("G0"), ww+wr ("G1c"), ww+wr plus
   exactly one rw ("G-single"), ww+wr+rw ("G2"); then the same four with rt edges allowed,
   which gives the kind a "-realtime" suffix (serializable, but not strictly
   serializable). A cycle is found by BFS from one node back to itself (shortest through
   that node), or for G-single by BFS from the rw edge's head back to its tail.

HAZARD: appends no read observed are unordered and get no ww/rw edges, so anomalies that
only involve them are invisible (e.g. a lost append that nobody ever read, or a stale read
whose missing value no later read shows). Workloads should read keys often.

HAZARD: the version order comes from the longest read only. An incompatible read is
reported, but it gets no rw edges (its position in the order is meaningless), so cycles
through it may be missed.

HAZARD: one cycle per strongly connected component. Real-time edges often merge unrelated
anomalies into one component; only the most severe of them is reported (the history is
still invalid). Fix the first, re-run, see the next.

HAZARD: the G-single search gives up after `SINGLE_RW_SEARCH_BUDGET` BFS steps per
component; the component is then classified by a later rung of the ladder (e.g. "G2" where
a G-single cycle exists). It is still reported.

HAZARD: a transaction's reads after its first own append to a key give no edges, only the
internal check; and a repeated external read gives no edges either (the internal check
reports it if it differs).

HAZARD: real-time edges trust `invoke_ns`/`complete_ns`: they must come from one clock
(e.g. one host's monotonic clock). Skewed clocks across client processes give false
"-realtime" anomalies (too early completions) or hide real ones. Equal times count as
concurrent, which never gives a false report. Process order is not checked.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

__all__ = ["Anomaly", "CheckResult", "Op", "Txn", "check_list_append"]

OK, FAIL, INFO = "ok", "fail", "info"
APPEND, READ = "append", "read"
WW, WR, RW, RT = "ww", "wr", "rw", "rt"

# Per component. Each step expands one node of a BFS (a few microseconds): about a second.
SINGLE_RW_SEARCH_BUDGET = 200_000

# How many examples of each anomaly kind `CheckResult.summary` shows.
SUMMARY_EXAMPLES = 3

# How many trailing values of a read list an explanation shows (lists grow long).
EXPLAIN_LIST_TAIL = 6

# When a pair of transactions has several edge kinds, a cycle shows the one that makes it
# most severe: ww before wr before rw, and rt only if nothing else links them.
_EDGE_PREFERENCE = (WW, WR, RW, RT)

# The cycle search ladder, most severe first: (edge kinds allowed, exactly one rw edge).
_LADDER = (
    (frozenset({WW}), False),
    (frozenset({WW, WR}), False),
    (frozenset({WW, WR}), True),
    (frozenset({WW, WR, RW}), False),
)
_ALL_EDGES = frozenset(_EDGE_PREFERENCE)


@dataclass(frozen=True)
class Op:
    """One micro-operation. For a read, `value` is the list read, or None if unknown."""

    kind: str  # "append" or "read"
    key: object
    value: object


@dataclass
class Txn:
    id: int
    process: int
    ops: list[Op]
    status: str  # "ok" (committed), "fail" (definitely aborted), "info" (unknown)
    invoke_ns: int
    complete_ns: int | None = None  # None unless ok


@dataclass
class Anomaly:
    kind: str
    txns: list[int]  # for a cycle: the cycle in order
    explanation: str


@dataclass
class CheckResult:
    valid: bool
    anomalies: list[Anomaly]

    def summary(self) -> str:
        if self.valid:
            return "valid: no anomalies found"
        by_kind: dict[str, list[Anomaly]] = defaultdict(list)
        for anomaly in self.anomalies:
            by_kind[anomaly.kind].append(anomaly)
        lines = [f"invalid: {len(self.anomalies)} anomalies"]
        for kind, found in by_kind.items():
            lines.append(f"{kind}: {len(found)}")
            lines.extend(f"  {a.explanation}" for a in found[:SUMMARY_EXAMPLES])
        return "\n".join(lines)


def check_list_append(history: list[Txn]) -> CheckResult:
    """Check a list-append history for strict serializability (see the module docstring).

    Raises ValueError on a malformed history (unknown status or op kind, duplicate
    transaction id, an ok transaction without completion time, a value appended twice).
    """
    writers = _index_writers(history)
    reads = _committed_reads(history)
    orders, order_anomalies = _infer_version_orders(reads)
    anomalies = [a for txn in history if txn.status == OK for a in _internal_anomalies(txn)]
    anomalies += _observation_anomalies(reads, writers, orders)
    anomalies += order_anomalies
    graph = _build_graph(history, reads, writers, orders)
    anomalies += _cycle_anomalies(graph)
    return CheckResult(valid=not anomalies, anomalies=anomalies)


# --- input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    txn: Txn
    key: object
    values: tuple
    # The txn's first read of the key before any own append to it: what it saw of others.
    external: bool


def _index_writers(history: list[Txn]) -> dict[tuple[object, object], Txn]:
    """(key, value) -> the transaction that appended it. Also validates the history."""
    writers: dict[tuple[object, object], Txn] = {}
    ids: set[int] = set()
    for txn in history:
        _validate_txn(txn, ids)
        ids.add(txn.id)
        for op in txn.ops:
            if op.kind != APPEND:
                continue
            if (op.key, op.value) in writers:
                raise ValueError(f"value {op.value!r} appended twice to key {_show(op.key)}")
            writers[(op.key, op.value)] = txn
    return writers


def _validate_txn(txn: Txn, ids_so_far: set[int]) -> None:
    if txn.id in ids_so_far:
        raise ValueError(f"duplicate transaction id {txn.id}")
    if txn.status not in (OK, FAIL, INFO):
        raise ValueError(f"T{txn.id}: unknown status {txn.status!r}")
    if txn.status == OK and txn.complete_ns is None:
        raise ValueError(f"T{txn.id}: ok transaction without complete_ns")
    for op in txn.ops:
        if op.kind not in (APPEND, READ):
            raise ValueError(f"T{txn.id}: unknown op kind {op.kind!r}")


def _committed_reads(history: list[Txn]) -> list[_Read]:
    reads = []
    for txn in history:
        if txn.status != OK:
            continue
        touched: set[object] = set()  # keys this txn already read (known) or appended to
        for op in txn.ops:
            if op.kind == READ and op.value is not None:
                reads.append(_Read(txn, op.key, tuple(op.value), op.key not in touched))
            if op.kind == APPEND or op.value is not None:
                touched.add(op.key)
    return reads


# --- checks without the graph ----------------------------------------------------------


def _internal_anomalies(txn: Txn) -> Iterator[Anomaly]:
    # key -> (whether the whole list is known, the list or just the suffix it must end with)
    expected: dict[object, tuple[bool, tuple]] = {}
    for op in txn.ops:
        whole, values = expected.get(op.key, (False, ()))
        if op.kind == APPEND:
            expected[op.key] = (whole, values + (op.value,))
            continue
        if op.value is None:
            continue
        read = tuple(op.value)
        if not _matches_expectation(read, whole, values):
            wanted = _show_list(values) if whole else f"a list ending with {_show_list(values)}"
            yield Anomaly(
                "internal",
                [txn.id],
                f"T{txn.id} read {_show(op.key)}={_show_list(read)} but its own earlier reads and "
                f"appends imply {wanted}",
            )
        expected[op.key] = (True, read)


def _matches_expectation(read: tuple, whole: bool, values: tuple) -> bool:
    if whole:
        return read == values
    return len(read) >= len(values) and read[len(read) - len(values) :] == values


def _infer_version_orders(reads: list[_Read]) -> tuple[dict[object, tuple], list[Anomaly]]:
    """Per key, the longest read is the version order; every read must be a prefix of it."""
    by_key: dict[object, list[_Read]] = defaultdict(list)
    for read in reads:
        by_key[read.key].append(read)
    orders, anomalies = {}, []
    for key, key_reads in by_key.items():
        longest = max(key_reads, key=lambda read: len(read.values))
        orders[key] = longest.values
        for read in key_reads:
            if not _is_prefix(read.values, longest.values):
                anomalies.append(_incompatible_order(read, longest))
    return orders, anomalies


def _is_prefix(short: tuple, long: tuple) -> bool:
    return long[: len(short)] == short


def _fits_order(read: _Read, orders: dict[object, tuple]) -> bool:
    return _is_prefix(read.values, orders[read.key])


def _incompatible_order(read: _Read, longest: _Read) -> Anomaly:
    return Anomaly(
        "incompatible-order",
        [read.txn.id, longest.txn.id],
        f"T{read.txn.id} read {_show(read.key)}={_show_list(read.values)} and T{longest.txn.id} "
        f"read {_show(read.key)}={_show_list(longest.values)}: neither is a prefix of the other",
    )


def _observation_anomalies(reads, writers, orders) -> list[Anomaly]:
    """G1a, dirty, duplicate and G1b, per read.

    Reads that fit the version order are prefixes of it, so the order is scanned once per
    key and each such read is charged the bad positions it is long enough to include:
    scanning every read in full would cost the square of the list length.
    """
    bad_in_order = {key: list(_bad_positions(key, order, writers)) for key, order in orders.items()}
    anomalies = []
    for read in reads:
        if _fits_order(read, orders):
            length = len(read.values)
            bad = itertools.takewhile(lambda found: found[0] < length, bad_in_order[read.key])
        else:
            bad = _bad_positions(read.key, read.values, writers)
        anomalies += [_observation_anomaly(read, kind, value, writers) for _, kind, value in bad]
        anomalies += _intermediate_read(read, writers)
    return anomalies


def _bad_positions(key, values: tuple, writers) -> Iterator[tuple[int, str, object]]:
    """(position, anomaly kind, value) for each bad element of a list read of key."""
    seen = set()
    for position, value in enumerate(values):
        writer = writers.get((key, value))
        if value in seen:
            yield position, "duplicate", value
        elif writer is None:
            yield position, "dirty", value
        elif writer.status == FAIL:
            yield position, "G1a", value
        seen.add(value)


def _observation_anomaly(read: _Read, kind: str, value, writers) -> Anomaly:
    where = f"T{read.txn.id} read {_show(read.key)}={_show_list(read.values)}"
    if kind == "duplicate":
        return Anomaly(kind, [read.txn.id], f"{where}: {value!r} appears more than once")
    if kind == "dirty":
        return Anomaly(kind, [read.txn.id], f"{where}: nobody appended {value!r}")
    writer = writers[(read.key, value)]
    return Anomaly(
        kind, [writer.id, read.txn.id], f"{where}: {value!r} was appended by aborted T{writer.id}"
    )


def _intermediate_read(read: _Read, writers) -> list[Anomaly]:
    if not read.values:
        return []
    last = read.values[-1]
    writer = writers.get((read.key, last))
    # An aborted writer is G1a already; a txn may see its own intermediate appends.
    if writer is None or writer.status == FAIL or writer is read.txn:
        return []
    final = _final_append(writer, read.key)
    if final == last:
        return []
    return [
        Anomaly(
            "G1b",
            [writer.id, read.txn.id],
            f"T{read.txn.id} read {_show(read.key)}={_show_list(read.values)}, ending with "
            f"{last!r}, but T{writer.id} later appended {final!r} to {_show(read.key)}",
        )
    ]


def _final_append(txn: Txn, key) -> object:
    return [op.value for op in txn.ops if op.kind == APPEND and op.key == key][-1]


# --- dependency graph ------------------------------------------------------------------


class _Graph:
    def __init__(self, nodes: Iterable[int]):
        self.nodes = set(nodes)
        # src -> dst -> {edge kind: key that justified it (None for rt)}; first key wins.
        self.edges: dict[int, dict[int, dict[str, object]]] = defaultdict(dict)

    def add(self, src: int, dst: int, kind: str, key: object = None) -> None:
        if src != dst:
            self.edges[src].setdefault(dst, {}).setdefault(kind, key)

    def successors(self, node: int, kinds: frozenset, members: set[int]) -> list[int]:
        return [
            dst
            for dst, found in self.edges.get(node, {}).items()
            if dst in members and not kinds.isdisjoint(found)
        ]

    def edges_of_kind(self, kind: str, members: set[int]) -> list[tuple[int, int]]:
        return [
            (src, dst)
            for src in sorted(members)
            for dst, found in self.edges.get(src, {}).items()
            if dst in members and kind in found
        ]


def _build_graph(history, reads, writers, orders) -> _Graph:
    observed = _observed_writers(reads, writers, orders)
    nodes = [t for t in history if t.status == OK or (t.status == INFO and t.id in observed)]
    graph = _Graph(t.id for t in nodes)
    _add_ww_edges(graph, orders, writers)
    _add_read_edges(graph, reads, writers, orders)
    _add_realtime_edges(graph, nodes)
    return graph


def _observed_writers(reads, writers, orders) -> set[int]:
    # Reads that fit the order are prefixes of it: only the order and misfits need a scan.
    lists = [(key, order) for key, order in orders.items()]
    lists += [(r.key, r.values) for r in reads if not _fits_order(r, orders)]
    return {
        writers[(key, value)].id
        for key, values in lists
        for value in values
        if (key, value) in writers
    }


def _node_writers(key, order: tuple, writers, graph: _Graph) -> list[int | None]:
    """Per version of key, its writer's id if that writer is a graph node, else None."""
    ids = []
    for value in order:
        writer = writers.get((key, value))
        ids.append(writer.id if writer is not None and writer.id in graph.nodes else None)
    return ids


def _add_ww_edges(graph: _Graph, orders, writers) -> None:
    for key, order in orders.items():
        versions = [w for w in _node_writers(key, order, writers, graph) if w is not None]
        for earlier, later in zip(versions, versions[1:]):
            graph.add(earlier, later, WW, key)


def _add_read_edges(graph: _Graph, reads, writers, orders) -> None:
    """wr and rw edges from each external read."""
    next_writers = {
        key: _next_node_writers(_node_writers(key, order, writers, graph))
        for key, order in orders.items()
    }
    for read in reads:
        if not read.external:
            continue
        if read.values:
            writer = writers.get((read.key, read.values[-1]))
            if writer is not None and writer.id in graph.nodes:
                graph.add(writer.id, read.txn.id, WR, read.key)
        if _fits_order(read, orders):
            overwriter = next_writers[read.key][len(read.values)]
            if overwriter is not None:
                graph.add(read.txn.id, overwriter, RW, read.key)


def _next_node_writers(version_writers: list[int | None]) -> list[int | None]:
    """result[p]: the first node writer among versions p, p+1, ... (p up to the length)."""
    result: list[int | None] = [None] * (len(version_writers) + 1)
    for position in range(len(version_writers) - 1, -1, -1):
        own = version_writers[position]
        result[position] = own if own is not None else result[position + 1]
    return result


def _add_realtime_edges(graph: _Graph, nodes: list[Txn]) -> None:
    """rt edges via the frontier sweep described in the module docstring."""
    events = []
    for txn in nodes:
        events.append((txn.invoke_ns, 0, txn.id))
        if txn.status == OK:
            # At equal times the invocation sorts first: equal times count as concurrent.
            events.append((txn.complete_ns, 1, txn.id))
    events.sort()
    frontier: dict[int, None] = {}  # an ordered set, for deterministic edge order
    preceded_by: dict[int, tuple[int, ...]] = {}
    for _, is_completion, txn_id in events:
        if is_completion:
            # Whoever T's predecessors precede, T precedes too: T stands in for them.
            for earlier in preceded_by.pop(txn_id):
                frontier.pop(earlier, None)
            frontier[txn_id] = None
        else:
            preceded_by[txn_id] = tuple(frontier)
            for earlier in frontier:
                graph.add(earlier, txn_id, RT)


# --- cycles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    src: int
    kind: str
    key: object
    dst: int


def _cycle_anomalies(graph: _Graph) -> list[Anomaly]:
    anomalies = []
    for component in _components(graph, _ALL_EDGES, graph.nodes):
        if len(component) > 1:
            anomalies.append(_cycle_anomaly(_most_severe_cycle(graph, set(component))))
    return anomalies


def _most_severe_cycle(graph: _Graph, members: set[int]) -> list[_Step]:
    realtime_ladder = [(kinds | {RT}, single_rw) for kinds, single_rw in _LADDER]
    for kinds, single_rw in [*_LADDER, *realtime_ladder]:
        if single_rw:
            found = _single_rw_cycle(graph, members, kinds)
        else:
            found = _any_cycle(graph, members, kinds)
        if found is not None:
            cycle, rw_edge = found
            return _label_cycle(graph, cycle, kinds, rw_edge)
    raise AssertionError("a strongly connected component always has a cycle")


def _any_cycle(graph, members, kinds):
    """(cycle, None): a shortest cycle through one node, using only `kinds` edges."""
    for component in _components(graph, kinds, members):
        if len(component) > 1:
            inside = set(component)
            start = min(component)
            cycle = _shortest_path(start, start, lambda n: graph.successors(n, kinds, inside))
            return cycle, None
    return None


def _single_rw_cycle(graph, members, kinds):
    """(cycle, rw edge): a cycle of one rw edge closed by a path of `kinds` edges.

    The path from the rw edge's head back to its tail must exist in the `kinds` subgraph.
    Tarjan emits components in reverse topological order, so a head whose component comes
    first cannot reach the tail; heads in the tail's own component always can (tried first).
    """
    components = _components(graph, kinds, members)
    rank = {node: index for index, component in enumerate(components) for node in component}
    candidates = [(a, b) for a, b in graph.edges_of_kind(RW, members) if rank[a] <= rank[b]]
    candidates.sort(key=lambda edge: rank[edge[0]] != rank[edge[1]])
    budget = _Budget(SINGLE_RW_SEARCH_BUDGET)
    for tail, head in candidates:
        path = _shortest_path(head, tail, lambda n: graph.successors(n, kinds, members), budget)
        if path is not None:
            return path + [head], (tail, head)
        if budget.exhausted():
            return None
    return None


class _Budget:
    def __init__(self, steps: int):
        self.remaining = steps

    def spend(self) -> bool:
        self.remaining -= 1
        return self.remaining >= 0

    def exhausted(self) -> bool:
        return self.remaining < 0


def _shortest_path(src, dst, successors: Callable, budget: _Budget | None = None):
    """BFS: nodes [src, ..., dst] along at least one edge (a cycle if src == dst), or None."""
    parents = {src: None}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if budget is not None and not budget.spend():
            return None
        for nxt in successors(node):
            if nxt == dst:
                return _walk_back(parents, node) + [dst]
            if nxt not in parents:
                parents[nxt] = node
                queue.append(nxt)
    return None


def _walk_back(parents: dict, node) -> list:
    path = [node]
    while parents[path[-1]] is not None:
        path.append(parents[path[-1]])
    return path[::-1]


def _components(graph: _Graph, kinds: frozenset, members: set[int]) -> list[list[int]]:
    """Tarjan's SCCs of the `kinds` subgraph on `members`, in reverse topological order.

    Iterative: recursion would overflow on long dependency chains.
    """
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    components: list[list[int]] = []

    def visit(node: int, work: list) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(graph.successors(node, kinds, members))))

    for root in sorted(members):
        if root in index:
            continue
        work: list = []
        visit(root, work)
        while work:
            node, pending = work[-1]
            for nxt in pending:
                if nxt not in index:
                    visit(nxt, work)
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    components.append(_pop_component(stack, on_stack, node))
    return components


def _pop_component(stack: list[int], on_stack: set[int], root: int) -> list[int]:
    component = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component


def _label_cycle(graph: _Graph, cycle: list[int], kinds, rw_edge) -> list[_Step]:
    steps = []
    for src, dst in zip(cycle, cycle[1:]):
        found = graph.edges[src][dst]
        if (src, dst) == rw_edge:
            kind = RW
        else:
            kind = next(k for k in _EDGE_PREFERENCE if k in kinds and k in found)
        steps.append(_Step(src, kind, found[kind], dst))
    return steps


def _classify(steps: list[_Step]) -> str:
    kinds = [step.kind for step in steps]
    rw_count = kinds.count(RW)
    if rw_count >= 2:
        name = "G2"
    elif rw_count == 1:
        name = "G-single"
    elif WR in kinds:
        name = "G1c"
    else:
        name = "G0"
    return name + ("-realtime" if RT in kinds else "")


def _cycle_anomaly(steps: list[_Step]) -> Anomaly:
    # Start at the smallest id so that the same cycle always reads the same.
    first = min(range(len(steps)), key=lambda i: steps[i].src)
    steps = steps[first:] + steps[:first]
    hops = " ".join(f"-{_edge_label(step)}-> T{step.dst}" for step in steps)
    return Anomaly(_classify(steps), [step.src for step in steps], f"T{steps[0].src} {hops}")


def _edge_label(step: _Step) -> str:
    return step.kind if step.kind == RT else f"{step.kind}({_show(step.key)})"


def _show(key: object) -> str:
    return key if isinstance(key, str) else repr(key)


def _show_list(values) -> str:
    values = list(values)
    if len(values) <= EXPLAIN_LIST_TAIL:
        return repr(values)
    tail = ", ".join(repr(v) for v in values[-EXPLAIN_LIST_TAIL:])
    return f"[...{len(values) - EXPLAIN_LIST_TAIL} more, {tail}]"
