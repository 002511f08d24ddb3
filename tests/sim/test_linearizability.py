"""Tests of the history model and the linearizability checker (cluster/sim)."""

from __future__ import annotations

import io
import itertools
import json
import random
import time

import pytest

from cluster.sim.history import History, HistoryError, Operation
from cluster.sim.linearizability import (
    DEFAULT_MAX_STEPS,
    Outcome,
    check_register_history,
)

K = b"x"


def put(p, value, call, ret, status="ok", key=K):
    return Operation(p, "put", key, value, call, None if status == "info" else ret, status)


def get(p, value, call, ret, status="ok", key=K):
    return Operation(p, "get", key, value, call, None if status == "info" else ret, status)


def delete(p, call, ret, status="ok", key=K):
    return Operation(p, "delete", key, None, call, None if status == "info" else ret, status)


def assert_ok(ops):
    result = check_register_history(ops)
    assert result.ok, result.explain()
    return result


def assert_violation(ops, key=K):
    result = check_register_history(ops)
    assert result.violation, result.explain()
    assert result.key == key
    return result


# ---- classic examples -------------------------------------------------------------------


def test_empty_history_is_linearizable():
    result = check_register_history([])
    assert result.ok and result.keys == () and result.key is None


def test_sequential_put_get_delete():
    assert_ok([
        get(0, None, 0, 1),
        put(0, b"1", 2, 3),
        get(1, b"1", 4, 5),
        delete(1, 6, 7),
        get(0, None, 8, 9),
    ])


def test_stale_read_after_completed_write_is_a_violation():
    result = assert_violation([put(0, b"1", 0, 10), get(1, None, 20, 30)])
    key_result = result.first
    assert key_result.blocked == get(1, None, 20, 30)
    assert key_result.linearization == (put(0, b"1", 0, 10),)
    assert key_result.register == b"1"


def test_read_concurrent_with_write_may_see_either_value():
    assert_ok([put(0, b"1", 0, 10), get(1, None, 5, 15)])
    assert_ok([put(0, b"1", 0, 10), get(1, b"1", 5, 15)])


def test_read_may_see_a_write_that_returns_later():
    # The read returns before the write does: fine, the write took effect early.
    assert_ok([put(0, b"1", 0, 100), get(1, b"1", 10, 20)])


def test_read_before_the_write_was_called_is_a_violation():
    assert_violation([get(1, b"1", 0, 5), put(0, b"1", 10, 20)])


def test_value_flip_flop_after_read_is_a_violation():
    # Once a read saw the new value, a later read cannot see the old one.
    assert_violation([
        put(0, b"1", 0, 1),
        put(0, b"2", 10, 100),
        get(1, b"2", 20, 30),
        get(2, b"1", 40, 50),
    ])


def test_concurrent_writes_seen_in_inconsistent_orders_is_a_violation():
    # Two concurrent writes; reader 1 sees 1 then 2, reader 2 sees 2 then 1.
    ops = [
        put(0, b"1", 0, 100),
        put(1, b"2", 0, 100),
        get(2, b"1", 10, 20),
        get(2, b"2", 30, 40),
        get(3, b"2", 10, 20),
        get(3, b"1", 30, 40),
    ]
    assert_violation(ops)
    # Either order alone is fine.
    assert_ok(ops[:4])
    assert_ok(ops[:2] + ops[4:])


def test_concurrent_writes_then_reads_that_disagree_is_a_violation():
    assert_violation([
        put(0, b"1", 0, 10),
        put(1, b"2", 0, 10),
        get(2, b"1", 11, 12),
        get(3, b"2", 13, 14),
    ])


def test_read_of_a_value_never_written_is_a_violation():
    result = assert_violation([put(0, b"1", 0, 10), get(1, b"9", 20, 30)])
    assert result.first.writers == ()
    assert "no put of this key ever wrote b'9'" in result.explain()


def test_read_of_deleted_key_returning_old_value_is_a_violation():
    assert_violation([put(0, b"1", 0, 10), delete(0, 20, 30), get(1, b"1", 40, 50)])


def test_read_concurrent_with_delete_may_see_old_value():
    assert_ok([put(0, b"1", 0, 10), delete(0, 20, 30), get(1, b"1", 25, 50)])
    assert_ok([put(0, b"1", 0, 10), delete(0, 20, 30), get(1, None, 25, 50)])


def test_equal_times_count_as_concurrent():
    # HAZARD in the module docstring: ret == call does not order the two operations.
    assert_ok([put(0, b"1", 0, 10), get(1, None, 10, 20)])
    assert_violation([put(0, b"1", 0, 10), get(1, None, 11, 20)])


def test_keys_are_checked_independently():
    a, b = b"a", b"b"
    result = check_register_history([
        put(0, b"1", 0, 10, key=a),
        put(1, b"1", 0, 10, key=b),
        get(2, b"1", 20, 30, key=a),
        get(2, None, 40, 50, key=b),  # stale on key b only
    ])
    assert result.violation and result.key == b
    by_key = {kr.key: kr.outcome for kr in result.keys}
    assert by_key == {a: Outcome.OK, b: Outcome.VIOLATION}
    assert [kr.key for kr in result.violations] == [b]


def test_values_are_per_key():
    # b"1" was written to key a, not to key b.
    assert_violation(
        [put(0, b"1", 0, 10, key=b"a"), get(1, b"1", 20, 30, key=b"b")], key=b"b"
    )


def test_linearization_of_an_ok_history_is_returned_in_order():
    ops = [put(0, b"1", 0, 10), put(1, b"2", 5, 15), get(2, b"2", 12, 20), get(3, b"1", 1, 4)]
    result = assert_ok(ops)
    assert result.keys[0].linearization == (ops[0], ops[3], ops[1], ops[2])


# ---- info and fail ----------------------------------------------------------------------


def test_info_put_later_observed_is_fine():
    assert_ok([put(0, b"1", 0, None, "info"), get(1, b"1", 100, 110)])


def test_info_put_never_observed_is_fine():
    assert_ok([put(0, b"1", 0, None, "info"), get(1, None, 100, 110), get(1, None, 200, 210)])


def test_info_put_observed_then_not_observed_is_fine():
    # It took effect between the two reads.
    assert_ok([put(0, b"1", 0, None, "info"), get(1, None, 100, 110), get(1, b"1", 200, 210)])


def test_info_put_cannot_take_effect_twice():
    assert_violation([
        put(0, b"1", 0, 1),
        put(1, b"2", 5, None, "info"),
        get(2, b"2", 10, 11),
        get(2, b"1", 20, 21),
    ])


def test_info_put_cannot_take_effect_before_its_call():
    assert_violation([get(1, b"1", 0, 5), put(0, b"1", 10, None, "info")])


def test_info_delete_can_explain_a_missing_key():
    assert_ok([put(0, b"1", 0, 1), delete(1, 5, None, "info"), get(2, None, 10, 11)])
    assert_violation([put(0, b"1", 0, 1), delete(1, 20, None, "info"), get(2, None, 10, 11)])


def test_failed_put_observed_is_a_violation():
    result = assert_violation([put(0, b"1", 0, 10, "fail"), get(1, b"1", 20, 30)])
    assert "fail" in result.explain()  # the failed writer is listed


def test_failed_put_not_observed_is_fine():
    assert_ok([put(0, b"1", 0, 10, "fail"), get(1, None, 20, 30)])


def test_info_and_failed_gets_constrain_nothing():
    assert_ok([
        put(0, b"1", 0, 10),
        get(1, None, 20, None, "info"),
        get(1, None, 30, 40, "fail"),
        get(2, b"1", 50, 60),
    ])


def test_only_info_and_fail_ops_is_linearizable():
    assert_ok([put(0, b"1", 0, None, "info"), put(1, b"2", 0, 3, "fail")])


def test_many_info_puts_do_not_explode_the_search():
    writers = [put(p, b"v%d" % p, 0, None, "info") for p in range(30)]
    reads = [get(99, b"v%d" % p, 100 + p, 100.5 + p) for p in range(30)]
    assert_ok(writers + reads)
    result = assert_violation(writers + reads + [get(98, b"v0", 200, 201)])
    assert result.steps < 10_000


# ---- explanations -----------------------------------------------------------------------


def test_violation_explanation_is_readable():
    result = assert_violation([
        put(0, b"1", 0, 10),
        put(1, b"2", 12, 15),
        get(2, b"1", 20, 30),
    ])
    text = result.explain()
    assert str(result) == text
    assert "NOT linearizable" in text
    assert "key b'x'" in text
    assert "could not be placed next: p2 get b'x' -> b'1'  [20, 30] ok" in text
    assert "p1 put b'x' = b'2'  [12, 15] ok" in text
    assert "register value after the prefix: b'2'" in text
    assert "b'1' was written by:" in text


def test_explanation_shortens_long_prefixes():
    ops = [put(0, b"%d" % i, 2 * i, 2 * i + 1) for i in range(100)]
    ops.append(get(1, b"5", 1000, 1001))
    result = assert_violation(ops)
    assert len(result.first.linearization) == 100
    text = result.explain()
    assert "... 92 earlier ops" in text
    assert text.count(" put ") <= 9  # 8 from the prefix, 1 writer of b"5"


def test_operation_str_shows_times_and_status():
    assert str(put(3, b"v", 1.5, 2)) == "p3 put b'x' = b'v'  [1.5, 2] ok"
    assert str(get(1, None, 0, 4)) == "p1 get b'x' -> None  [0, 4] ok"
    assert str(delete(2, 7, None, "info")) == "p2 delete b'x'  [7, inf) info"


# ---- budget -----------------------------------------------------------------------------


def _hard_violation(writers=18):
    # Many concurrent writes, then a read of a value nobody wrote: every order is explored.
    ops = [put(p, b"v%d" % p, 0, 100) for p in range(writers)]
    return ops + [get(99, b"never", 200, 300)]


def test_budget_exhaustion_returns_unknown():
    result = check_register_history(_hard_violation(), max_steps=5_000)
    assert result.unknown and not result.ok and not result.violation
    assert result.steps == 5_000
    assert result.key == K
    assert "unknown" in result.explain()


def test_budget_is_shared_by_all_keys():
    ops = _hard_violation() + [put(0, b"1", 0, 1, key=b"y"), put(0, b"2", 0, 1, key=b"z")]
    result = check_register_history(ops, max_steps=1_000)
    # The small keys go first and finish; the hard one runs out.
    outcomes = {kr.key: kr.outcome for kr in result.keys}
    assert outcomes == {b"y": Outcome.OK, b"z": Outcome.OK, K: Outcome.UNKNOWN}
    assert result.unknown and result.steps == 1_000


def test_zero_budget_is_unknown_unless_trivial():
    assert check_register_history([put(0, b"1", 0, 1)], max_steps=0).unknown
    assert check_register_history([put(0, b"1", 0, 1, "fail")], max_steps=0).ok


def test_violation_beats_unknown():
    ops = _hard_violation() + [put(0, b"1", 0, 1, key=b"y"), get(0, None, 5, 6, key=b"y")]
    result = check_register_history(ops, max_steps=1_000)
    assert result.violation and result.key == b"y"


def test_default_budget_bounds_a_hard_history():
    started = time.perf_counter()
    result = check_register_history(_hard_violation(writers=25))
    assert result.unknown and result.steps == DEFAULT_MAX_STEPS
    assert time.perf_counter() - started < 10


# ---- randomized: a real register, random overlap ----------------------------------------


def register_history(rng, ops_count, keys_count, processes, overlap=1.0, p_info=0.0, p_fail=0.0):
    """A history of a real, atomic register store: each op takes effect at a random instant
    inside its window (info ops: maybe never), so the history is linearizable by construction.
    """
    clocks = [0.0] * processes
    plans = []
    for index in range(ops_count):
        process = rng.randrange(processes)
        call = clocks[process] + rng.expovariate(1.0)
        ret = call + rng.expovariate(1.0 / overlap)
        clocks[process] = ret
        kind = rng.choice(("get", "get", "put", "put", "delete"))
        roll = rng.random()
        status = "info" if roll < p_info else "fail" if roll < p_info + p_fail else "ok"
        effect = rng.uniform(call, ret)
        if status == "fail" or (status == "info" and rng.random() < 0.5):
            effect = None
        value = b"v%d" % index if kind == "put" else None
        plans.append([process, kind, b"k%d" % rng.randrange(keys_count), value, call, ret, status, effect])
    store = {}
    for plan in sorted((plan for plan in plans if plan[7] is not None), key=lambda plan: plan[7]):
        _, kind, key, value = plan[:4]
        if kind == "get":
            plan[3] = store.get(key)
        else:
            store[key] = value
    ops = []
    for process, kind, key, value, call, ret, status, _ in plans:
        if kind == "get" and status != "ok":
            value = None
        ops.append(Operation(process, kind, key, value, call, None if status == "info" else ret, status))
    return ops


def mutate_one_read(rng, ops):
    """Changes the value one ok get observed; returns None if there is no ok get."""
    reads = [i for i, op in enumerate(ops) if op.kind == "get" and op.status == "ok"]
    if not reads:
        return None
    index = rng.choice(reads)
    read = ops[index]
    written = {op.value for op in ops if op.key == read.key and op.kind == "put"}
    choices = sorted(({None, b"never-written"} | written) - {read.value}, key=repr)
    mutated = list(ops)
    mutated[index] = Operation(
        read.process, "get", read.key, rng.choice(choices), read.call, read.ret, "ok"
    )
    return mutated


@pytest.mark.parametrize("p_info, p_fail", [(0.0, 0.0), (0.1, 0.1)])
def test_random_register_histories_pass_and_mutations_are_caught(p_info, p_fail):
    seeds = 300
    caught = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        ops = register_history(
            rng, ops_count=40, keys_count=3, processes=4, overlap=rng.choice((0.3, 1.0, 3.0)),
            p_info=p_info, p_fail=p_fail,
        )
        result = check_register_history(ops)
        assert result.ok, f"seed {seed}: a real register's history failed\n{result.explain()}"
        mutated = mutate_one_read(rng, ops)
        assert mutated is not None
        mutated_result = check_register_history(mutated)
        assert not mutated_result.unknown, f"seed {seed}"
        caught += mutated_result.violation
    assert caught >= 0.7 * seeds, f"only {caught} of {seeds} mutations caught"


# ---- randomized: against a brute-force checker ------------------------------------------


def brute_force_linearizable(ops):
    """Tries every subset of info writes and every order: the definition, nothing clever."""
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return all(_brute_force_key(key_ops) for key_ops in by_key.values())


def _brute_force_key(ops):
    must = [op for op in ops if op.status == "ok"]
    maybe = [op for op in ops if op.status == "info" and op.kind != "get"]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(must + list(chosen)):
                if _legal(order):
                    return True
    return False


def _legal(order):
    register = None
    for position, op in enumerate(order):
        for later in order[position + 1:]:
            if later.ret is not None and later.ret < op.call:
                return False  # `later` returned before `op` was called
        if op.kind == "get":
            if op.value != register:
                return False
        else:
            register = op.value
    return True


def random_small_history(rng):
    """Few ops, integer times (many ties), reused values: the checker's corner cases."""
    ops = []
    for process in range(rng.randrange(1, 7)):
        kind = rng.choice(("get", "put", "delete"))
        status = rng.choice(("ok", "ok", "ok", "info", "fail"))
        call = rng.randrange(0, 6)
        ret = None if status == "info" else call + rng.randrange(0, 4)
        value = rng.choice((b"a", b"b")) if kind == "put" else None
        if kind == "get" and status == "ok":
            value = rng.choice((None, b"a", b"b"))
        ops.append(Operation(process, kind, rng.choice((b"x", b"x", b"y")), value, call, ret, status))
    return ops


def test_agrees_with_brute_force_on_small_random_histories():
    verdicts = {True: 0, False: 0}
    for seed in range(3000):
        ops = random_small_history(random.Random(seed))
        expected = brute_force_linearizable(ops)
        result = check_register_history(ops)
        assert not result.unknown
        assert result.ok == expected, f"seed {seed}: expected {expected}\n{ops}\n{result.explain()}"
        if result.ok:
            _assert_valid_linearizations(ops, result)
        verdicts[expected] += 1
    assert min(verdicts.values()) > 300, verdicts  # both verdicts well exercised


def _assert_valid_linearizations(ops, result):
    for key_result in result.keys:
        order = key_result.linearization
        assert _legal(order), order
        ok_ops = [op for op in ops if op.key == key_result.key and op.status == "ok"]
        assert sorted(map(id, ok_ops)) == sorted(id(op) for op in order if op.status == "ok")


# ---- performance ------------------------------------------------------------------------


def test_performance_5000_ops_10_keys_8_processes():
    ops = register_history(random.Random(7), ops_count=5000, keys_count=10, processes=8)
    started = time.perf_counter()
    result = check_register_history(ops)
    elapsed_s = time.perf_counter() - started
    assert result.ok, result.explain()
    assert elapsed_s < 5, elapsed_s


def test_performance_3000_ops_on_one_key_with_info_and_fail():
    ops = register_history(
        random.Random(8), ops_count=3000, keys_count=1, processes=8, overlap=2.0,
        p_info=0.05, p_fail=0.05,
    )
    started = time.perf_counter()
    result = check_register_history(ops)
    elapsed_s = time.perf_counter() - started
    assert result.ok, result.explain()
    assert elapsed_s < 3, elapsed_s


# ---- History recorder and JSON lines ----------------------------------------------------


def test_history_records_operations():
    history = History()
    w = history.invoke(0, "put", K, b"1", 0)
    r = history.invoke(1, "get", K, None, 1)
    history.complete(w, "ok", time=5)
    history.complete(r, "ok", b"1", 6)
    d = history.invoke(0, "delete", K, time=7)
    history.complete(d, "info", time=9)
    g = history.invoke(2, "get", K, time=10)  # never completed
    assert (w, r, d, g) == (0, 1, 2, 3)
    assert len(history) == 4
    assert history.operations() == [
        put(0, b"1", 0, 5),
        get(1, b"1", 1, 6),
        delete(0, 7, None, "info"),
        get(2, None, 10, None, "info"),
    ]
    assert check_register_history(history.operations()).ok
    assert check_register_history(history).ok  # a History iterates its operations


def test_history_rejects_misuse():
    history = History()
    op = history.invoke(0, "put", K, b"1", 0)
    with pytest.raises(HistoryError, match="in flight"):
        history.invoke(0, "get", K, None, 1)
    with pytest.raises(HistoryError, match="before its call"):
        history.complete(op, "ok", time=-1)
    with pytest.raises(HistoryError, match="status"):
        history.complete(op, "done", time=2)
    with pytest.raises(HistoryError, match="completes with"):
        history.complete(op, "ok", b"2", 2)
    history.complete(op, "ok", b"1", 2)
    with pytest.raises(HistoryError, match="already completed"):
        history.complete(op, "ok", time=3)
    with pytest.raises(HistoryError, match="unknown operation"):
        history.complete(17, "ok", time=3)
    with pytest.raises(HistoryError, match="kind"):
        history.invoke(1, "cas", K, b"1", 3)
    with pytest.raises(HistoryError, match="key must be bytes"):
        history.invoke(1, "get", "x", None, 3)
    with pytest.raises(HistoryError, match="needs a time"):
        history.invoke(1, "get", K)
    with pytest.raises(HistoryError, match="without a value"):
        history.invoke(1, "get", K, b"1", 3)
    with pytest.raises(HistoryError, match="a put needs"):
        history.invoke(1, "put", K, None, 3)
    read = history.invoke(1, "get", K, None, 3)
    with pytest.raises(HistoryError, match="cannot observe"):
        history.complete(read, "fail", b"1", 4)


def test_operation_validates_its_fields():
    with pytest.raises(HistoryError, match="ret=None"):
        Operation(0, "put", K, b"1", 0, 5, "info")
    with pytest.raises(HistoryError, match="needs a ret"):
        Operation(0, "put", K, b"1", 0, None, "ok")
    with pytest.raises(HistoryError, match="before call"):
        Operation(0, "put", K, b"1", 5, 4, "ok")
    with pytest.raises(HistoryError, match="delete has no value"):
        Operation(0, "delete", K, b"1", 0, 1, "ok")
    with pytest.raises(HistoryError, match="finite"):
        Operation(0, "get", K, None, float("nan"), 1, "ok")


def _sample_history():
    history = History()
    a = history.invoke(0, "put", b"k1", b"plain", 0)
    b = history.invoke(1, "put", b"\x00\xffbin", b"caf\xe9\n", 1)
    c = history.invoke(2, "get", b"k1", None, 1.5)
    history.complete(a, "ok", time=2)
    history.complete(c, "ok", b"plain", 3)
    history.complete(b, "info", time=4)
    d = history.invoke(1, "delete", b"k1", None, 5)
    history.complete(d, "fail", time=6)
    history.invoke(2, "get", b"k1", None, 7)  # in flight when the history ends
    return history


def test_jsonl_round_trip():
    history = _sample_history()
    text = history.to_jsonl()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 9
    assert lines[0] == {
        "type": "invoke", "id": 0, "process": 0, "f": "put", "key": "k1", "value": "plain", "time": 0,
    }
    assert lines[1]["key"] == {"hex": "00ff62696e"} and lines[1]["value"] == {"hex": "636166e90a"}
    assert [line["type"] for line in lines] == [
        "invoke", "invoke", "invoke", "ok", "ok", "info", "invoke", "fail", "invoke",
    ]
    again = History.from_jsonl(text)
    assert again.operations() == history.operations()
    assert again.to_jsonl() == text


def test_jsonl_files(tmp_path):
    history = _sample_history()
    path = tmp_path / "history.jsonl"
    history.write_jsonl(path)
    assert History.read_jsonl(path).operations() == history.operations()
    assert History.read_jsonl(str(path)).operations() == history.operations()
    buffer = io.StringIO()
    history.write_jsonl(buffer)
    buffer.seek(0)
    assert History.read_jsonl(buffer).operations() == history.operations()


def test_jsonl_reads_jepsen_style_lines():
    # No ids (paired by process), latin-1 text, nemesis events, a blank line.
    text = "\n".join([
        '{"type": "invoke", "process": 0, "f": "put", "key": "k", "value": "caf\\u00e9", "time": 0}',
        '{"type": "info", "process": "nemesis", "f": "partition", "value": null, "time": 1}',
        '{"type": "invoke", "process": 1, "f": "get", "key": "k", "value": null, "time": 2}',
        "",
        '{"type": "ok", "process": 0, "f": "put", "key": "k", "value": "caf\\u00e9", "time": 3}',
        '{"type": "ok", "process": 1, "f": "get", "key": "k", "value": "caf\\u00e9", "time": 4}',
    ])
    ops = History.from_jsonl(text).operations()
    assert ops == [
        Operation(0, "put", b"k", b"caf\xe9", 0, 3, "ok"),
        Operation(1, "get", b"k", b"caf\xe9", 2, 4, "ok"),
    ]
    assert check_register_history(ops).ok


@pytest.mark.parametrize("line, message", [
    ('{"type": "ok", "process": 0, "f": "put", "key": "k", "value": "v", "time": 3}', "nothing in flight"),
    ('{"type": "bogus", "process": 0, "f": "put", "key": "k", "value": "v", "time": 3}', "event type"),
    ('{"type": "invoke", "process": 0, "f": "put", "key": "\\u0100", "value": "v", "time": 3}', "latin-1"),
    ('{"type": "invoke", "process": 0, "f": "put", "key": "k", "value": "v"}', "time"),
    ("not json", "line 1"),
])
def test_jsonl_rejects_bad_lines(line, message):
    with pytest.raises(HistoryError, match=message):
        History.from_jsonl(line)


def test_checker_reads_back_a_violation_from_jsonl():
    history = History()
    w = history.invoke(0, "put", K, b"1", 0)
    history.complete(w, "ok", time=10)
    r = history.invoke(1, "get", K, None, 20)
    history.complete(r, "ok", None, 30)
    result = check_register_history(History.from_jsonl(history.to_jsonl()).operations())
    assert result.violation and result.first.blocked == get(1, None, 20, 30)
