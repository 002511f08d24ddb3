"""The group message codec: exact round trips, strict rejection of malformed frames."""

from __future__ import annotations

import random

import cbor2
import pytest

from paxos_groups.ballot import Ballot
from paxos_groups.messages import (
    Accept,
    Accepted,
    Chosen,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    MessageDecodeError,
    Nack,
    Prepare,
    Promise,
    TimeoutNow,
    decode_message,
    encode_message,
)

B = Ballot(3, 2)

EXAMPLES = [
    Prepare(1, B, 5),
    Prepare(1, B, 5, probe=True),
    Prepare(1, B, 5, force=True),
    Promise(1, B, ((5, Ballot(1, 1), b"v"), (7, Ballot(2, 3), None)), 4, 2),
    Promise(1, B, (), 0, 1, probe=True),
    Accept(2, B, ((1, b"a"), (2, None), (3, ["nested", 1, {"k": b"v"}])), 0),
    Accepted(2, B, (1, 2, 3), 1),
    Nack(2, B, Ballot(9, 1)),
    Nack(2, B, Ballot.ZERO, behind=True),
    Heartbeat(3, B, 10),
    Heartbeat(3, B, 10, quiesce=True),
    HeartbeatAck(3, B, 9, 12),
    Chosen(4, B, ((8, b"x"), (9, "y"))),
    InstallSnapshot(4, B, 100, {"state": [1, 2, 3]}),
    TimeoutNow(5, B),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_cbor(msg):
    raw = cbor2.loads(cbor2.dumps(encode_message(msg)))
    assert decode_message(raw) == msg


def test_encoding_is_compact_tag_first():
    assert encode_message(Prepare(1, B, 5)) == [1, 1, [3, 2], 5, False]
    assert encode_message(Heartbeat(3, B, 10)) == [6, 3, [3, 2], 10, False]
    assert encode_message(TimeoutNow(5, B)) == [10, 5, [3, 2]]


def test_prepare_force_is_an_optional_trailing_field_absent_when_false():
    assert encode_message(Prepare(1, B, 5, force=True)) == [1, 1, [3, 2], 5, False, True]
    assert encode_message(Prepare(1, B, 5)) == [1, 1, [3, 2], 5, False]  # as older senders
    assert decode_message([1, 1, [3, 2], 5, False]).force is False
    assert decode_message([1, 1, [3, 2], 5, False, False]) == Prepare(1, B, 5)


MALFORMED = [
    (None, "a group message is"),
    ({"tag": 1}, "a group message is"),
    ([1, 1], "a group message is"),
    ([99, 1, [1, 1], 1, False], "unknown message tag"),
    ([True, 1, [1, 1], 1, False], "unknown message tag"),
    ([1, 1, [1, 1], 1], "has 5 fields"),
    ([1, -1, [1, 1], 1, False], "group_id"),
    ([1, 1, [1], 1, False], "ballot"),
    ([1, 1, [1, True], 1, False], "ballot"),
    ([1, 1, [-1, 1], 1, False], "ballot"),
    ([1, 1, [1, 1], 0, False], "from_slot"),
    ([1, 1, [1, 1], True, False], "from_slot"),
    ([1, 1, [1, 1], 1, 1], "probe"),
    ([1, 1, [1, 1], 1, False, 1], "force"),
    ([1, 1, [1, 1], 1, False, True, True], "has 5 fields"),
    ([1, 1, [1, 1], 2**63, False], "from_slot"),
    ([2, 1, [1, 1], "x", 0, 1, False], "promise entries"),
    ([2, 1, [1, 1], [[1, 1, 1]], 0, 1, False], "promise entry"),
    ([2, 1, [1, 1], [[2, 1, 1, None], [1, 1, 1, None]], 0, 1, False], "ascending"),
    ([2, 1, [1, 1], [], 0, 0, False], "first_index"),
    ([3, 1, [1, 1], [[1, b"a"], [1, b"b"]], 0], "ascending"),
    ([3, 1, [1, 1], [[1]], 0], "entry of accept entries"),
    ([3, 1, [1, 1], [], -1], "commit_index"),
    ([4, 1, [1, 1], [1, "2"], 0], "accepted slot"),
    ([5, 1, [1, 1], None, False], "promised"),
    ([6, 1, [1, 1], 1.5, False], "commit_index"),
    ([7, 1, [1, 1], 1, None], "max_accepted_slot"),
    ([8, 1, [1, 1], {"1": "a"}], "chosen entries"),
    ([9, 1, [1, 1], 0, b"data"], "snapshot index"),
    ([10, 1, [1, 1], 1], "has 3 fields"),
    ([10, 1, [1]], "ballot"),
]


@pytest.mark.parametrize("raw,needle", MALFORMED)
def test_malformed_frames_are_rejected_with_a_clear_error(raw, needle):
    with pytest.raises(MessageDecodeError, match=needle):
        decode_message(raw)


def test_error_messages_stay_short_for_huge_or_deep_garbage():
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    for raw in (deep, [99] + list(range(100_000)), [3, 1, [1, 1], [[1, b"x" * 10**6]] * 2, 0]):
        with pytest.raises(MessageDecodeError) as e:
            decode_message(raw)
        assert len(str(e.value)) < 500


def _mutate(rng: random.Random, x: object, depth: int = 0) -> object:
    garbage = [None, True, -1, 0, 2**64, 1.5, "s", b"b", [], {}, [1, 1], [[1, 1]]]
    if rng.random() < 0.2 or depth > 4:
        return rng.choice(garbage)
    if isinstance(x, list) and x:
        x = list(x)
        op = rng.random()
        if op < 0.3:
            del x[rng.randrange(len(x))]
        elif op < 0.5:
            x.insert(rng.randrange(len(x) + 1), rng.choice(garbage))
        else:
            i = rng.randrange(len(x))
            x[i] = _mutate(rng, x[i], depth + 1)
        return x
    return rng.choice(garbage)


def test_random_mutations_never_raise_anything_but_decode_errors():
    rng = random.Random(1234)
    decoded = rejected = 0
    for _ in range(20_000):
        raw = _mutate(rng, encode_message(rng.choice(EXAMPLES)))
        try:
            msg = decode_message(raw)
        except MessageDecodeError:
            rejected += 1
            continue
        decoded += 1
        assert decode_message(encode_message(msg)) == msg  # whatever decodes re-encodes
    assert rejected > 1000 and decoded > 100


def test_random_bytes_never_crash_the_cbor_plus_decode_path():
    rng = random.Random(99)
    frames = [cbor2.dumps(encode_message(m)) for m in EXAMPLES]
    for _ in range(5_000):
        frame = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        try:
            raw = cbor2.loads(bytes(frame))
        except (cbor2.CBORDecodeError, ValueError, OverflowError, TypeError, RecursionError):
            continue  # the transport's frame decoder rejects these
        try:
            decode_message(raw)
        except MessageDecodeError:
            pass
