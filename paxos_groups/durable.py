"""The durable-state codec of a Paxos group: engine keys <-> `DurableState`, `Ready` -> batch.

Key layout (docs/ARCHITECTURE.md, prefix `\\x01`, group_id as 8 bytes big-endian):
    \\x01 gid p            promised ballot         cbor [round, node_id]
    \\x01 gid l slot(8B)   accepted entry          cbor [ballot_round, ballot_node, value]
    \\x01 gid c            chosen_upto             cbor int
    \\x01 gid f            first_index             cbor int
Slots are big-endian so an engine scan returns the log in slot order.

`ready_to_batch` turns one Ready into one atomic write batch; write it with
`sync=needs_sync(ready)` before sending the Ready's messages (see `core.py`). Batches of
many groups may be concatenated into one engine write (group commit).
"""

from __future__ import annotations

import cbor2

from paxos_groups.ballot import Ballot
from paxos_groups.core_types import DurableState, Ready
from paxos_groups.engine import Engine, WriteBatch

GROUP_PREFIX = b"\x01"
GROUP_ID_BYTES = 8
SLOT_BYTES = 8
KEY_PROMISED = b"p"
KEY_LOG = b"l"
KEY_CHOSEN_UPTO = b"c"
KEY_FIRST_INDEX = b"f"


class DurableStateCorrupt(Exception):
    """The engine holds group state this code cannot have written."""


def group_key_prefix(group_id: int) -> bytes:
    assert 0 <= group_id < (1 << 64), f"group id out of range: {group_id}"
    return GROUP_PREFIX + group_id.to_bytes(GROUP_ID_BYTES, "big")


def promised_key(group_id: int) -> bytes:
    return group_key_prefix(group_id) + KEY_PROMISED


def chosen_upto_key(group_id: int) -> bytes:
    return group_key_prefix(group_id) + KEY_CHOSEN_UPTO


def first_index_key(group_id: int) -> bytes:
    return group_key_prefix(group_id) + KEY_FIRST_INDEX


def log_key(group_id: int, slot: int) -> bytes:
    assert 1 <= slot < (1 << 64), f"slot out of range: {slot}"
    return group_key_prefix(group_id) + KEY_LOG + slot.to_bytes(SLOT_BYTES, "big")


def needs_sync(ready: Ready) -> bool:
    """A promise or an accepted entry must be on disk before any reply leaves the node."""
    return ready.promised is not None or bool(ready.accepted)


def ready_to_batch(group_id: int, ready: Ready) -> WriteBatch:
    batch: WriteBatch = []
    if ready.promised is not None:
        batch.append((promised_key(group_id), cbor2.dumps(ready.promised.encode())))
    for slot, ballot, value in ready.accepted:
        batch.append((log_key(group_id, slot), cbor2.dumps([ballot.round, ballot.node_id, value])))
    if ready.truncate_upto is not None:
        # After the puts: an entry accepted and truncated within one Ready ends up deleted.
        for slot in ready.truncate_slots:
            assert slot <= ready.truncate_upto, f"truncating slot {slot} above {ready.truncate_upto}"
            batch.append((log_key(group_id, slot), None))
        batch.append((first_index_key(group_id), cbor2.dumps(ready.truncate_upto + 1)))
    if ready.chosen_upto is not None:
        batch.append((chosen_upto_key(group_id), cbor2.dumps(ready.chosen_upto)))
    return batch


def load_durable_state(engine: Engine, group_id: int) -> DurableState:
    """Read one group's state back, checking it as strictly as it was written."""
    state = DurableState(
        promised=_load_promised(engine, group_id),
        chosen_upto=_load_int(engine, chosen_upto_key(group_id), default=0, low=0),
        first_index=_load_int(engine, first_index_key(group_id), default=1, low=1),
    )
    start = group_key_prefix(group_id) + KEY_LOG
    end = group_key_prefix(group_id) + bytes([KEY_LOG[0] + 1])
    for key, raw in engine.scan(start, end):
        slot = _decode_slot(key, len(start))
        state.accepted[slot] = _decode_entry(raw, slot)
    _check_state(state, group_id)
    return state


def _load_promised(engine: Engine, group_id: int) -> Ballot:
    raw = engine.get(promised_key(group_id))
    if raw is None:
        return Ballot.ZERO
    try:
        return Ballot.decode(cbor2.loads(raw))
    except (ValueError, cbor2.CBORDecodeError) as e:
        raise DurableStateCorrupt(f"group {group_id}: bad promised ballot {raw!r}: {e}") from None


def _load_int(engine: Engine, key: bytes, default: int, low: int) -> int:
    raw = engine.get(key)
    if raw is None:
        return default
    try:
        value = cbor2.loads(raw)
    except cbor2.CBORDecodeError as e:
        raise DurableStateCorrupt(f"key {key!r}: {e}") from None
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise DurableStateCorrupt(f"key {key!r}: expected an integer >= {low}, got {value!r}")
    return value


def _decode_slot(key: bytes, prefix_len: int) -> int:
    if len(key) != prefix_len + SLOT_BYTES:
        raise DurableStateCorrupt(f"malformed log key {key!r}")
    slot = int.from_bytes(key[prefix_len:], "big")
    if slot < 1:
        raise DurableStateCorrupt(f"log key for slot 0: {key!r}")
    return slot


def _decode_entry(raw: bytes, slot: int) -> tuple[Ballot, object]:
    try:
        entry = cbor2.loads(raw)
    except cbor2.CBORDecodeError as e:
        raise DurableStateCorrupt(f"slot {slot}: {e}") from None
    if not (isinstance(entry, list) and len(entry) == 3):
        raise DurableStateCorrupt(f"slot {slot}: an entry is [round, node_id, value], got {entry!r}")
    try:
        ballot = Ballot.decode(entry[:2])
    except ValueError as e:
        raise DurableStateCorrupt(f"slot {slot}: {e}") from None
    return ballot, entry[2]


def _check_state(state: DurableState, group_id: int) -> None:
    if state.first_index > state.chosen_upto + 1:
        raise DurableStateCorrupt(
            f"group {group_id}: first_index {state.first_index} beyond chosen_upto {state.chosen_upto} + 1"
        )
    below = [s for s in state.accepted if s < state.first_index]
    if below:
        raise DurableStateCorrupt(f"group {group_id}: log entries {below[:5]} below first_index {state.first_index}")
