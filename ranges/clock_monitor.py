"""Clock offset monitoring: a node that finds its clock too far from most of the cluster's
stops serving rather than risk a lease or commit-wait violation (CockroachDB's
`RemoteClockMonitor`, `pkg/rpc/clock_offset.go`).

Measurement (NTP's idea, one sample per ping): a ping carries our physical time `sent`; the
peer echoes it with its own physical time `remote`; when the echo arrives at `now`, the peer's
offset is `remote - (sent + now) / 2`, within `(now - sent) / 2` either way.

Rule: with fresh samples, a peer is *far* when `|offset| - uncertainty > 0.8 * max_offset`
(surely beyond 80% of the bound). If a majority of the cluster (peers counted, we are never
far from ourselves) is far, our clock is the odd one: `serving` turns False until that
stops being true. Every guarantee that leans on max offset (lease disjointness, stasis,
commit-wait) assumes our clock is within it.

HAZARD: two clocks that drift apart symmetrically in a 2-node cluster cannot tell which is
wrong; with 3 or more nodes the majority decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OFFSET_FRACTION_LIMIT = 0.8
SAMPLE_FRESH_NS = 5_000_000_000


@dataclass(frozen=True, slots=True)
class OffsetSample:
    offset_ns: int
    uncertainty_ns: int
    measured_ns: int


@dataclass
class ClockMonitor:
    node_id: int
    max_offset_ns: int
    cluster_size: int
    samples: dict[int, OffsetSample] = field(default_factory=dict)
    serving: bool = True

    def echo_received(self, peer: int, sent_ns: int, remote_ns: int, now_ns: int) -> None:
        rtt = now_ns - sent_ns
        if rtt < 0 or rtt > SAMPLE_FRESH_NS:
            return  # An echo of a probe we never sent, or one far too old to say anything.
        self.samples[peer] = OffsetSample(remote_ns - (sent_ns + now_ns) // 2, rtt // 2 + 1, now_ns)

    def far_peers(self, now_ns: int) -> list[int]:
        limit = OFFSET_FRACTION_LIMIT * self.max_offset_ns
        return sorted(peer for peer, s in self.samples.items()
                      if now_ns - s.measured_ns < SAMPLE_FRESH_NS and abs(s.offset_ns) - s.uncertainty_ns > limit)

    def check(self, now_ns: int) -> str | None:
        """Re-decide `serving`; returns a log line when it changed."""
        far = self.far_peers(now_ns)
        majority = self.cluster_size // 2 + 1
        should_serve = len(far) < majority
        if should_serve == self.serving:
            return None
        self.serving = should_serve
        if not should_serve:
            offsets = ", ".join(f"node {p}: {self.samples[p].offset_ns / 1e6:+.1f} ms" for p in far)
            return (f"node {self.node_id}: clock offset from a majority of the cluster exceeds "
                    f"{OFFSET_FRACTION_LIMIT:.0%} of max offset {self.max_offset_ns / 1e6:.0f} ms ({offsets}); "
                    f"not serving (leases, reads, writes) until the clocks agree again: check NTP on this host")
        return f"node {self.node_id}: clock offset back within {OFFSET_FRACTION_LIMIT:.0%} of max offset; serving again"
