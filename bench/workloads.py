"""YCSB core workloads A-F and the operation stream of `site.ycsb.workloads.CoreWorkload`.

`Workload` holds the properties of YCSB's `workloads/workloada` .. `workloadf` files;
`WORKLOADS` has the six presets. `CoreWorkload` turns one into a deterministic stream of
`Op`s from a seed, with YCSB's key choosers:

- zipfian: `ScrambledZipfianGenerator(insertstart, insertstart + insertcount + expectednewkeys)`
  where expectednewkeys = int(operationcount * insertproportion * 2.0) (YCSB's fudge factor),
  so keys inserted during the run can become popular without reshuffling the old ones;
- latest: `SkewedLatestGenerator` over the transaction insert counter (workload D);
- uniform: `UniformLongGenerator` over the loaded keys.
A chosen key number above the last *acknowledged* insert is drawn again (`nextKeynum`).

Record layout in the KV store (decision)
----------------------------------------
One KV pair per record: key `b"usertable/" + b"user<hash>"`, value the cbor2 encoding of
{"field0": bytes, ..., "field9": bytes}. A read (readallfields=true) is one `get`; a scan is
one range `scan` bounded by `b"usertable0"` ("/" + 1), so it never leaves the table.
The alternative, one KV pair per field (`usertable/<key>/<field>`), would make YCSB's
single-field update a blind single-key put, but every read a 10-key prefix scan, and reads
dominate A-F. So:

- UPDATE (writeallfields=false): YCSB writes one field. Ours is a blind `put` of the whole
  record: the chosen field's new value plus freshly generated values for the other fields.
  Same round trips as YCSB's single-field update and the same order of magnitude of bytes
  (~1 KB instead of ~100 B).
- READ-MODIFY-WRITE (workload F): a `get`, then a `put` of the record read back with the
  chosen field replaced: a true read-modify-write (inside a transaction once the client
  has one, see `bench.runner`).
- INSERT: a `put` of a full record.

Field values mimic YCSB's `RandomByteIterator`: printable ASCII between ' ' and '_'
(six random bits per byte), so compression ratios resemble YCSB's.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Literal

import cbor2

from bench.generators import (
    AcknowledgedCounterGenerator,
    ConstantIntegerGenerator,
    CounterGenerator,
    DiscreteGenerator,
    NumberGenerator,
    ScrambledZipfianGenerator,
    SkewedLatestGenerator,
    UniformLongGenerator,
    ZipfianGenerator,
    build_key_name,
)

# Operation kinds, named as YCSB names their measurements.
READ = "READ"
UPDATE = "UPDATE"
INSERT = "INSERT"
SCAN = "SCAN"
READ_MODIFY_WRITE = "READ-MODIFY-WRITE"
OP_KINDS = (READ, UPDATE, INSERT, SCAN, READ_MODIFY_WRITE)

RequestDistribution = Literal["zipfian", "latest", "uniform"]

# Bound on re-draws of a key number above the acknowledged inserts; YCSB loops forever.
# Hitting it means the chooser's keyspace and the acknowledged counter disagree: a bug.
KEY_REDRAWS_MAX = 1_000_000

# RandomByteIterator's alphabet: ' ' + (random & 63), i.e. ' ' .. '_'.
_PRINTABLE = bytes(0x20 + (b & 63) for b in range(256))


@dataclass(frozen=True)
class Workload:
    """The CoreWorkload properties of one YCSB workload file (YCSB's defaults otherwise)."""

    name: str
    read_proportion: float = 0.95
    update_proportion: float = 0.05
    insert_proportion: float = 0.0
    scan_proportion: float = 0.0
    read_modify_write_proportion: float = 0.0
    request_distribution: RequestDistribution = "uniform"
    record_count: int = 1000
    field_count: int = 10
    field_length: int = 100
    read_all_fields: bool = True
    write_all_fields: bool = False
    insert_order: Literal["hashed", "ordered"] = "hashed"
    min_scan_length: int = 1
    max_scan_length: int = 1000
    scan_length_distribution: Literal["uniform", "zipfian"] = "uniform"
    zero_padding: int = 1
    insert_start: int = 0
    table: str = "usertable"
    field_name_prefix: str = "field"

    def __post_init__(self) -> None:
        total = (
            self.read_proportion
            + self.update_proportion
            + self.insert_proportion
            + self.scan_proportion
            + self.read_modify_write_proportion
        )
        assert total > 0, f"workload {self.name}: all proportions are zero"
        assert self.record_count >= 1, f"workload {self.name}: record_count {self.record_count}"
        assert self.field_count >= 1, f"workload {self.name}: field_count {self.field_count}"
        assert 1 <= self.min_scan_length <= self.max_scan_length, f"workload {self.name}: scan lengths"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f"{self.field_name_prefix}{i}" for i in range(self.field_count))


# YCSB's workloads/workloada .. workloadf (recordcount and operationcount come from the run).
WORKLOADS: dict[str, Workload] = {
    "a": Workload("a", read_proportion=0.5, update_proportion=0.5, request_distribution="zipfian"),
    "b": Workload("b", read_proportion=0.95, update_proportion=0.05, request_distribution="zipfian"),
    "c": Workload("c", read_proportion=1.0, update_proportion=0.0, request_distribution="zipfian"),
    "d": Workload(
        "d", read_proportion=0.95, update_proportion=0.0, insert_proportion=0.05,
        request_distribution="latest",
    ),
    "e": Workload(
        "e", read_proportion=0.0, update_proportion=0.0, scan_proportion=0.95,
        insert_proportion=0.05, request_distribution="zipfian", max_scan_length=100,
        scan_length_distribution="uniform",
    ),
    "f": Workload(
        "f", read_proportion=0.5, update_proportion=0.0, read_modify_write_proportion=0.5,
        request_distribution="zipfian",
    ),
}


def workload_preset(name: str, **overrides: object) -> Workload:
    """One of the core workloads "a".."f" (case-insensitive), with properties overridden."""
    key = name.lower().removeprefix("workload")
    if key not in WORKLOADS:
        raise ValueError(f"unknown YCSB workload {name!r}; expected one of a, b, c, d, e, f")
    return dataclasses.replace(WORKLOADS[key], **overrides)


@dataclass(frozen=True)
class Op:
    """One operation as CoreWorkload would issue it to a YCSB `DB` binding.

    `fields`: the fields to read (None = all, YCSB's readallfields=true).
    `values`: the fields to write (INSERT: all; UPDATE / READ-MODIFY-WRITE: one).
    `keynum`: the key number before hashing; a transaction INSERT acknowledges it when done.
    (With several client processes it is this process's own numbering; `key` is named after
    `CoreWorkload.physical_keynum(keynum)`.)
    """

    kind: str
    key: str
    keynum: int
    fields: tuple[str, ...] | None = None
    values: dict[str, bytes] | None = field(default=None, repr=False)
    scan_length: int | None = None


def record_key(table: str, key: str) -> bytes:
    """The KV key of a record: b"<table>/<key>"."""
    return table.encode() + b"/" + key.encode()


def table_end_key(table: str) -> bytes:
    """The first KV key after every b"<table>/..." key ("0" is "/" + 1)."""
    return table.encode() + b"0"


def encode_record(values: dict[str, bytes]) -> bytes:
    assert values, "a record has at least one field"
    return cbor2.dumps(values)


def decode_record(data: bytes) -> dict[str, bytes]:
    record = cbor2.loads(data)
    assert isinstance(record, dict), f"a record decodes to a dict, got {type(record).__name__}"
    return record


def _sub_rng(seed: int | str, purpose: str) -> random.Random:
    # One stream per purpose, so e.g. the operation mix does not shift when key choices
    # consume a different number of draws (string seeds hash deterministically).
    return random.Random(f"{seed}/{purpose}")


class CoreWorkload:
    """`site.ycsb.workloads.CoreWorkload`: the load and transaction operation streams.

    Single-threaded by design: the trio runner calls it from one thread, so the stream is
    a function of the seed and the order of calls and acknowledgements.
    """

    def __init__(
        self,
        workload: Workload,
        *,
        seed: int | str,
        operation_count: int | None = None,
        client_index: int = 0,
        client_count: int = 1,
    ) -> None:
        assert client_count >= 1 and 0 <= client_index < client_count, (
            f"client {client_index} of {client_count}"
        )
        self.workload = workload
        self.seed = seed
        # One of `client_count` client processes running the same workload (`--processes`):
        # see `physical_keynum`.
        self.client_index = client_index
        self.client_count = client_count
        self.field_names = workload.field_names
        self.ordered_inserts = workload.insert_order == "ordered"
        self._insert_count = workload.record_count - workload.insert_start
        assert self._insert_count >= 1, "record_count must exceed insert_start"
        self._value_rng = _sub_rng(seed, "values")
        self.key_sequence = CounterGenerator(workload.insert_start)
        self.operation_chooser = self._operation_chooser()
        self.transaction_insert_key_sequence = AcknowledgedCounterGenerator(workload.record_count)
        self.key_chooser = self._key_chooser(operation_count or 0)
        self.field_chooser = UniformLongGenerator(
            0, workload.field_count - 1, rng=_sub_rng(seed, "field")
        )
        self.scan_length_chooser = self._scan_length_chooser()
        self.field_length_generator = ConstantIntegerGenerator(workload.field_length)

    # -- setup, as CoreWorkload.init ------------------------------------------------------

    def _operation_chooser(self) -> DiscreteGenerator:
        w = self.workload
        chooser = DiscreteGenerator(rng=_sub_rng(self.seed, "operation"))
        for weight, kind in (
            (w.read_proportion, READ),
            (w.update_proportion, UPDATE),
            (w.insert_proportion, INSERT),
            (w.scan_proportion, SCAN),
            (w.read_modify_write_proportion, READ_MODIFY_WRITE),
        ):
            if weight > 0:
                chooser.add_value(weight, kind)
        return chooser

    def _key_chooser(self, operation_count: int) -> NumberGenerator:
        w = self.workload
        rng = _sub_rng(self.seed, "key")
        if w.request_distribution == "uniform":
            return UniformLongGenerator(w.insert_start, w.insert_start + self._insert_count - 1, rng=rng)
        if w.request_distribution == "zipfian":
            # Without an operation count (a timed run) YCSB predicts no new keys either.
            expected_new_keys = int(operation_count * w.insert_proportion * 2.0)
            return ScrambledZipfianGenerator(
                w.insert_start, w.insert_start + self._insert_count + expected_new_keys, rng=rng
            )
        if w.request_distribution == "latest":
            if w.record_count < 2:
                raise ValueError("the latest distribution needs record_count >= 2")
            return SkewedLatestGenerator(self.transaction_insert_key_sequence, rng=rng)
        raise ValueError(f"unknown request distribution {w.request_distribution!r}")

    def _scan_length_chooser(self) -> NumberGenerator:
        w = self.workload
        rng = _sub_rng(self.seed, "scanlength")
        if w.scan_length_distribution == "uniform":
            return UniformLongGenerator(w.min_scan_length, w.max_scan_length, rng=rng)
        if w.scan_length_distribution == "zipfian":
            return ZipfianGenerator(w.min_scan_length, w.max_scan_length, rng=rng)
        raise ValueError(f"unknown scan length distribution {w.scan_length_distribution!r}")

    # -- values -----------------------------------------------------------------------------

    def _random_field_value(self) -> bytes:
        length = self.field_length_generator.next_value()
        return self._value_rng.randbytes(length).translate(_PRINTABLE)

    def build_values(self) -> dict[str, bytes]:
        """New data for every field (YCSB's buildValues)."""
        return {name: self._random_field_value() for name in self.field_names}

    def build_single_value(self) -> dict[str, bytes]:
        """New data for one random field (YCSB's buildSingleValue)."""
        name = self.field_names[self.field_chooser.next_value()]
        return {name: self._random_field_value()}

    def _write_values(self) -> dict[str, bytes]:
        return self.build_values() if self.workload.write_all_fields else self.build_single_value()

    def _read_fields(self) -> tuple[str, ...] | None:
        if self.workload.read_all_fields:
            return None
        return (self.field_names[self.field_chooser.next_value()],)

    def full_record_for_update(self, op: Op) -> dict[str, bytes]:
        """The whole record an UPDATE writes: op.values over fresh values (see module doc)."""
        assert op.kind == UPDATE and op.values, f"not an update: {op!r}"
        record = {name: self._random_field_value() for name in self.field_names if name not in op.values}
        record.update(op.values)
        assert len(record) == len(self.field_names), "an updated record keeps every field"
        return record

    # -- keys -------------------------------------------------------------------------------

    def key_name(self, keynum: int) -> str:
        return build_key_name(keynum, self.workload.zero_padding, self.ordered_inserts)

    def record_key(self, key: str) -> bytes:
        return record_key(self.workload.table, key)

    @property
    def table_end_key(self) -> bytes:
        return table_end_key(self.workload.table)

    def physical_keynum(self, keynum: int) -> int:
        """The key number behind a run-phase key number of this client process.

        With one client process, the key number itself. With `client_count` processes, each
        inserts into its own interleaved share of the key numbers past the loaded records
        (record_count + i * client_count + client_index for its i-th insert), so no two
        processes insert the same key, and each one's reads pick loaded records or its own
        acknowledged inserts: P processes are P independent YCSB clients, as when YCSB users
        run several client machines with disjoint insert ranges.
        """
        base = self.workload.record_count
        if self.client_count == 1 or keynum < base:
            return keynum
        return base + (keynum - base) * self.client_count + self.client_index

    def next_keynum(self) -> int:
        """A key number no higher than the last acknowledged insert (YCSB's nextKeynum)."""
        limit = self.transaction_insert_key_sequence.last_value()
        for _ in range(KEY_REDRAWS_MAX):
            keynum = self.key_chooser.next_value()
            if keynum <= limit:
                return keynum
        raise AssertionError(f"no key number <= {limit} in {KEY_REDRAWS_MAX} draws")

    # -- the operation streams ------------------------------------------------------------

    def next_load_op(self) -> Op:
        """The next INSERT of the load phase (YCSB's doInsert)."""
        keynum = self.key_sequence.next_value()
        return Op(INSERT, self.key_name(keynum), keynum, values=self.build_values())

    def next_op(self) -> Op:
        """The next operation of the run phase (YCSB's doTransaction)."""
        kind = self.operation_chooser.next_value()
        if kind == INSERT:
            keynum = self.transaction_insert_key_sequence.next_value()
            return Op(INSERT, self.key_name(self.physical_keynum(keynum)), keynum, values=self.build_values())
        keynum = self.next_keynum()
        key = self.key_name(self.physical_keynum(keynum))
        if kind == READ:
            return Op(READ, key, keynum, fields=self._read_fields())
        if kind == UPDATE:
            return Op(UPDATE, key, keynum, values=self._write_values())
        if kind == SCAN:
            scan_length = self.scan_length_chooser.next_value()
            return Op(SCAN, key, keynum, fields=self._read_fields(), scan_length=scan_length)
        assert kind == READ_MODIFY_WRITE, f"unknown operation {kind!r}"
        fields = self._read_fields()
        return Op(READ_MODIFY_WRITE, key, keynum, fields=fields, values=self._write_values())

    def acknowledge_insert(self, op: Op) -> None:
        """Mark a run-phase INSERT finished (ok or not, as YCSB's `finally`) so reads may pick it."""
        assert op.kind == INSERT, f"only inserts are acknowledged, got {op.kind}"
        self.transaction_insert_key_sequence.acknowledge(op.keynum)
