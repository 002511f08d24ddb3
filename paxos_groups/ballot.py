"""Paxos ballots: `Ballot(round, node_id)`, totally ordered, round first.

A ballot names one proposer's attempt to lead a group. Two proposers never share a
ballot because the node id breaks ties, and one proposer never reuses a ballot because
it always campaigns with a round above every round it has seen, including the one it
persisted as its own promise (see `core.py`).

Encoding: `[round, node_id]`, for cbor messages and the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# Rounds and node ids are stored as cbor integers; keep them inside 63 bits so every
# codec (and every other language reading the engine) can hold them.
ROUND_MAX = (1 << 63) - 1
NODE_ID_MAX = (1 << 63) - 1


@dataclass(frozen=True, order=True, slots=True)
class Ballot:
    round: int
    node_id: int

    ZERO: ClassVar["Ballot"]

    def __post_init__(self) -> None:
        assert 0 <= self.round <= ROUND_MAX, f"ballot round out of range: {self.round}"
        assert 0 <= self.node_id <= NODE_ID_MAX, f"ballot node id out of range: {self.node_id}"

    def encode(self) -> list[int]:
        return [self.round, self.node_id]

    @staticmethod
    def decode(raw: object) -> "Ballot":
        """Strict decoding of `[round, node_id]`; raises ValueError on anything else."""
        if not (isinstance(raw, (list, tuple)) and len(raw) == 2):
            raise ValueError(f"a ballot is [round, node_id], got {raw!r}")
        round_, node_id = raw
        if not (_is_int(round_) and _is_int(node_id)):
            raise ValueError(f"ballot fields must be integers, got {raw!r}")
        if not (0 <= round_ <= ROUND_MAX and 0 <= node_id <= NODE_ID_MAX):
            raise ValueError(f"ballot out of range: {raw!r}")
        return Ballot(round_, node_id)

    def __str__(self) -> str:
        return f"{self.round}.{self.node_id}"


def _is_int(x: object) -> bool:
    # bool is an int subclass in Python; a peer sending `true` for a round is garbage.
    return isinstance(x, int) and not isinstance(x, bool)


Ballot.ZERO = Ballot(0, 0)
