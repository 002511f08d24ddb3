"""Order-preserving key encoding and row value encoding of the SQL layer.

SQL rows live in the KV store (ranges/keys.py) under keys `/table_id/index_id/key columns...`,
as in CockroachDB's pkg/util/encoding; the non-key columns of a row are the KV value.

Key layout. Every part is self-delimiting, so a key is the plain concatenation of its parts:
- table id, then index id: an unsigned varint whose longer encodings are larger (CockroachDB's
  EncodeUvarintAscending). 0..109 is the single byte 0x88+v; a larger v is the tag 0xf5+n
  followed by the n minimal big-endian bytes of v (n = 1..8).
- each column value: a tag byte naming its type (and, for INT, its length), then a payload:
    NULL   0x00
    BOOL   0x06 (false), 0x07 (true)
    INT    0x20..0x31: 0x29+n, then the n minimal big-endian bytes of v, for v >= 0;
           0x28-n, then the complement of the n minimal bytes of ~v (= -v-1), for v < 0.
    FLOAT  0x40, then 8 bytes: the IEEE 754 bits with the sign bit flipped (v >= 0) or with
           every bit flipped (v < 0). -0.0 is encoded as 0.0, and every NaN as one NaN.
    BYTES  0x50, TEXT 0x51 (UTF-8): the bytes with each 0x00 escaped as 0x00 0xff, then the
           terminator 0x00 0x01.
  A descending column is the bitwise complement of its whole ascending encoding, tag included.

Guarantees:
- Order: for values a, b of one type, a < b iff encode(a) < encode(b) (the reverse for a
  descending column), and a equals b iff the encodings are equal (NaN equals NaN and -0.0
  equals 0.0, as in PostgreSQL). Every value encoding is prefix-free, so keys order by table
  id, then index id, then lexicographically by column.
- NULL sorts before every non-NULL value: NULLS FIRST in an ascending column and NULLS LAST in
  a descending one, as in CockroachDB (PostgreSQL's defaults put NULLs last ascending).
  FLOAT order is PostgreSQL's: -inf < ... < -0.0 == 0.0 < ... < +inf < NaN.
- Round trip: decode_key(encode_key(t, i, vs)) == (t, i, vs), except that -0.0 decodes as
  0.0 and any NaN as float("nan"). Decoding is strict: it accepts only the canonical
  encoding (so keys and values correspond one to one) and raises ValueError otherwise.
- Every key starts with an id tag in [0x88, 0xfd]: at or above SYSTEM_KEY_MAX (keys starting
  with 0x00 or 0x01 are the system keyspace), below KEY_MAX (0xff 0xff), and above every ASCII
  byte, so the SQL keyspace [0x88, 0xfe) never meets ASCII keys written through the raw KV API.
- Tags say type and direction (ascending tags and their complements are disjoint), so keys
  are self-describing and `pretty_key` needs no schema.
- Row values: the byte ROW_FORMAT_V1, then a CBOR array of the columns in schema order; every
  value round-trips bit for bit (-0.0 and NaN included).

HAZARD: both layouts are persisted. Changing a tag byte, the id varint, the escape, the float
transform or the row format makes every existing store unreadable or missorted; change them
only with a migration (for rows: a new format version byte, decoding the old one too).
HAZARD: without `types`, encode_key infers each column's type from the Python value, so an int
given for a FLOAT column is encoded as an INT and sorts among INTs, not FLOATs. The SQL layer
must pass `types` (the schema) so that such a value is rejected.
HAZARD: a prefix of a column value does not give a prefix of its encoding (TEXT 'ab' ends with
a terminator), so `key_prefix(t, i, ["ab"])` does not cover 'abc': a LIKE 'ab%' scan needs a
span built otherwise.
HAZARD: keys are not length-checked here; the KV layer rejects keys above MAX_KEY_BYTES, so a
long TEXT or BYTES key column fails only at write time.
HAZARD: row values are positional: adding or dropping a column changes how every stored row
decodes (decode_row rejects a length mismatch); such a schema change must rewrite the rows or
introduce a new row format.
"""

from __future__ import annotations

import enum
import io
import math
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import cbor2

from ranges.keys import KEY_MAX, KEY_MIN, SYSTEM_KEY_MAX


class SqlType(enum.Enum):
    NULL = "NULL"  # A column (or expression) that holds only NULL.
    BOOL = "BOOL"
    INT = "INT"  # 64-bit signed.
    FLOAT = "FLOAT"  # 64-bit IEEE 754.
    TEXT = "TEXT"  # str, stored as UTF-8.
    BYTES = "BYTES"


INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
ID_MAX = (1 << 64) - 1
ROW_FORMAT_V1 = 0x01

# The Python type of each SQL type's non-NULL values (exact: a bool is not an INT).
_PYTHON_TYPES: dict[SqlType, type] = {
    SqlType.BOOL: bool,
    SqlType.INT: int,
    SqlType.FLOAT: float,
    SqlType.TEXT: str,
    SqlType.BYTES: bytes,
}

# Id varint tags.
_ID_TAG_MIN = 0x88
_ID_SMALL_MAX = 109
_ID_TAG_SMALL_MAX = _ID_TAG_MIN + _ID_SMALL_MAX  # 0xf5; 0xf5 + n (n = 1..8) for n payload bytes.
_ID_TAG_MAX = _ID_TAG_SMALL_MAX + 8

# Column value tags (ascending).
_TAG_NULL = 0x00
_TAG_FALSE = 0x06
_TAG_TRUE = 0x07
_TAG_INT_ZERO = 0x29
_TAG_INT_MIN = _TAG_INT_ZERO - 1 - 8
_TAG_INT_MAX = _TAG_INT_ZERO + 8
_TAG_FLOAT = 0x40
_TAG_BYTES = 0x50
_TAG_TEXT = 0x51

_ESCAPED_ZERO = b"\x00\xff"
_TERMINATOR = b"\x00\x01"
_SIGN_BIT = 1 << 63
_MASK64 = (1 << 64) - 1
_CANONICAL_NAN_BITS = 0x7FF8000000000000
_COMPLEMENT = bytes(range(255, -1, -1))

_ASCENDING_TAGS = frozenset(
    [_TAG_NULL, _TAG_FALSE, _TAG_TRUE, _TAG_FLOAT, _TAG_BYTES, _TAG_TEXT, *range(_TAG_INT_MIN, _TAG_INT_MAX + 1)]
)
_DESCENDING_TAGS = frozenset(0xFF - tag for tag in _ASCENDING_TAGS)
# The direction of a value is read off its tag (pretty_key, decode checks).
assert not _ASCENDING_TAGS & _DESCENDING_TAGS, "a tag would be ambiguous between directions"
# A key starts with a table id tag: it must be a user key, and sort below KEY_MAX.
assert SYSTEM_KEY_MAX <= bytes([_ID_TAG_MIN]) and bytes([_ID_TAG_MAX, 0xFF]) < KEY_MAX


def _complement(raw: bytes) -> bytes:
    return raw.translate(_COMPLEMENT)


def _minimal_length(magnitude: int) -> int:
    return (magnitude.bit_length() + 7) // 8


# ---------------------------------------------------------------------------------------
# Value checks


def check_value(value: object, sql_type: SqlType, where: str = "value") -> None:
    """Raise ValueError unless `value` is None or a valid non-NULL value of `sql_type`."""
    if not isinstance(sql_type, SqlType):
        raise ValueError(f"{where}: {sql_type!r} is not a SqlType")
    if value is None:
        return
    if sql_type is SqlType.NULL:
        raise ValueError(f"{where}: a NULL-typed column holds only None, got {value!r:.60}")
    expected = _PYTHON_TYPES[sql_type]
    if type(value) is not expected:  # Exact: bool subclasses int, and True is not an INT.
        raise ValueError(
            f"{where}: {sql_type.name} needs a Python {expected.__name__}, "
            f"got {type(value).__name__} {value!r:.60}"
        )
    if sql_type is SqlType.INT and not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{where}: INT {value} is outside the 64-bit signed range [{INT_MIN}, {INT_MAX}]")
    if sql_type is SqlType.TEXT:
        _check_utf8(value, where)


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{where}: TEXT {text!r:.60} is not valid Unicode (lone surrogate?): {error}") from None


def sql_type_of(value: object, where: str = "value") -> SqlType:
    """The SqlType a Python value is stored as (None is NULL); ValueError if it fits none."""
    if value is None:
        return SqlType.NULL
    for sql_type, python_type in _PYTHON_TYPES.items():
        if type(value) is python_type:
            check_value(value, sql_type, where)
            return sql_type
    supported = ", ".join(t.__name__ for t in _PYTHON_TYPES.values())
    raise ValueError(f"{where}: cannot store a {type(value).__name__} ({value!r:.60}); supported: None, {supported}")


# ---------------------------------------------------------------------------------------
# Ids


def _encode_id(ident: object, what: str) -> bytes:
    if type(ident) is not int or not 0 <= ident <= ID_MAX:
        raise ValueError(f"{what} must be an int in [0, 2**64 - 1], got {ident!r:.60}")
    if ident <= _ID_SMALL_MAX:
        return bytes([_ID_TAG_MIN + ident])
    length = _minimal_length(ident)
    return bytes([_ID_TAG_SMALL_MAX + length]) + ident.to_bytes(length, "big")


def _decode_id(key: bytes, pos: int, what: str) -> tuple[int, int]:
    """`(id, end)` of the id varint at `pos`."""
    tag = _byte_at(key, pos, what)
    if _ID_TAG_MIN <= tag <= _ID_TAG_SMALL_MAX:
        return tag - _ID_TAG_MIN, pos + 1
    if not _ID_TAG_SMALL_MAX < tag <= _ID_TAG_MAX:
        raise ValueError(
            f"byte 0x{tag:02x} at offset {pos} is not a {what} tag "
            f"(SQL keys encode ids with tags 0x{_ID_TAG_MIN:02x}..0x{_ID_TAG_MAX:02x})"
        )
    length = tag - _ID_TAG_SMALL_MAX
    ident = int.from_bytes(_take(key, pos + 1, length, what), "big")
    end = pos + 1 + length
    if _encode_id(ident, what) != key[pos:end]:
        raise ValueError(f"non-canonical {what} encoding at offset {pos}: {key[pos:end].hex()}")
    return ident, end


# ---------------------------------------------------------------------------------------
# Column values: encoding


def _encode_value(value: object, sql_type: SqlType, descending: bool) -> bytes:
    """The key encoding of a checked value (see `check_value`)."""
    ascending = _encode_ascending(value, sql_type)
    return _complement(ascending) if descending else ascending


def _encode_ascending(value: object, sql_type: SqlType) -> bytes:
    if value is None:
        return bytes([_TAG_NULL])
    match sql_type:
        case SqlType.BOOL:
            return bytes([_TAG_TRUE if value else _TAG_FALSE])
        case SqlType.INT:
            return _encode_int(value)
        case SqlType.FLOAT:
            return bytes([_TAG_FLOAT]) + _float_sort_bits(value).to_bytes(8, "big")
        case SqlType.TEXT:
            return _encode_escaped(_TAG_TEXT, value.encode("utf-8"))
        case SqlType.BYTES:
            return _encode_escaped(_TAG_BYTES, value)
    raise AssertionError(f"unchecked value {value!r:.60} for {sql_type}")


def _encode_int(value: int) -> bytes:
    if value >= 0:
        length = _minimal_length(value)
        return bytes([_TAG_INT_ZERO + length]) + value.to_bytes(length, "big")
    # ~value = -value - 1 >= 0: more bytes means more negative, so a smaller tag; within a
    # length the complement makes a larger magnitude sort lower.
    magnitude = ~value
    length = _minimal_length(magnitude)
    return bytes([_TAG_INT_ZERO - 1 - length]) + _complement(magnitude.to_bytes(length, "big"))


def _float_sort_bits(value: float) -> int:
    """IEEE bits as an unsigned int whose order is float order (NaN last, -0.0 == 0.0)."""
    if math.isnan(value):
        bits = _CANONICAL_NAN_BITS  # Every NaN payload collapses: NaN equals NaN.
    elif value == 0.0:
        bits = 0  # -0.0 equals 0.0, so they share one key.
    else:
        bits = struct.unpack(">Q", struct.pack(">d", value))[0]
    # Non-negative floats order like their bits; negative ones in reverse, and below them.
    return bits ^ _SIGN_BIT if bits < _SIGN_BIT else bits ^ _MASK64


def _sort_bits_to_float(sort_bits: int) -> float:
    bits = sort_bits ^ _SIGN_BIT if sort_bits >= _SIGN_BIT else sort_bits ^ _MASK64
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


def _encode_escaped(tag: int, raw: bytes) -> bytes:
    # 0x00 0xff sorts above the terminator 0x00 0x01, so a string sorts below its extensions.
    return bytes([tag]) + raw.replace(b"\x00", _ESCAPED_ZERO) + _TERMINATOR


# ---------------------------------------------------------------------------------------
# Column values: decoding


class _Decoded(NamedTuple):
    sql_type: SqlType
    value: object
    descending: bool
    end: int


def _byte_at(key: bytes, pos: int, what: str) -> int:
    if pos >= len(key):
        raise ValueError(f"key truncated: expected a {what} at offset {pos}, the key has {len(key)} bytes")
    return key[pos]


def _take(key: bytes, pos: int, length: int, what: str) -> bytes:
    if pos + length > len(key):
        raise ValueError(f"key truncated: {what} needs {length} bytes at offset {pos}, {len(key) - pos} remain")
    return key[pos : pos + length]


def _decode_value(key: bytes, inverted: bytes, pos: int) -> _Decoded:
    """The column value at `pos`; `inverted` is `_complement(key)`, computed once per key."""
    descending = _byte_at(key, pos, "column value") in _DESCENDING_TAGS
    sql_type, value, end = _decode_ascending(inverted if descending else key, pos)
    if _encode_value(value, sql_type, descending) != key[pos:end]:
        raise ValueError(f"non-canonical {sql_type.name} encoding at offset {pos}: {key[pos:end].hex()}")
    return _Decoded(sql_type, value, descending, end)


def _decode_ascending(buf: bytes, pos: int) -> tuple[SqlType, object, int]:
    tag = buf[pos]
    if tag == _TAG_NULL:
        return SqlType.NULL, None, pos + 1
    if tag in (_TAG_FALSE, _TAG_TRUE):
        return SqlType.BOOL, tag == _TAG_TRUE, pos + 1
    if _TAG_INT_MIN <= tag <= _TAG_INT_MAX:
        value, end = _decode_int(buf, pos)
        return SqlType.INT, value, end
    if tag == _TAG_FLOAT:
        sort_bits = int.from_bytes(_take(buf, pos + 1, 8, "FLOAT"), "big")
        return SqlType.FLOAT, _sort_bits_to_float(sort_bits), pos + 9
    if tag == _TAG_BYTES:
        raw, end = _decode_escaped(buf, pos, "BYTES")
        return SqlType.BYTES, raw, end
    if tag == _TAG_TEXT:
        raw, end = _decode_escaped(buf, pos, "TEXT")
        return SqlType.TEXT, _decode_utf8(raw, pos), end
    raise ValueError(f"unknown column value tag 0x{tag:02x} at offset {pos}")


def _decode_int(buf: bytes, pos: int) -> tuple[int, int]:
    tag = buf[pos]
    if tag >= _TAG_INT_ZERO:
        length = tag - _TAG_INT_ZERO
        return int.from_bytes(_take(buf, pos + 1, length, "INT"), "big"), pos + 1 + length
    length = _TAG_INT_ZERO - 1 - tag
    magnitude = int.from_bytes(_complement(_take(buf, pos + 1, length, "INT")), "big")
    return ~magnitude, pos + 1 + length


def _decode_escaped(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    """`(raw, end)` of the escaped string whose tag is at `pos`."""
    chunks = []
    start = pos + 1
    while True:
        zero = buf.find(b"\x00", start)
        if zero < 0 or zero + 1 >= len(buf):
            raise ValueError(f"key truncated: the {what} at offset {pos} has no terminator")
        chunks.append(buf[start:zero])
        marker = buf[zero + 1]
        if marker == _TERMINATOR[1]:
            return b"".join(chunks), zero + 2
        if marker != _ESCAPED_ZERO[1]:
            raise ValueError(f"bad escape 00 {marker:02x} at offset {zero} in the {what} at offset {pos}")
        chunks.append(b"\x00")
        start = zero + 2


def _decode_utf8(raw: bytes, pos: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"the TEXT at offset {pos} is not valid UTF-8: {error}") from None


# ---------------------------------------------------------------------------------------
# Keys


def encode_key(
    table_id: int,
    index_id: int,
    values: Sequence[object],
    descending: Sequence[bool] | None = None,
    *,
    types: Sequence[SqlType] | None = None,
) -> bytes:
    """The KV key `/table_id/index_id/values...`.

    `descending[i]` says column i is descending (default: all ascending). `types` is the
    schema of the columns; without it each type is inferred from the Python value (HAZARD).
    """
    return _encode_id(table_id, "table id") + _encode_id(index_id, "index id") + _encode_values(values, descending, types)


def key_prefix(
    table_id: int,
    index_id: int | None = None,
    values: Sequence[object] = (),
    descending: Sequence[bool] | None = None,
    *,
    types: Sequence[SqlType] | None = None,
) -> bytes:
    """The prefix of every key of the table, of one index, or of the index entries whose
    leading columns equal `values`. Scan `[prefix, prefix_end(prefix))`."""
    prefix = _encode_id(table_id, "table id")
    if index_id is None:
        if values:
            raise ValueError("key_prefix: values need an index_id")
        return prefix
    return prefix + _encode_id(index_id, "index id") + _encode_values(values, descending, types)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every byte string that starts with `prefix`."""
    if not isinstance(prefix, bytes) or not prefix:
        raise ValueError(f"prefix_end needs non-empty bytes, got {prefix!r:.60}")
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError(f"a prefix of only 0xff bytes has no end: {prefix!r:.60}")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def decode_key(
    key: bytes, types: Sequence[SqlType], descending: Sequence[bool] | None = None
) -> tuple[int, int, list]:
    """`(table_id, index_id, values)` of a whole key with columns `types` (and directions,
    default all ascending); ValueError if the key is not exactly such a key."""
    if not isinstance(key, bytes):
        raise ValueError(f"keys are bytes, got {type(key).__name__}")
    types = list(types)
    directions = _directions(descending, len(types))
    table_id, pos = _decode_id(key, 0, "table id")
    index_id, pos = _decode_id(key, pos, "index id")
    inverted = _complement(key)
    values = []
    for column, (sql_type, is_descending) in enumerate(zip(types, directions)):
        decoded = _decode_value(key, inverted, pos)
        _check_decoded(decoded, sql_type, is_descending, column, pos)
        values.append(decoded.value)
        pos = decoded.end
    if pos != len(key):
        raise ValueError(f"{len(key) - pos} bytes at offset {pos} follow the last of the {len(types)} columns")
    return table_id, index_id, values


def _check_decoded(decoded: _Decoded, sql_type: SqlType, descending: bool, column: int, pos: int) -> None:
    if not isinstance(sql_type, SqlType):
        raise ValueError(f"column {column}: {sql_type!r} is not a SqlType")
    if decoded.sql_type not in (SqlType.NULL, sql_type):
        raise ValueError(f"column {column}: expected {sql_type.name}, the key holds {decoded.sql_type.name} at offset {pos}")
    if decoded.descending != descending:
        expected, found = ("a descending", "an ascending") if descending else ("an ascending", "a descending")
        raise ValueError(f"column {column}: expected {expected} value, the key holds {found} one at offset {pos}")


def _encode_values(
    values: Sequence[object], descending: Sequence[bool] | None, types: Sequence[SqlType] | None
) -> bytes:
    values = list(values)
    directions = _directions(descending, len(values))
    column_types = _column_types(values, types)
    return b"".join(map(_encode_value, values, column_types, directions))


def _directions(descending: Sequence[bool] | None, count: int) -> list[bool]:
    if descending is None:
        return [False] * count
    directions = list(descending)
    if len(directions) != count:
        raise ValueError(f"descending has {len(directions)} entries for {count} columns")
    if not all(type(d) is bool for d in directions):
        raise ValueError(f"descending entries must be bools, got {directions!r:.80}")
    return directions


def _column_types(values: list, types: Sequence[SqlType] | None) -> list[SqlType]:
    if types is None:
        return [sql_type_of(value, f"column {i}") for i, value in enumerate(values)]
    types = list(types)
    if len(types) != len(values):
        raise ValueError(f"{len(values)} values for {len(types)} column types")
    for i, (value, sql_type) in enumerate(zip(values, types)):
        check_value(value, sql_type, f"column {i}")
    return types


# ---------------------------------------------------------------------------------------
# Pretty printing


def pretty_key(key: bytes, types_by_table_index: Mapping[tuple[int, int], Sequence[SqlType]] | None = None) -> str:
    """`/52/1/42/'abc'` for any byte string; never raises.

    Decodes as far as it can and shows the undecodable tail as `?` and hex escapes (range
    boundaries may be arbitrary keys or prefixes). With `types_by_table_index[(table, index)]`,
    a value whose type disagrees with its declared column is not trusted and starts the tail.
    """
    if not isinstance(key, bytes):
        return f"/?{key!r:.80}"
    if key == KEY_MIN:
        return "/Min"
    if key == KEY_MAX:
        return "/Max"
    if key == SYSTEM_KEY_MAX:
        return "/SystemMax"  # where the system keyspace (range 1) ends and user keys begin
    parts: list[str] = []
    pos = 0
    try:
        table_id, pos = _decode_id(key, pos, "table id")
        parts.append(str(table_id))
        index_id, pos = _decode_id(key, pos, "index id")
        parts.append(str(index_id))
    except ValueError:
        pass  # Everything from `pos` on is the undecodable tail.
    if len(parts) == 2:
        declared = list((types_by_table_index or {}).get((table_id, index_id), ()))
        pos = _pretty_values(key, pos, declared, parts)
    if pos < len(key):
        parts.append("?" + "".join(f"\\x{byte:02x}" for byte in key[pos:]))
    return "/" + "/".join(parts)


def _pretty_values(key: bytes, pos: int, declared: list, parts: list[str]) -> int:
    """Append the values from `pos` on to `parts`; return where decoding stopped."""
    inverted = _complement(key)
    column = 0
    while pos < len(key):
        try:
            decoded = _decode_value(key, inverted, pos)
        except ValueError:
            break  # Everything from `pos` on is the undecodable tail.
        if column < len(declared) and decoded.sql_type not in (SqlType.NULL, declared[column]):
            break
        parts.append(_pretty_value(decoded.value))
        pos = decoded.end
        column += 1
    return pos


def _pretty_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _pretty_float(value)
    if isinstance(value, str):
        return _quote_text(value)
    return repr(value)  # int; bytes as b'...'.


def _pretty_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)  # Always has a '.' or an exponent, so it never looks like an INT.


def _quote_text(text: str) -> str:
    escaped = []
    for char in text:
        if char in "'\\":
            escaped.append("\\" + char)
        elif char.isprintable():
            escaped.append(char)
        else:
            escaped.append(repr(char)[1:-1])  # \x00, \n, \u200b, ...
    return "'" + "".join(escaped) + "'"


# ---------------------------------------------------------------------------------------
# Row values


def encode_row(values: Sequence[object], types: Sequence[SqlType]) -> bytes:
    """The KV value holding the non-key columns `values` of schema `types`."""
    values = list(values)
    _check_row(values, types, "row")
    return bytes([ROW_FORMAT_V1]) + cbor2.dumps(values)


def decode_row(raw: bytes, types: Sequence[SqlType]) -> list:
    """The columns of a row value written by `encode_row` with the same `types`."""
    if not isinstance(raw, bytes) or not raw:
        raise ValueError(f"a row value is non-empty bytes, got {raw!r:.60}")
    if raw[0] != ROW_FORMAT_V1:
        raise ValueError(f"unknown row format version {raw[0]} (this build reads version {ROW_FORMAT_V1})")
    values = _load_one_cbor_item(raw[1:])
    if not isinstance(values, list):
        raise ValueError(f"a row value holds a CBOR array, got {type(values).__name__}")
    _check_row(values, types, "stored row")
    return values


def _check_row(values: list, types: Sequence[SqlType], what: str) -> None:
    types = list(types)
    if len(values) != len(types):
        raise ValueError(f"{what} has {len(values)} values for {len(types)} column types")
    for i, (value, sql_type) in enumerate(zip(values, types)):
        check_value(value, sql_type, f"{what} column {i}")


def _load_one_cbor_item(payload: bytes) -> object:
    stream = io.BytesIO(payload)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    # cbor2's errors are not all ValueErrors; a corrupt value may also hit the
    # decoder's own limits (deep nesting).
    except (cbor2.CBORError, ValueError, EOFError, RecursionError) as error:
        raise ValueError(f"row value is not valid CBOR: {error}") from None
    if stream.tell() != len(payload):
        raise ValueError(f"row value has {len(payload) - stream.tell()} bytes after its CBOR array")
    return item
