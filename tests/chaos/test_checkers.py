"""Tests of the chaos history checkers (cluster/chaos/checkers.py), on hand-written histories.

Times are plain ints (ns); `Ops` turns a list of operations with [call, ret] windows into the
history's events, in time order, as the recorder would have written them.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.chaos.checkers import check_history
from cluster.chaos.history import HistoryFileError, HistoryRecorder, load_history
from cluster.sim.linearizability import CasOperation, check_register_history


class Ops:
    """Builds a history. `add` returns a handle; `ids[handle]` is the op id once built."""

    def __init__(self) -> None:
        self._ops: list[tuple] = []
        self.ids: list[int] = []

    def add(self, process, f, value, call, ret=None, status="ok", result=None) -> int:
        """status "open": invoked, never completed. `result`: an ok op's observed value."""
        assert status == "open" or ret is not None
        self._ops.append((process, f, value, call, ret, status, result))
        return len(self._ops) - 1

    def events(self, nemesis=()) -> list[dict]:
        timeline = []  # (time, invoke before completion, order, handle or nemesis event)
        for handle, (_, _, _, call, ret, status, _) in enumerate(self._ops):
            timeline.append((call, 0, handle, ("invoke", handle)))
            if status != "open":
                timeline.append((ret, 1, handle, ("done", handle)))
        for order, (time, f, value) in enumerate(nemesis):
            timeline.append((time, 0, -1 - order, ("nemesis", (f, value))))
        timeline.sort(key=lambda item: item[:3])
        events: list[dict] = []
        self.ids = [0] * len(self._ops)
        for time, _, _, (what, payload) in timeline:
            event = {"index": len(events), "time": time}
            if what == "nemesis":
                event.update(type="info", process="nemesis", f=payload[0], value=payload[1])
            else:
                process, f, value, _, _, status, result = self._ops[payload]
                if what == "invoke":
                    self.ids[payload] = len(events)
                    event.update(type="invoke", process=process, f=f, value=value)
                else:
                    event.update(type=status, process=process, f=f, invoke=self.ids[payload],
                                 value=result if status == "ok" and result is not None else value)
                    if status != "ok":
                        event["error"] = "injected"
            events.append(event)
        return events


def check(workload, ops, **kwargs):
    return check_history(workload, ops.events(), **kwargs)


def kinds(result):
    return sorted({a.kind for a in result.anomalies})


def assert_valid(result):
    assert result.valid, "\n".join(result.summary_lines())


# ---- register ---------------------------------------------------------------------------


def read(ops, p, key, observed, call, ret, status="ok"):
    return ops.add(p, "read", [key, None], call, ret, status, [key, observed])


def write(ops, p, key, value, call, ret, status="ok"):
    return ops.add(p, "write", [key, value], call, ret, status)


def cas(ops, p, key, old, new, call, ret, status="ok"):
    return ops.add(p, "cas", [key, [old, new]], call, ret, status)


def test_register_valid_history_with_concurrency_and_cas():
    ops = Ops()
    read(ops, 0, 1, None, 0, 5)
    write(ops, 0, 1, 10, 10, 20)
    read(ops, 1, 1, 11, 12, 40)  # concurrent with the cas below, which wrote 11
    cas(ops, 2, 1, 10, 11, 15, 30)
    write(ops, 3, 2, 20, 15, 25)
    cas(ops, 0, 1, 10, 12, 35, 45, "fail")  # 11 was there: no swap
    read(ops, 0, 1, 11, 50, 60)  # final reads
    read(ops, 1, 2, 20, 50, 60)
    result = check("register", ops)
    assert_valid(result)
    assert result.counts == {"ok": 7, "fail": 1, "info": 0, "invoke": 8}
    assert result.summary_lines() == [
        "workload register: 8 ops (ok 7, fail 1, info 0)",
        "anomalies: none",
    ]


def test_stale_read_after_a_completed_write_is_caught():
    ops = Ops()
    write(ops, 0, 1, 10, 0, 10)
    write(ops, 0, 1, 11, 20, 30)
    stale = read(ops, 1, 1, 10, 40, 50)
    read(ops, 1, 1, 11, 60, 70)
    result = check("register", ops)
    assert not result.valid and kinds(result) == ["nonlinearizable"]
    anomaly = result.anomalies[0]
    assert ops.ids[stale] in anomaly.ops
    assert anomaly.explanation.startswith("key 1: no linearization")
    assert f"op {ops.ids[stale]} (process 1, read [1, 10], ok, 0.000s-0.000s)" in anomaly.explanation


def test_lost_acknowledged_write_is_caught_by_the_final_read():
    ops = Ops()
    write(ops, 0, 1, 10, 0, 10)
    acknowledged = write(ops, 1, 1, 11, 15, 20)
    final = read(ops, 0, 1, 10, 100, 110)  # the final read: 11 is gone
    result = check("register", ops)
    assert kinds(result) == ["nonlinearizable"]
    assert {ops.ids[acknowledged], ops.ids[final]} <= set(result.anomalies[0].ops)


def test_cas_on_a_stale_value_succeeding_is_caught():
    ops = Ops()
    write(ops, 0, 1, 10, 0, 10)
    write(ops, 0, 1, 11, 20, 30)
    cas(ops, 1, 1, 10, 12, 40, 50)  # swapped although 10 was overwritten before it began
    read(ops, 1, 1, 12, 60, 70)
    assert kinds(check("register", ops)) == ["nonlinearizable"]


def test_two_cas_from_the_same_value_cannot_both_succeed():
    ops = Ops()
    write(ops, 0, 1, 10, 0, 10)
    cas(ops, 1, 1, 10, 11, 20, 50)
    cas(ops, 2, 1, 10, 12, 20, 50)
    read(ops, 0, 1, 12, 60, 70)
    assert kinds(check("register", ops)) == ["nonlinearizable"]


@pytest.mark.parametrize("status", ["info", "open"])
def test_indeterminate_writes_that_did_or_did_not_happen_both_pass(status):
    happened, did_not = Ops(), Ops()
    for ops, final_value in ((happened, 11), (did_not, 10)):
        write(ops, 0, 1, 10, 0, 10)
        write(ops, 1, 1, 11, 20, None if status == "open" else 30, status)
        read(ops, 0, 1, final_value, 40, 50)
    assert_valid(check("register", happened))
    result = check("register", did_not)
    assert_valid(result)
    assert result.counts["info"] == 1
    assert result.never_completed == (status == "open")


def test_an_info_cas_applies_only_where_its_old_value_was():
    chained = Ops()  # an info write makes the info cas possible: 10, then 11 seen
    write(chained, 0, 1, 10, 0, 100, "info")
    cas(chained, 1, 1, 10, 11, 5, 100, "info")
    read(chained, 2, 1, 11, 20, 30)
    assert_valid(check("register", chained))

    impossible = Ops()  # 10 was overwritten before the info cas began: 12 cannot appear
    write(impossible, 0, 1, 10, 0, 10)
    write(impossible, 0, 1, 11, 20, 30)
    cas(impossible, 1, 1, 10, 12, 40, 50, "info")
    read(impossible, 1, 1, 12, 60, 70)
    assert kinds(check("register", impossible)) == ["nonlinearizable"]


def test_failed_ops_did_not_happen():
    ops = Ops()
    write(ops, 0, 1, 10, 0, 10)
    write(ops, 0, 1, 11, 20, 30, "fail")
    cas(ops, 0, 1, 10, 12, 40, 45, "fail")  # dropped (a "not equal" constraint, not modeled)
    read(ops, 1, 1, 11, 50, 60)  # observes a write that failed
    assert kinds(check("register", ops)) == ["nonlinearizable"]


def test_register_needs_a_final_read_after_the_last_acknowledged_write():
    ops = Ops()
    read(ops, 1, 1, None, 0, 10)
    write(ops, 0, 1, 10, 20, 30)
    read(ops, 1, 1, None, 25, 40, "info")  # the final read did not succeed
    result = check("register", ops)
    assert kinds(result) == ["no-final-read"]
    assert "key 1" in result.anomalies[0].explanation


def test_register_shape_errors_name_the_op():
    ops = Ops()
    ops.add(0, "write", 5, 0, 10)
    with pytest.raises(HistoryFileError, match=r"op 0 \(process 0, write 5.*must be \[key, value\]"):
        check("register", ops)
    ops = Ops()
    ops.add(0, "increment", [1, 2], 0, 10)
    with pytest.raises(HistoryFileError, match="no f='increment'"):
        check("register", ops)
    with pytest.raises(ValueError, match="unknown workload"):
        check_history("queue", [])


# ---- register: randomized against a sequential model and a brute-force oracle ------------


def model_history(rng, ops_count, keys, processes, p_info=0.1, p_fail=0.1, values=None,
                  final_reads=False):
    """Ops of a real (sequential, so linearizable) register per key, with random windows.

    Each op takes effect at a random instant inside its window, in effect order against one
    in-memory dict; fail ops and half the info ops never take effect. `values` (a small
    pool) makes values repeat, to exercise the checker's corner cases. `final_reads`: end
    with a read of every key after everything else, as the runner does.
    """
    clocks = [0] * processes
    plans = []
    for index in range(ops_count):
        process = rng.randrange(processes)
        call = clocks[process] + rng.randrange(1, 20)
        ret = call + rng.randrange(0, 40)
        clocks[process] = ret
        f = rng.choice(("read", "read", "write", "cas"))
        roll = rng.random()
        status = "info" if roll < p_info else "fail" if roll < p_info + p_fail else "ok"
        takes_effect = status == "ok" or (status == "info" and rng.random() < 0.5)
        new = rng.choice(values) if values else 100 + index
        plans.append({"process": process, "f": f, "key": rng.randrange(keys), "call": call,
                      "ret": ret, "status": status, "new": new, "old": None, "observed": None,
                      "effect": rng.randrange(call, ret + 1) if takes_effect else None})
    store: dict[int, int] = {}
    for plan in sorted((p for p in plans if p["effect"] is not None), key=lambda p: p["effect"]):
        current = store.get(plan["key"])
        if plan["f"] == "read":
            plan["observed"] = current
        elif plan["f"] == "write":
            store[plan["key"]] = plan["new"]
        else:
            # Mostly the current value (a cas that swaps); sometimes a stale one (no swap).
            plan["old"] = current if rng.random() < 0.7 else rng.choice([None, *store.values()])
            if plan["old"] == current:
                store[plan["key"]] = plan["new"]
            elif plan["status"] == "ok":
                plan["status"] = "fail"  # it did not swap: the client saw "not equal"
    ops = Ops()
    for plan in plans:
        key, p, call, ret, status = plan["key"], plan["process"], plan["call"], plan["ret"], plan["status"]
        if plan["f"] == "read":
            read(ops, p, key, plan["observed"], call, ret, status)
        elif plan["f"] == "write":
            write(ops, p, key, plan["new"], call, ret, status)
        else:
            old = plan["old"] if plan["effect"] is not None else rng.choice([None, plan["new"] - 1])
            cas(ops, p, key, old, plan["new"], call, ret, status)
    if final_reads:
        end = max(clocks) + 1
        for key in range(keys):
            read(ops, 0, key, store.get(key), end, end + 1)
    return ops, plans


def mutate_one_read(rng, ops):
    """A copy of `ops` where one ok read observes another value; None if no ok read."""
    reads = [i for i, op in enumerate(ops._ops) if op[1] == "read" and op[5] == "ok"]
    if not reads:
        return None
    index = rng.choice(reads)
    process, f, value, call, ret, status, (key, observed) = ops._ops[index]
    written = {op[2][1] if op[1] == "write" else op[2][1][1] for op in ops._ops
               if op[1] != "read" and op[2][0] == key}
    choices = sorted(({None, 999_999} | written) - {observed}, key=repr)
    mutated = Ops()
    mutated._ops = list(ops._ops)
    mutated._ops[index] = (process, f, value, call, ret, status, [key, rng.choice(choices)])
    return mutated


def brute_force_linearizable(ops: Ops) -> bool:
    """Every subset of info writes, every order: the definition of linearizability."""
    by_key: dict[object, list[tuple]] = {}
    for process, f, value, call, ret, status, result in ops._ops:
        if status == "fail" or (f == "read" and status != "ok"):
            continue
        ret = ret if status == "ok" else None
        if f == "read":
            by_key.setdefault(value[0], []).append(("read", result[1], None, call, ret))
        elif f == "write":
            by_key.setdefault(value[0], []).append(("write", value[1], None, call, ret))
        else:
            old, new = value[1]
            by_key.setdefault(value[0], []).append(("cas", new, old, call, ret))
    return all(_brute_force_key(key_ops) for key_ops in by_key.values())


def _brute_force_key(key_ops):
    must = [op for op in key_ops if op[4] is not None]
    maybe = [op for op in key_ops if op[4] is None]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(must + list(chosen)):
                if _legal(order):
                    return True
    return False


def _legal(order):
    register = None
    for position, (kind, value, old, call, _) in enumerate(order):
        if any(later[4] is not None and later[4] < call for later in order[position + 1:]):
            return False  # a later op returned before this one was called
        if kind == "read" and value != register:
            return False
        if kind == "cas" and old != register:
            return False
        if kind != "read":
            register = value
    return True


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_histories_pass_and_mutated_reads_are_caught(seed):
    rng = random.Random(seed)
    ops, _ = model_history(rng, ops_count=60, keys=3, processes=5, final_reads=True)
    result = check("register", ops)
    assert result.valid, "\n".join(result.summary_lines())
    mutated = mutate_one_read(rng, ops)
    if mutated is not None and mutated._ops != ops._ops:
        # A value nobody wrote can never be read; another written value may or may not be
        # explainable: that is what the small histories below compare with brute force.
        index = next(i for i, (a, b) in enumerate(zip(ops._ops, mutated._ops)) if a != b)
        if mutated._ops[index][6][1] == 999_999:
            assert not check("register", mutated).valid


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_small_histories_agree_with_brute_force(seed):
    rng = random.Random(seed)
    ops, _ = model_history(rng, ops_count=rng.randrange(2, 7), keys=1, processes=3,
                           p_info=0.3, p_fail=0.1, values=[1, 2, 3])
    # Real histories pass; final reads are not part of these, so only linearizability counts.
    assert brute_force_linearizable(ops)
    assert _nonlinearizable(ops) is False
    mutated = mutate_one_read(rng, ops)
    if mutated is not None:
        assert _nonlinearizable(mutated) is not brute_force_linearizable(mutated)


def _nonlinearizable(ops: Ops) -> bool:
    return "nonlinearizable" in kinds(check("register", ops))


def test_mutations_are_often_caught():
    """The oracle agreement above could pass with a checker that accepts almost anything."""
    caught = 0
    for seed in range(200):
        rng = random.Random(seed)
        ops, _ = model_history(rng, ops_count=40, keys=2, processes=4, p_info=0.05, p_fail=0.05)
        caught += _nonlinearizable(mutate_one_read(rng, ops))
    assert caught >= 120, caught


def test_info_cas_chains_agree_with_brute_force():
    # Many info cas over few values: chains of conditional info writes before a reader.
    verdicts = {True: 0, False: 0}
    for seed in range(1500):
        rng = random.Random(seed)
        ops = Ops()
        for process in range(rng.randrange(2, 7)):
            call = rng.randrange(0, 6)
            status = rng.choice(("ok", "ok", "info", "info", "fail"))
            ret = call + rng.randrange(0, 4)
            f = rng.choice(("read", "write", "cas", "cas"))
            if f == "read":
                read(ops, process, 0, rng.choice((None, 1, 2, 3)), call, ret, status)
            elif f == "write":
                write(ops, process, 0, rng.choice((1, 2, 3)), call, ret, status)
            else:
                cas(ops, process, 0, rng.choice((None, 1, 2)), rng.choice((1, 2, 3)), call, ret, status)
        expected = brute_force_linearizable(ops)
        assert _nonlinearizable(ops) is not expected, f"seed {seed}: brute force says {expected}"
        verdicts[expected] += 1
    assert min(verdicts.values()) > 200, verdicts


def test_cas_operations_are_validated():
    with pytest.raises(ValueError, match="expected must be bytes"):
        CasOperation(0, b"k", "1", b"2", 0, 1, "ok")
    with pytest.raises(ValueError, match="ret=None"):
        CasOperation(0, b"k", b"1", b"2", 0, 1, "info")
    op = CasOperation(0, b"k", b"1", b"2", 0, None, "info")
    assert str(op) == "p0 cas b'k' b'1' -> b'2'  [0, inf) info"
    assert check_register_history([op]).ok


# ---- bank -------------------------------------------------------------------------------


def transfer(ops, p, src, dst, amount, call, ret, status="ok"):
    return ops.add(p, "transfer", {"from": src, "to": dst, "amount": amount}, call, ret, status)


def bank_read(ops, p, balances, call, ret, status="ok"):
    return ops.add(p, "read", None, call, ret, status, {str(i): b for i, b in enumerate(balances)})


def bank_history():
    ops = Ops()
    bank_read(ops, 0, [10, 10, 10], 0, 5)
    transfer(ops, 1, 0, 1, 3, 10, 20)
    transfer(ops, 2, 1, 2, 50, 12, 18, "fail")  # insufficient balance
    transfer(ops, 3, 2, 0, 4, 15, 25, "info")
    bank_read(ops, 0, [7, 13, 10], 22, 30)
    return ops


def test_bank_valid_history():
    ops = bank_history()
    bank_read(ops, 0, [11, 13, 6], 40, 50)  # final read: the info transfer happened
    result = check("bank", ops, bank_accounts=3, bank_total=30)
    assert_valid(result)
    assert result.counts == {"ok": 4, "fail": 1, "info": 1, "invoke": 6}


def test_bank_read_off_by_one_transfer():
    ops = bank_history()
    bad = bank_read(ops, 0, [7, 10, 10], 40, 50)  # the debit without the credit
    result = check("bank", ops, bank_accounts=3, bank_total=30)
    assert kinds(result) == ["wrong-total"]
    anomaly = result.anomalies[0]
    assert anomaly.ops == [ops.ids[bad]]
    assert "sums to 27, expected 30 (off by -3)" in anomaly.explanation
    assert '{"0": 7, "1": 10, "2": 10}' in anomaly.explanation


def test_bank_negative_balance_and_missing_accounts():
    ops = bank_history()
    ops.add(0, "read", None, 40, 50, "ok", {"0": -2, "1": 22, "2": 10})
    ops.add(1, "read", None, 40, 50, "ok", {"0": 7, "1": 23})
    result = check("bank", ops, bank_accounts=3, bank_total=30)
    assert kinds(result) == ["negative-balance", "wrong-accounts"]
    assert "missing ['2']" in next(a for a in result.anomalies if a.kind == "wrong-accounts").explanation


def test_bank_needs_a_final_read_and_its_parameters():
    ops = bank_history()
    bank_read(ops, 0, [7, 13, 10], 40, 50, "fail")
    assert kinds(check("bank", ops, bank_accounts=3, bank_total=30)) == []  # read at 22 > 20
    transfer(ops, 1, 0, 1, 1, 60, 70)
    assert kinds(check("bank", ops, bank_accounts=3, bank_total=30)) == ["no-final-read"]
    with pytest.raises(ValueError, match="needs bank_accounts and bank_total"):
        check("bank", ops)


# ---- append -----------------------------------------------------------------------------


def txn(ops, p, micro_ops, call, ret, status="ok", reads=None):
    """micro_ops like [("append", "x", 1), ("r", "y")]; `reads` fills the reads, in order."""
    invoked = [[m[0], m[1], m[2] if m[0] == "append" else None] for m in micro_ops]
    filled = None
    if reads is not None:
        answers = iter(reads)
        filled = [m if m[0] == "append" else [m[0], m[1], next(answers)] for m in invoked]
    return ops.add(p, "txn", invoked, call, ret, status, filled)


def final_read(ops, lists, call=1000):
    return txn(ops, 0, [("r", key) for key in lists], call, call + 10, reads=list(lists.values()))


def test_append_valid_history():
    ops = Ops()
    txn(ops, 1, [("append", "x", 1), ("r", "y")], 0, 10, reads=[[]])
    txn(ops, 2, [("r", "x"), ("append", "y", 1)], 20, 30, reads=[[1]])
    txn(ops, 3, [("append", "x", 2)], 25, 40, "info")  # happened
    txn(ops, 4, [("append", "y", 2)], 25, 40, "info")  # did not
    txn(ops, 5, [("append", "y", 3)], 26, 41, "fail")
    final_read(ops, {"x": [1, 2], "y": [1]})
    result = check("append", ops)
    assert_valid(result)
    assert result.counts == {"ok": 3, "fail": 1, "info": 2, "invoke": 6}


def test_g_single_read_skew():
    ops = Ops()
    reader = txn(ops, 1, [("r", "x"), ("r", "y")], 0, 50, reads=[[], [1]])
    writer = txn(ops, 2, [("append", "x", 1), ("append", "y", 1)], 0, 50)
    final_read(ops, {"x": [1], "y": [1]})
    result = check("append", ops)
    assert kinds(result) == ["G-single"]
    anomaly = result.anomalies[0]
    assert anomaly.ops == sorted([ops.ids[reader], ops.ids[writer]])
    assert f"T{ops.ids[reader]} = op {ops.ids[reader]} (process 1" in anomaly.explanation


def test_g2_write_skew():
    ops = Ops()
    txn(ops, 1, [("r", "x"), ("append", "y", 1)], 0, 50, reads=[[]])
    txn(ops, 2, [("r", "y"), ("append", "x", 1)], 0, 50, reads=[[]])
    final_read(ops, {"x": [1], "y": [1]})
    assert kinds(check("append", ops)) == ["G2"]


def test_g1c_circular_information_flow():
    ops = Ops()
    txn(ops, 1, [("append", "x", 1), ("r", "y")], 0, 50, reads=[[1]])
    txn(ops, 2, [("append", "y", 1), ("r", "x")], 0, 50, reads=[[1]])
    final_read(ops, {"x": [1], "y": [1]})
    assert kinds(check("append", ops)) == ["G1c"]


def test_realtime_violation_stale_read_after_commit():
    ops = Ops()
    txn(ops, 1, [("append", "x", 1)], 0, 10)
    txn(ops, 2, [("r", "x")], 20, 30, reads=[[]])  # began after T1 committed, did not see it
    final_read(ops, {"x": [1]})
    assert kinds(check("append", ops)) == ["G-single-realtime"]


def test_lost_append_missing_from_the_final_read():
    ops = Ops()
    txn(ops, 1, [("append", "x", 1)], 0, 10)
    lost = txn(ops, 2, [("append", "x", 2)], 5, 15)
    final = final_read(ops, {"x": [1]})
    result = check("append", ops)
    assert kinds(result) == ["lost-append"]
    assert result.anomalies[0].ops == [ops.ids[lost], ops.ids[final]]
    assert "appended 2 to key x and was acknowledged" in result.anomalies[0].explanation


def test_aborted_append_observed_is_g1a_and_unread_keys_need_a_final_read():
    ops = Ops()
    txn(ops, 1, [("append", "x", 1)], 0, 10, "fail")
    txn(ops, 2, [("append", "y", 1)], 0, 10)
    final_read(ops, {"x": [1]})
    assert kinds(check("append", ops)) == ["G1a", "no-final-read"]


def test_append_shape_errors():
    ops = Ops()
    txn(ops, 1, [("append", "x", 1)], 0, 10)
    txn(ops, 2, [("append", "x", 1)], 0, 10)
    with pytest.raises(HistoryFileError, match="appended twice"):
        check("append", ops)
    ops = Ops()
    ops.add(0, "txn", [["write", "x", 1]], 0, 10)
    with pytest.raises(HistoryFileError, match="micro-op must be"):
        check("append", ops)


# ---- summary ----------------------------------------------------------------------------


def test_summary_groups_anomalies_by_class_and_truncates():
    ops = Ops()
    for index in range(5):
        bank_read(ops, index, [10, 10, 10 + index + 1], 10 * index, 10 * index + 5)
    ops.add(9, "read", None, 100, 110, "ok", {"0": -1, "1": 11, "2": 20})
    events = ops.events(nemesis=[(3, "kill", {"nodes": [2]}), (30, "restart", {"nodes": [2]})])
    result = check_history("bank", events, bank_accounts=3, bank_total=30)
    lines = result.summary_lines()
    assert lines[0] == "workload bank: 6 ops (ok 6, fail 0, info 0)"
    assert lines[1] == "anomalies: 6 (wrong-total x5, negative-balance x1)"
    assert lines[2] == "wrong-total x5:"
    assert lines[3].startswith("  - op 0 (process 0, read {") and "off by +1" in lines[3]
    assert lines[6] == "  ... and 2 more"
    assert lines[7] == "negative-balance x1:"
    assert len(lines) == 9
    assert result.nemesis == {"kill": 1, "restart": 1}


def test_recorder_events_check_like_the_file(tmp_path):
    path = tmp_path / "h.jsonl"
    with HistoryRecorder(path) as recorder:
        w = recorder.invoke(0, "write", [1, 10])
        recorder.ok(w)
        r = recorder.invoke(1, "read", [1, None])
        recorder.ok(r, [1, None])  # a stale read: the write had completed
    for events in (recorder.events, load_history(path)):
        result = check_history("register", events)
        assert kinds(result) == ["nonlinearizable"]
