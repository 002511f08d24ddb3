"""Multi-Paxos group messages and their strict wire codec.

Every message is a frozen dataclass whose first field is `group_id`: a node multiplexes
the messages of thousands of groups over one connection per peer, and the receiver
routes each message by that field. `ballot` is always the proposer ballot the message is
about (the sender's own ballot for proposer/leader messages, the ballot being answered
for acceptor replies).

Wire form: `encode_message(msg)` returns a compact list `[type_tag, group_id, ...]` for
cbor; `decode_message(raw)` turns a cbor-decoded object back into a message and raises
`MessageDecodeError` on anything malformed. Peers may send garbage, so decoding checks
every type and range and never raises anything else: a bad frame must not crash a node.

Log values inside messages are opaque cbor objects (bytes, str, int, lists, maps, None);
`None` is the NOOP that fills holes.

HAZARD: decoding validates shape, not meaning. A well-formed message with lying content
(a forged ballot, a wrong chosen value) is outside the crash-fault model Paxos tolerates;
`core.py` filters the cheap cases (a leader message must come from the ballot's owner).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Callable, Union

from paxos_groups.ballot import Ballot

GROUP_ID_MAX = (1 << 63) - 1
SLOT_MAX = (1 << 63) - 1
# Sanity bound on a decoded entry list: far above what a sender produces
# (max_entries_per_message), far below what would exhaust memory.
MESSAGE_ENTRIES_MAX = 1 << 20


class MessageDecodeError(ValueError):
    """A peer sent something that is not a well-formed group message."""


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a for every slot >= from_slot. `probe` is a pre-vote: it asks whether the
    acceptor would promise, without changing any acceptor state. `force` marks a campaign
    the leader itself asked for (leadership transfer, `TimeoutNow`): acceptors answer it
    even while they hear a live leader (stickiness); every other Paxos rule still applies."""

    group_id: int
    ballot: Ballot
    from_slot: int
    probe: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the acceptor promised `ballot` and reports what it accepted at slots >=
    the Prepare's from_slot, as (slot, accepted_ballot, value), slots ascending."""

    group_id: int
    ballot: Ballot
    entries: tuple[tuple[int, Ballot, object], ...]
    chosen_upto: int
    first_index: int
    probe: bool = False


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for many slots at once; commit_index tells followers the leader's chosen_upto."""

    group_id: int
    ballot: Ballot
    entries: tuple[tuple[int, object], ...]
    commit_index: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b: the acceptor accepted `slots` at `ballot` (or knows them chosen)."""

    group_id: int
    ballot: Ballot
    slots: tuple[int, ...]
    chosen_upto: int


@dataclass(frozen=True, slots=True)
class Nack:
    """Rejection of `ballot`. Either the acceptor promised a higher ballot (`promised`),
    or (`behind`) it truncated its log past the Prepare's from_slot and so cannot report
    the accepted values the proposer needs: the proposer is behind and must not lead."""

    group_id: int
    ballot: Ballot
    promised: Ballot
    behind: bool = False


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness plus commit index. `quiesce` tells followers the leader is idle and
    will heartbeat at the slow quiesced interval from now on."""

    group_id: int
    ballot: Ballot
    commit_index: int
    quiesce: bool = False


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    group_id: int
    ballot: Ballot
    chosen_upto: int
    max_accepted_slot: int


@dataclass(frozen=True, slots=True)
class Chosen:
    """Catch-up: these (slot, value) are chosen. Sent by the leader to lagging followers."""

    group_id: int
    ballot: Ballot
    entries: tuple[tuple[int, object], ...]


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """The state machine's state after applying every slot <= index (opaque `data`)."""

    group_id: int
    ballot: Ballot
    index: int
    data: object


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the leader at `ballot` asks this follower to campaign at once
    (no probe) with a forced Prepare. Sent only once the follower has caught up."""

    group_id: int
    ballot: Ballot


Message = Union[
    Prepare, Promise, Accept, Accepted, Nack, Heartbeat, HeartbeatAck, Chosen, InstallSnapshot, TimeoutNow
]

TAG_PREPARE = 1
TAG_PROMISE = 2
TAG_ACCEPT = 3
TAG_ACCEPTED = 4
TAG_NACK = 5
TAG_HEARTBEAT = 6
TAG_HEARTBEAT_ACK = 7
TAG_CHOSEN = 8
TAG_INSTALL_SNAPSHOT = 9
TAG_TIMEOUT_NOW = 10


# ---------------------------------------------------------------------------- encode


def encode_message(msg: Message) -> list:
    encoder = _ENCODERS.get(type(msg))
    assert encoder is not None, f"not a group message: {msg!r}"
    return encoder(msg)


def _encode_prepare(m: Prepare) -> list:
    if m.force:  # an optional trailing field, sent only when set: old decoders see no change
        return [TAG_PREPARE, m.group_id, m.ballot.encode(), m.from_slot, m.probe, True]
    return [TAG_PREPARE, m.group_id, m.ballot.encode(), m.from_slot, m.probe]


def _encode_promise(m: Promise) -> list:
    entries = [[slot, b.round, b.node_id, value] for slot, b, value in m.entries]
    return [TAG_PROMISE, m.group_id, m.ballot.encode(), entries, m.chosen_upto, m.first_index, m.probe]


def _encode_accept(m: Accept) -> list:
    return [TAG_ACCEPT, m.group_id, m.ballot.encode(), [[s, v] for s, v in m.entries], m.commit_index]


def _encode_accepted(m: Accepted) -> list:
    return [TAG_ACCEPTED, m.group_id, m.ballot.encode(), list(m.slots), m.chosen_upto]


def _encode_nack(m: Nack) -> list:
    return [TAG_NACK, m.group_id, m.ballot.encode(), m.promised.encode(), m.behind]


def _encode_heartbeat(m: Heartbeat) -> list:
    return [TAG_HEARTBEAT, m.group_id, m.ballot.encode(), m.commit_index, m.quiesce]


def _encode_heartbeat_ack(m: HeartbeatAck) -> list:
    return [TAG_HEARTBEAT_ACK, m.group_id, m.ballot.encode(), m.chosen_upto, m.max_accepted_slot]


def _encode_chosen(m: Chosen) -> list:
    return [TAG_CHOSEN, m.group_id, m.ballot.encode(), [[s, v] for s, v in m.entries]]


def _encode_install_snapshot(m: InstallSnapshot) -> list:
    return [TAG_INSTALL_SNAPSHOT, m.group_id, m.ballot.encode(), m.index, m.data]


def _encode_timeout_now(m: TimeoutNow) -> list:
    return [TAG_TIMEOUT_NOW, m.group_id, m.ballot.encode()]


_ENCODERS: dict[type, Callable[..., list]] = {
    Prepare: _encode_prepare,
    Promise: _encode_promise,
    Accept: _encode_accept,
    Accepted: _encode_accepted,
    Nack: _encode_nack,
    Heartbeat: _encode_heartbeat,
    HeartbeatAck: _encode_heartbeat_ack,
    Chosen: _encode_chosen,
    InstallSnapshot: _encode_install_snapshot,
    TimeoutNow: _encode_timeout_now,
}


# ---------------------------------------------------------------------------- decode


def decode_message(raw: object) -> Message:
    """Decode a cbor-decoded frame body; raises MessageDecodeError on anything malformed."""
    if not isinstance(raw, (list, tuple)) or len(raw) < 3:
        raise MessageDecodeError(f"a group message is [tag, group_id, ballot, ...], got {_short(raw)}")
    tag = raw[0]
    spec = _DECODERS.get(tag) if _is_int(tag) else None
    if spec is None:
        raise MessageDecodeError(f"unknown message tag {_short(tag)}")
    arity, decoder = spec
    optional = _OPTIONAL_TRAILING_FIELDS.get(tag, 0)
    if not arity <= len(raw) <= arity + optional:
        more = f" (or up to {arity + optional} with optional ones)" if optional else ""
        raise MessageDecodeError(f"message tag {tag} has {arity} fields{more}, got {len(raw)}: {_short(raw)}")
    group_id = _int_field(raw[1], "group_id", 0, GROUP_ID_MAX)
    ballot = _ballot_field(raw[2], "ballot")
    return decoder(group_id, ballot, raw[3:])


def _decode_prepare(group_id: int, ballot: Ballot, f: list) -> Prepare:
    force = _bool_field(f[2], "force") if len(f) > 2 else False  # absent (older senders): False
    return Prepare(group_id, ballot, _slot_field(f[0], "from_slot"), _bool_field(f[1], "probe"), force)


def _decode_promise(group_id: int, ballot: Ballot, f: list) -> Promise:
    entries = []
    for item in _list_field(f[0], "promise entries"):
        if not (isinstance(item, (list, tuple)) and len(item) == 4):
            raise MessageDecodeError(f"a promise entry is [slot, round, node_id, value], got {_short(item)}")
        slot = _slot_field(item[0], "promise entry slot")
        accepted_ballot = _ballot_field([item[1], item[2]], "promise entry ballot")
        entries.append((slot, accepted_ballot, item[3]))
    _check_ascending([e[0] for e in entries], "promise entries")
    chosen_upto = _int_field(f[1], "chosen_upto", 0, SLOT_MAX)
    first_index = _slot_field(f[2], "first_index")
    return Promise(group_id, ballot, tuple(entries), chosen_upto, first_index, _bool_field(f[3], "probe"))


def _decode_accept(group_id: int, ballot: Ballot, f: list) -> Accept:
    entries = _slot_value_entries(f[0], "accept entries")
    return Accept(group_id, ballot, entries, _int_field(f[1], "commit_index", 0, SLOT_MAX))


def _decode_accepted(group_id: int, ballot: Ballot, f: list) -> Accepted:
    slots = tuple(_slot_field(s, "accepted slot") for s in _list_field(f[0], "accepted slots"))
    _check_ascending(slots, "accepted slots")
    return Accepted(group_id, ballot, slots, _int_field(f[1], "chosen_upto", 0, SLOT_MAX))


def _decode_nack(group_id: int, ballot: Ballot, f: list) -> Nack:
    return Nack(group_id, ballot, _ballot_field(f[0], "promised"), _bool_field(f[1], "behind"))


def _decode_heartbeat(group_id: int, ballot: Ballot, f: list) -> Heartbeat:
    commit_index = _int_field(f[0], "commit_index", 0, SLOT_MAX)
    return Heartbeat(group_id, ballot, commit_index, _bool_field(f[1], "quiesce"))


def _decode_heartbeat_ack(group_id: int, ballot: Ballot, f: list) -> HeartbeatAck:
    chosen_upto = _int_field(f[0], "chosen_upto", 0, SLOT_MAX)
    return HeartbeatAck(group_id, ballot, chosen_upto, _int_field(f[1], "max_accepted_slot", 0, SLOT_MAX))


def _decode_chosen(group_id: int, ballot: Ballot, f: list) -> Chosen:
    return Chosen(group_id, ballot, _slot_value_entries(f[0], "chosen entries"))


def _decode_install_snapshot(group_id: int, ballot: Ballot, f: list) -> InstallSnapshot:
    return InstallSnapshot(group_id, ballot, _slot_field(f[0], "snapshot index"), f[1])


def _decode_timeout_now(group_id: int, ballot: Ballot, f: list) -> TimeoutNow:
    return TimeoutNow(group_id, ballot)


# tag -> (number of list elements including the tag, decoder of the fields after the ballot)
_DECODERS: dict[int, tuple[int, Callable[[int, Ballot, list], Message]]] = {
    TAG_PREPARE: (5, _decode_prepare),
    TAG_PROMISE: (7, _decode_promise),
    TAG_ACCEPT: (5, _decode_accept),
    TAG_ACCEPTED: (5, _decode_accepted),
    TAG_NACK: (5, _decode_nack),
    TAG_HEARTBEAT: (5, _decode_heartbeat),
    TAG_HEARTBEAT_ACK: (5, _decode_heartbeat_ack),
    TAG_CHOSEN: (4, _decode_chosen),
    TAG_INSTALL_SNAPSHOT: (5, _decode_install_snapshot),
    TAG_TIMEOUT_NOW: (3, _decode_timeout_now),
}
# tag -> how many fields after the required ones a sender may append (newer fields, absent
# from older senders' frames; each decoder supplies the default when one is missing).
_OPTIONAL_TRAILING_FIELDS: dict[int, int] = {TAG_PREPARE: 1}


def _slot_value_entries(raw: object, what: str) -> tuple[tuple[int, object], ...]:
    entries = []
    for item in _list_field(raw, what):
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise MessageDecodeError(f"an entry of {what} is [slot, value], got {_short(item)}")
        entries.append((_slot_field(item[0], f"{what} slot"), item[1]))
    _check_ascending([e[0] for e in entries], what)
    return tuple(entries)


def _check_ascending(slots, what: str) -> None:
    # The core relies on one entry per slot per message; senders always emit ascending slots.
    for a, b in zip(slots, slots[1:]):
        if not a < b:
            raise MessageDecodeError(f"{what} must have strictly ascending slots, got {a} then {b}")


def _list_field(raw: object, what: str) -> list | tuple:
    if not isinstance(raw, (list, tuple)):
        raise MessageDecodeError(f"{what} must be a list, got {_short(raw)}")
    if len(raw) > MESSAGE_ENTRIES_MAX:
        raise MessageDecodeError(f"{what} has {len(raw)} items, more than {MESSAGE_ENTRIES_MAX}")
    return raw


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_field(raw: object, what: str, low: int, high: int) -> int:
    if not _is_int(raw):
        raise MessageDecodeError(f"{what} must be an integer, got {_short(raw)}")
    if not low <= raw <= high:
        raise MessageDecodeError(f"{what} must be in [{low}, {high}], got {raw}")
    return raw


def _slot_field(raw: object, what: str) -> int:
    return _int_field(raw, what, 1, SLOT_MAX)


def _bool_field(raw: object, what: str) -> bool:
    if not isinstance(raw, bool):
        raise MessageDecodeError(f"{what} must be a boolean, got {_short(raw)}")
    return raw


def _ballot_field(raw: object, what: str) -> Ballot:
    try:
        return Ballot.decode(raw)
    except ValueError as e:
        raise MessageDecodeError(f"{what}: {e}") from None


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 40, 40, 40


def _short(x: object) -> str:
    # Bounded repr: garbage may be huge or deeply nested, and an error message must not
    # cost more than the message.
    return _REPR.repr(x)
