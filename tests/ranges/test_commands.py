"""Replicated command codecs: round trips and strict rejection of malformed entries."""

import cbor2
import pytest

from clock.timestamp import Timestamp
from paxos_groups.lease import Lease
from ranges.commands import (
    MAX_OP_ID_BYTES,
    CommandDecodeError,
    Delete,
    Increment,
    MetaSplit,
    Put,
    RequestLease,
    Split,
    decode_command,
    encode_command,
)
from ranges.descriptor import RangeDescriptor
from ranges.keys import KEY_MAX, MAX_KEY_BYTES

TS = Timestamp(1_000, 2)
LEASE = Lease(2, Timestamp(10), Timestamp(20), 3)
OLD = RangeDescriptor(2, b"\x02", KEY_MAX, (1, 2, 3), 4)
LEFT = RangeDescriptor(2, b"\x02", b"m", (1, 2, 3), 5)
RIGHT = RangeDescriptor(9, b"m", KEY_MAX, (1, 2, 3), 5)

COMMANDS = [
    Put(b"k", b"v", TS, b"op-1", 3),
    Put(b"", b"", TS, b"o", 0),
    Delete(b"\x00k", TS, b"op-2", 7),
    RequestLease(LEASE, 2),
    RequestLease(LEASE, 3),
    Increment(b"\x01\x00range-id", 1, TS, b"op-3", 1),
    Increment(b"k", -(2**63), TS, b"op-4", 0),
    Split(b"m", 9, 4, TS, 3),
    MetaSplit(OLD, LEFT, RIGHT, TS, b"op-5", 3),
]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_round_trip_through_cbor(cmd):
    encoded = encode_command(cmd)
    assert decode_command(cbor2.loads(cbor2.dumps(encoded))) == cmd


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        b"junk",
        [99, b"k"],
        ["put", b"k", b"v", [1, 0], b"op", 0],
        [True, b"k", b"v", [1, 0], b"op", 0],
        [1, b"k", b"v", [1, 0], b"op"],  # Missing field.
        [1, "k", b"v", [1, 0], b"op", 0],
        [1, b"k", b"v", [1, 0], b"op", -1],
        [1, b"k", b"v", [1, 0], b"op", True],
        [1, b"k", b"v", [-1, 0], b"op", 0],
        [1, b"k", b"v", [1], b"op", 0],
        [1, b"k", b"v", [1, 0], b"", 0],
        [1, b"k", b"v", [1, 0], b"o" * (MAX_OP_ID_BYTES + 1), 0],
        [1, KEY_MAX, b"v", [1, 0], b"op", 0],
        [1, b"k" * (MAX_KEY_BYTES + 1), b"v", [1, 0], b"op", 0],
        [1, b"k", None, [1, 0], b"op", 0],
        [2, b"k", [1, 0], b"op"],
        [3, [2, [10, 0], [20, 0], 3], 0],  # Sequence jumps by 3.
        [3, [2, [20, 0], [10, 0], 3], 2],  # Ends before it starts.
        [3, [0, [10, 0], [20, 0], 3], 2],  # No holder.
        [3, "lease", 2],
        [4, b"k", 1, [1, 0], b"op"],  # Increment: missing field.
        [4, b"k", 2**63, [1, 0], b"op", 0],  # Delta beyond 64 bits.
        [4, b"k", True, [1, 0], b"op", 0],
        [4, b"k", b"\x01", [1, 0], b"op", 0],
        [4, b"k", 1, [1, 0], b"", 0],
        [5, b"m", 0, 4, [1, 0], 3],  # Split: no range id 0.
        [5, b"m", 9, -1, [1, 0], 3],
        [5, KEY_MAX, 9, 4, [1, 0], 3],
        [5, b"m", 9, 4, [1, 0]],
        [5, b"m", 9, 4, [1, 0], 3, b"extra"],
        [6, OLD.encode(), LEFT.encode(), RIGHT.encode(), [1, 0], b"op"],  # MetaSplit: missing field.
        [6, OLD.encode(), RIGHT.encode(), LEFT.encode(), [1, 0], b"op", 3],  # Halves swapped.
        [6, OLD.encode(), LEFT.encode(), {**RIGHT.encode(), "generation": 6}, [1, 0], b"op", 3],
        [6, OLD.encode(), LEFT.encode(), {**RIGHT.encode(), "range_id": 2}, [1, 0], b"op", 3],
        [6, OLD.encode(), LEFT.encode(), {**RIGHT.encode(), "replicas": [[1]]}, [1, 0], b"op", 3],
        [6, OLD.encode(), LEFT.encode(), "right", [1, 0], b"op", 3],
    ],
)
def test_decode_rejects_malformed(raw):
    with pytest.raises(CommandDecodeError):
        decode_command(raw)


def test_constructors_validate_too():
    with pytest.raises(ValueError):
        Put(b"k", b"v", TS, b"", 0)
    with pytest.raises(ValueError):
        RequestLease(LEASE, 0)
