"""Multi-version reads and batched writes of user keys over the node's engine.

Each user key holds versions by timestamp under `ranges.keys.mvcc_key`; a version's value is
cbor `[0, value_bytes]` for a put or `[1]` for a deletion tombstone.

Guarantees:
- A read at `ts` returns the newest version at or below `ts`; a tombstone reads as absent.
- Reads go straight to the engine, so they see every write already written to it, and
  nothing that sits only in a caller's unwritten `WriteBatch`.
- Writes only append to a caller-owned `WriteBatch`; the caller writes it together with the
  range's applied index, which is what makes replay after a crash idempotent.
- `scan` does not decode versions it skips: older versions of a key already resolved, and
  versions newer than the read timestamp, are passed over by a byte-prefix (or byte-suffix)
  comparison, and after `SCAN_NEXTS_BEFORE_SEEK` of them in a row the scan re-seeks past them.

HAZARD: writing the same (key, ts) twice overwrites that version; MVCC history is only
immutable if the layers above never reuse a timestamp for a key with different data.
HAZARD: `export_span` materializes a whole span in memory; it is meant for ranges below the
split threshold, not for the whole keyspace.
HAZARD: `span_bytes` walks the span (O(versions)); cache its result (see the state machine).
"""

from __future__ import annotations

from typing import Iterator

import cbor2

from clock.timestamp import Timestamp
from paxos_groups.engine import Engine, WriteBatch
from ranges.keys import (
    TS_SUFFIX_BYTES,
    decode_inverted_ts,
    decode_mvcc_key,
    decode_mvcc_user_key,
    encode_inverted_ts,
    mvcc_key,
    mvcc_prefix_for,
    mvcc_span,
    prefix_end,
    validate_key,
    validate_value,
)

_PUT = 0
_TOMBSTONE = 1
_ENCODED_TOMBSTONE = cbor2.dumps([_TOMBSTONE])

# Scan tuning: stepping over a few irrelevant versions is cheaper than a new engine iterator
# (RocksDB seek); many in a row are cheaper to seek past. Pebble/CockroachDB do the same.
SCAN_NEXTS_BEFORE_SEEK = 8
# A limit on everything: one scan call returns at most this many rows.
SCAN_LIMIT_MAX = 1_000_000
# An exported version: [user_key, [wall_ns, logical], value bytes or None for a tombstone].
ExportedVersion = list


def encode_version_value(value: bytes | None) -> bytes:
    """The stored form of a version: a put of `value`, or a tombstone when None."""
    if value is None:
        return _ENCODED_TOMBSTONE
    assert isinstance(value, bytes), f"values are bytes, got {type(value)}"
    return cbor2.dumps([_PUT, value])


def decode_version_value(raw: bytes) -> bytes | None:
    decoded = cbor2.loads(raw)
    assert isinstance(decoded, list) and decoded, f"corrupt MVCC value {raw[:32]!r}"
    if decoded[0] == _TOMBSTONE:
        assert len(decoded) == 1, f"corrupt MVCC tombstone {raw[:32]!r}"
        return None
    assert decoded[0] == _PUT and len(decoded) == 2, f"corrupt MVCC value {raw[:32]!r}"
    assert isinstance(decoded[1], bytes), f"corrupt MVCC value {raw[:32]!r}"
    return decoded[1]


class MVCC:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- point reads ---------------------------------------------------------------------

    def get(self, key: bytes, ts: Timestamp) -> bytes | None:
        """The value of the newest version of `key` at or below `ts`; None if absent/deleted."""
        value, _ = self.get_with_ts(key, ts)
        return value

    def get_with_ts(self, key: bytes, ts: Timestamp) -> tuple[bytes | None, Timestamp | None]:
        """(value, version_ts) of the newest version at or below `ts`.

        A tombstone gives `(None, its ts)`; no version at all gives `(None, None)`.
        """
        assert isinstance(ts, Timestamp), f"read timestamp must be a Timestamp, got {type(ts)}"
        prefix = mvcc_prefix_for(key)
        found = self._engine.first_in(prefix + encode_inverted_ts(ts), prefix_end(prefix))
        if found is None:
            return None, None
        engine_key, raw = found
        version_ts = decode_inverted_ts(engine_key[-TS_SUFFIX_BYTES:])
        assert version_ts <= ts, f"read at {ts} found a newer version {version_ts}"
        return decode_version_value(raw), version_ts

    def latest_version_ts(self, key: bytes) -> Timestamp | None:
        """The timestamp of the newest version of `key` (tombstones included), or None."""
        prefix = mvcc_prefix_for(key)
        found = self._engine.first_in(prefix, prefix_end(prefix))
        if found is None:
            return None
        engine_key = found[0]
        assert engine_key.startswith(prefix), "first_in escaped its prefix"
        return decode_inverted_ts(engine_key[-TS_SUFFIX_BYTES:])

    # -- scans ---------------------------------------------------------------------------

    def scan(self, start: bytes, end: bytes, ts: Timestamp, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """Live `(key, value)` pairs of keys in `[start, end)` as of `ts`, ascending by key."""
        assert limit is None or 0 < limit <= SCAN_LIMIT_MAX, f"scan limit out of range: {limit}"
        assert start <= end, f"inverted scan span [{start!r}, {end!r})"
        row_limit = SCAN_LIMIT_MAX if limit is None else limit
        engine_start, engine_end = mvcc_span(start, end)
        rows: list[tuple[bytes, bytes]] = []
        cursor: bytes | None = engine_start
        while cursor is not None and len(rows) < row_limit:
            cursor = self._scan_run(cursor, engine_end, encode_inverted_ts(ts), rows, row_limit)
        return rows

    def _scan_run(
        self, cursor: bytes, engine_end: bytes, inv_ts: bytes, rows: list, row_limit: int
    ) -> bytes | None:
        """Scan one engine iterator from `cursor`, appending rows; return where to re-seek.

        Returns None when the span is exhausted or the row limit is reached.
        `inv_ts` is the inverted read timestamp: a version is visible iff its suffix >= inv_ts.
        """
        resolved_prefix = b"\x00"  # Never a real MVCC prefix (those start with \x03).
        skipped_in_a_row = 0
        versions = self._engine.scan(cursor, engine_end)
        try:
            for engine_key, raw in versions:
                if engine_key.startswith(resolved_prefix):
                    # An older version of the key just resolved: irrelevant, do not decode.
                    skipped_in_a_row += 1
                    if skipped_in_a_row >= SCAN_NEXTS_BEFORE_SEEK:
                        return prefix_end(resolved_prefix)
                    continue
                if engine_key[-TS_SUFFIX_BYTES:] < inv_ts:
                    # Newer than the read timestamp (inverted order): skip towards ts.
                    skipped_in_a_row += 1
                    if skipped_in_a_row >= SCAN_NEXTS_BEFORE_SEEK:
                        return engine_key[:-TS_SUFFIX_BYTES] + inv_ts
                    continue
                # The newest visible version of a new key: it decides the key.
                resolved_prefix = engine_key[:-TS_SUFFIX_BYTES]
                skipped_in_a_row = 0
                value = decode_version_value(raw)
                if value is not None:
                    rows.append((decode_mvcc_user_key(engine_key), value))
                    if len(rows) >= row_limit:
                        return None
            return None
        finally:
            # Release the engine iterator (RocksDB holds resources) before a re-seek opens another.
            close = getattr(versions, "close", None)
            if close is not None:
                close()

    # -- writes (into a caller-owned batch) ----------------------------------------------

    def put(self, batch: WriteBatch, key: bytes, ts: Timestamp, value: bytes) -> int:
        """Append a version of `key` at `ts`; return the bytes it adds (approximate size)."""
        validate_key(key)
        validate_value(value)
        engine_key = mvcc_key(key, ts)
        encoded = encode_version_value(value)
        batch.append((engine_key, encoded))
        return len(engine_key) + len(encoded)

    def replace(self, batch: WriteBatch, key: bytes, ts: Timestamp, value: bytes) -> int:
        """Put `value` at `ts` as the only version of `key` (older versions are removed): for
        system records read only at their latest version (node liveness), which would
        otherwise grow by a version per heartbeat."""
        for engine_key, _ in self._versions(key, key + b"\x00"):
            batch.append((engine_key, None))
        return self.put(batch, key, ts, value)

    def delete(self, batch: WriteBatch, key: bytes, ts: Timestamp) -> int:
        """Append a deletion tombstone of `key` at `ts`; return the bytes it adds."""
        validate_key(key)
        engine_key = mvcc_key(key, ts)
        batch.append((engine_key, _ENCODED_TOMBSTONE))
        return len(engine_key) + len(_ENCODED_TOMBSTONE)

    def clear_span(self, batch: WriteBatch, start: bytes, end: bytes) -> int:
        """Append deletions of every version in `[start, end)`; return how many."""
        count = 0
        for engine_key, _ in self._versions(start, end):
            batch.append((engine_key, None))
            count += 1
        return count

    # -- sizes and snapshots -------------------------------------------------------------

    def span_bytes(self, start: bytes, end: bytes) -> int:
        """Engine bytes (keys + values) of all versions in `[start, end)`."""
        return sum(len(k) + len(v) for k, v in self._versions(start, end))

    def export_span(self, start: bytes, end: bytes) -> list[ExportedVersion]:
        """Every version in `[start, end)`, cbor-friendly, in engine order."""
        exported: list[ExportedVersion] = []
        for engine_key, raw in self._versions(start, end):
            user_key, ts = decode_mvcc_key(engine_key)
            exported.append([user_key, ts.encode(), decode_version_value(raw)])
        return exported

    def import_span(self, batch: WriteBatch, exported: object) -> int:
        """Append every exported version to `batch`; raise ValueError on malformed input."""
        if not isinstance(exported, list):
            raise ValueError(f"exported MVCC data must be a list, got {type(exported).__name__}")
        for item in exported:
            key, ts, value = _decode_exported_version(item)
            batch.append((mvcc_key(key, ts), encode_version_value(value)))
        return len(exported)

    def _versions(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        engine_start, engine_end = mvcc_span(start, end)
        return self._engine.scan(engine_start, engine_end)


def _decode_exported_version(item: object) -> tuple[bytes, Timestamp, bytes | None]:
    if not (isinstance(item, list) and len(item) == 3):
        raise ValueError(f"an exported version is [key, ts, value], got {item!r:.80}")
    key, raw_ts, value = item
    try:
        validate_key(key)
        if value is not None:
            validate_value(value)
    except ValueError as e:
        raise ValueError(f"bad exported version: {e}") from None
    return key, Timestamp.decode(raw_ts), value
