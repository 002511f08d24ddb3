"""Tests of the Elle-style list-append checker (cluster/sim/elle.py)."""

from __future__ import annotations

import random
import time

import pytest

from cluster.sim.elle import Op, Txn, check_list_append


def a(key, value):
    return Op("append", key, value)


def r(key, *values):
    return Op("read", key, tuple(values))


def txn(id, *ops, status="ok", invoke=0, complete=100, process=None):
    """By default every transaction overlaps every other: no real-time order."""
    return Txn(
        id=id,
        process=id if process is None else process,
        ops=list(ops),
        status=status,
        invoke_ns=invoke,
        complete_ns=None if status == "info" else complete,
    )


def serial(id, *ops, status="ok"):
    """Transaction id runs alone in [10 * id, 10 * id + 5]."""
    return txn(id, *ops, status=status, invoke=10 * id, complete=10 * id + 5)


def kinds(result):
    return sorted(anomaly.kind for anomaly in result.anomalies)


def only(result, kind):
    """The single anomaly of the result, which must be of `kind`."""
    assert kinds(result) == [kind], result.summary()
    return result.anomalies[0]


# --- hand-built histories ----------------------------------------------------------------


def test_serial_history_is_valid():
    history = [
        serial(1, a("x", 1)),
        serial(2, r("x", 1), a("x", 2), r("x", 1, 2)),
        serial(3, r("x", 1, 2), r("y"), a("y", 1)),
        serial(4, r("y", 1), a("x", 3), a("y", 2)),
        serial(5, r("x", 1, 2, 3), r("y", 1, 2)),
    ]
    result = check_list_append(history)
    assert result.valid, result.summary()
    assert result.anomalies == []
    assert result.summary() == "valid: no anomalies found"


def test_g0_write_cycle():
    history = [
        txn(1, a("x", 1), a("y", 1)),
        txn(2, a("x", 2), a("y", 2)),
        txn(3, r("x", 1, 2), r("y", 2, 1)),
    ]
    anomaly = only(check_list_append(history), "G0")
    assert sorted(anomaly.txns) == [1, 2]
    assert anomaly.explanation == "T1 -ww(x)-> T2 -ww(y)-> T1"


def test_g1c_circular_information_flow():
    history = [
        txn(1, a("x", 1), r("y", 1)),
        txn(2, a("y", 1), r("x", 1)),
    ]
    anomaly = only(check_list_append(history), "G1c")
    assert sorted(anomaly.txns) == [1, 2]
    assert "-wr(x)->" in anomaly.explanation and "-wr(y)->" in anomaly.explanation


def test_g_single_read_skew():
    history = [
        txn(1, r("x"), r("y", 1)),  # sees T2's y but not its x
        txn(2, a("x", 1), a("y", 1)),
        txn(3, r("x", 1)),  # orders x
    ]
    anomaly = only(check_list_append(history), "G-single")
    assert sorted(anomaly.txns) == [1, 2]
    assert anomaly.explanation == "T1 -rw(x)-> T2 -wr(y)-> T1"


def test_g2_write_skew():
    history = [
        txn(1, r("x"), r("y"), a("x", 1)),
        txn(2, r("x"), r("y"), a("y", 1)),
        txn(3, r("x", 1), r("y", 1)),
    ]
    anomaly = only(check_list_append(history), "G2")
    assert sorted(anomaly.txns) == [1, 2]
    assert anomaly.explanation == "T1 -rw(y)-> T2 -rw(x)-> T1"


def test_g1a_aborted_read():
    history = [
        txn(1, a("x", 1), status="fail"),
        txn(2, r("x", 1)),
    ]
    anomaly = only(check_list_append(history), "G1a")
    assert anomaly.txns == [1, 2]


def test_g1b_intermediate_read():
    history = [
        txn(1, a("x", 1), a("x", 2)),
        txn(2, r("x", 1)),
    ]
    anomaly = only(check_list_append(history), "G1b")
    assert anomaly.txns == [1, 2]


def test_g1b_with_final_version_observed_also_gives_a_cycle():
    history = [
        txn(1, a("x", 1), a("x", 2)),
        txn(2, r("x", 1)),
        txn(3, r("x", 1, 2)),
    ]
    result = check_list_append(history)
    assert kinds(result) == ["G-single", "G1b"]  # T1 -wr-> T2 -rw-> T1


def test_own_intermediate_read_is_fine():
    history = [txn(1, a("x", 1), r("x", 1), a("x", 2), r("x", 1, 2))]
    assert check_list_append(history).valid


def test_incompatible_order():
    history = [
        txn(1, a("x", 1)),
        txn(2, a("x", 2)),
        txn(3, r("x", 1, 2)),
        txn(4, r("x", 2)),
    ]
    anomaly = only(check_list_append(history), "incompatible-order")
    assert anomaly.txns == [4, 3]


def test_duplicate_in_one_read():
    history = [
        txn(1, a("x", 1)),
        txn(2, r("x", 1, 1)),
    ]
    anomaly = only(check_list_append(history), "duplicate")
    assert anomaly.txns == [2]


def test_dirty_read_of_a_value_nobody_appended():
    history = [txn(1, r("x", 7))]
    anomaly = only(check_list_append(history), "dirty")
    assert anomaly.txns == [1]


def test_internal_inconsistency():
    history = [
        txn(1, a("x", 1), r("x")),  # misses its own append
        txn(2, r("y"), r("y", 5)),  # non-repeatable read, no own append in between
        txn(3, a("y", 5)),
        txn(4, r("z", 1), a("z", 2), r("z", 1, 2)),  # fine
        txn(5, a("z", 1)),
    ]
    result = check_list_append(history)
    assert kinds(result) == ["internal", "internal"], result.summary()
    assert sorted(anomaly.txns[0] for anomaly in result.anomalies) == [1, 2]


def test_stale_read_after_completion_is_a_realtime_violation():
    history = [
        txn(1, a("x", 1), invoke=0, complete=10),
        txn(2, r("x"), invoke=20, complete=30),  # starts after T1 completed, misses it
        txn(3, r("x", 1), invoke=40, complete=50),
    ]
    anomaly = only(check_list_append(history), "G-single-realtime")
    assert sorted(anomaly.txns) == [1, 2]
    assert anomaly.explanation == "T1 -rt-> T2 -rw(x)-> T1"


def test_same_stale_read_is_serializable_when_concurrent():
    history = [
        txn(1, a("x", 1), invoke=0, complete=25),
        txn(2, r("x"), invoke=20, complete=30),
        txn(3, r("x", 1), invoke=40, complete=50),
    ]
    assert check_list_append(history).valid


def test_completion_at_the_same_instant_as_invocation_is_concurrent():
    history = [
        txn(1, a("x", 1), invoke=0, complete=20),
        txn(2, r("x"), invoke=20, complete=30),
        txn(3, r("x", 1), invoke=40, complete=50),
    ]
    assert check_list_append(history).valid


def test_realtime_edges_are_transitive_through_the_frontier():
    # T1 -rt-> T2 -rt-> T3 gives no direct T1 -> T3 edge, yet T3 must see T1's append.
    history = [
        txn(1, a("x", 1), invoke=0, complete=10),
        txn(2, a("y", 1), invoke=20, complete=30),
        txn(3, r("x"), invoke=40, complete=50),
        txn(4, r("x", 1), invoke=60, complete=70),
    ]
    anomaly = only(check_list_append(history), "G-single-realtime")
    assert anomaly.explanation == "T1 -rt-> T2 -rt-> T3 -rw(x)-> T1"


def test_observed_info_transaction_is_in_the_graph():
    history = [
        txn(1, a("x", 1), a("y", 1), status="info"),
        txn(2, r("x", 1), r("y")),  # sees the info txn's x but not its y
        txn(3, r("y", 1)),
    ]
    anomaly = only(check_list_append(history), "G-single")
    assert sorted(anomaly.txns) == [1, 2]


def test_unobserved_info_and_failed_transactions_are_ignored():
    history = [
        txn(1, a("x", 1), invoke=0, complete=10),
        # Reads of info and fail transactions are not observations, even impossible ones.
        txn(2, r("x", 99), a("x", 2), status="info", invoke=20),
        txn(3, r("x"), a("x", 3), status="fail", invoke=20, complete=30),
        txn(4, r("x", 1), invoke=40, complete=50),
    ]
    result = check_list_append(history)
    assert result.valid, result.summary()


def test_summary_counts_kinds_and_shows_three_examples():
    history = [txn(i, r(f"k{i}", 100 + i)) for i in range(1, 5)]
    result = check_list_append(history)
    assert not result.valid
    lines = result.summary().splitlines()
    assert lines[0] == "invalid: 4 anomalies"
    assert lines[1] == "dirty: 4"
    assert len(lines) == 2 + 3
    assert all(line.startswith("  T") for line in lines[2:])


def test_value_appended_twice_is_rejected():
    with pytest.raises(ValueError, match="appended twice"):
        check_list_append([txn(1, a("x", 1)), txn(2, a("x", 1))])


# --- randomized serial executions ----------------------------------------------------------


def random_serial_history(seed: int, count: int, keys: int = 8) -> list[Txn]:
    """Transactions applied one at a time to a dict of lists, in disjoint time windows.

    Some transactions fail (not applied) or end up info (applied or not, reads unknown).
    """
    rng = random.Random(seed)
    state: dict[str, list[int]] = {f"k{i}": [] for i in range(keys)}
    next_value = 0
    history = []
    for id in range(count):
        status = rng.choices(["ok", "fail", "info"], weights=[90, 5, 5])[0]
        applied = status == "ok" or (status == "info" and rng.random() < 0.5)
        view = {key: list(values) for key, values in state.items()}
        ops = []
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(list(state))
            if rng.random() < 0.5:
                ops.append(Op("read", key, tuple(view[key]) if status == "ok" else None))
            else:
                next_value += 1
                view[key].append(next_value)
                ops.append(Op("append", key, next_value))
        if applied:
            state = view
        complete = 10 * id + 5 if status == "ok" else None
        history.append(Txn(id, rng.randrange(5), ops, status, 10 * id, complete))
    return history


def test_random_serial_histories_are_valid_and_fast():
    history = random_serial_history(seed=1, count=2_000)
    started = time.perf_counter()
    result = check_list_append(history)
    elapsed = time.perf_counter() - started
    assert result.valid, result.summary()
    assert elapsed < 5.0


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_random_serial_history_with_one_stale_read_is_caught(seed):
    history = random_serial_history(seed=seed, count=2_000)
    reader, index = _stale_read_candidate(history)
    stale = reader.ops[index]
    reader.ops[index] = Op("read", stale.key, stale.value[:-1])  # misses the last append
    result = check_list_append(history)
    assert not result.valid
    # Cutting the last value can also leave the read ending on an intermediate append.
    found = {anomaly.kind for anomaly in result.anomalies}
    assert found <= {"G-single", "G-single-realtime", "G2", "G2-realtime", "G1b"}
    assert any(reader.id in anomaly.txns for anomaly in result.anomalies), result.summary()


def _stale_read_candidate(history: list[Txn]) -> tuple[Txn, int]:
    """A read, in the second half, that touches its key once in its txn, whose last value a
    committed earlier transaction appended, and that a later read shows again (so the
    value stays in the inferred version order)."""
    writer_status = {
        (op.key, op.value): txn.status for txn in history for op in txn.ops if op.kind == "append"
    }
    for position in range(len(history) // 2, len(history)):
        txn = history[position]
        if txn.status != "ok":
            continue
        for index, op in enumerate(txn.ops):
            touches = sum(other.key == op.key for other in txn.ops)
            if op.kind != "read" or not op.value or touches != 1:
                continue
            if writer_status[(op.key, op.value[-1])] != "ok":
                continue
            if _read_later(history[position + 1 :], op.key, op.value[-1]):
                return txn, index
    raise AssertionError("no candidate stale read")


def _read_later(later: list[Txn], key, value) -> bool:
    return any(
        op.kind == "read" and op.key == key and op.value and value in op.value
        for txn in later
        if txn.status == "ok"
        for op in txn.ops
    )
