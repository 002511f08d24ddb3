"""Replicated command codecs: round trips and strict rejection of malformed entries."""

import cbor2
import pytest

from clock.timestamp import Timestamp
from paxos_groups.lease import Lease
from ranges.commands import (
    MAX_OP_ID_BYTES,
    CommandDecodeError,
    Delete,
    Put,
    RequestLease,
    decode_command,
    encode_command,
)
from ranges.keys import KEY_MAX, MAX_KEY_BYTES

TS = Timestamp(1_000, 2)
LEASE = Lease(2, Timestamp(10), Timestamp(20), 3)

COMMANDS = [
    Put(b"k", b"v", TS, b"op-1", 3),
    Put(b"", b"", TS, b"o", 0),
    Delete(b"\x00k", TS, b"op-2", 7),
    RequestLease(LEASE, 2),
    RequestLease(LEASE, 3),
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
