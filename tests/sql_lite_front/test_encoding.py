"""SQL key and row value encoding: order preservation, round trips, prefixes, pretty printing, errors."""

import math
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ranges.keys import KEY_MAX, SYSTEM_KEY_MAX, validate_user_key
from sql_lite_front.encoding import (
    ID_MAX,
    INT_MAX,
    INT_MIN,
    ROW_FORMAT_V1,
    SqlType,
    decode_key,
    decode_row,
    encode_key,
    encode_row,
    key_prefix,
    prefix_end,
    pretty_key,
)

fast = settings(max_examples=200, deadline=None)

ints = st.integers(INT_MIN, INT_MAX) | st.sampled_from([INT_MIN, INT_MIN + 1, -257, -256, -255, -1, 0, 1, 255, 256, INT_MAX])
floats = st.floats() | st.sampled_from([-0.0, 0.0, math.inf, -math.inf, math.nan, -math.nan, 5e-324, -5e-324])
# Small alphabets make shared prefixes, zero bytes and escape collisions likely.
texts = st.text() | st.text(alphabet="\x00\x01a\xff\u0100\U0001f600", max_size=6)
binaries = st.binary(max_size=16) | st.lists(st.sampled_from([b"\x00", b"\x01", b"\xff", b"a"]), max_size=6).map(b"".join)
NON_NULL = {
    SqlType.BOOL: st.booleans(),
    SqlType.INT: ints,
    SqlType.FLOAT: floats,
    SqlType.TEXT: texts,
    SqlType.BYTES: binaries,
}
ALL_TYPES = list(SqlType)
ids = st.integers(0, ID_MAX) | st.integers(0, 300) | st.sampled_from([109, 110, 255, 256, 2**63, ID_MAX])


def values_of(sql_type):
    if sql_type is SqlType.NULL:
        return st.none()
    return st.none() | NON_NULL[sql_type]


def sort_key(value, sql_type):
    """SQL order of one column: NULL first, -0.0 == 0.0, NaN last (and equal to NaN)."""
    if value is None:
        return (0,)
    if sql_type is SqlType.FLOAT and math.isnan(value):
        return (1, 1)
    if sql_type is SqlType.FLOAT:
        return (1, 0, value)
    return (1, value)


def cmp(a, b):
    return (a > b) - (a < b)


def row_cmp(row_a, row_b, types, descending):
    for a, b, sql_type, desc in zip(row_a, row_b, types, descending):
        order = cmp(sort_key(a, sql_type), sort_key(b, sql_type))
        if order:
            return -order if desc else order
    return 0


def same(a, b):
    """Equality of decoded values, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@st.composite
def schemas(draw, max_columns=4):
    types = draw(st.lists(st.sampled_from(ALL_TYPES), min_size=1, max_size=max_columns))
    descending = draw(st.lists(st.booleans(), min_size=len(types), max_size=len(types)))
    return types, descending


@st.composite
def rows(draw, types):
    return [draw(values_of(t)) for t in types]


@st.composite
def related_rows(draw, types):
    """Two rows that often share leading columns, so later columns decide the order."""
    first = draw(rows(types))
    second = [value if draw(st.booleans()) else draw(values_of(t)) for value, t in zip(first, types)]
    return first, second


# -- order preservation ----------------------------------------------------------------


@pytest.mark.parametrize("sql_type", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("desc", [False, True], ids=["asc", "desc"])
def test_single_column_order_is_value_order(sql_type, desc):
    @fast
    @given(values_of(sql_type), values_of(sql_type))
    def check(a, b):
        key_a = encode_key(52, 1, [a], [desc], types=[sql_type])
        key_b = encode_key(52, 1, [b], [desc], types=[sql_type])
        expected = cmp(sort_key(a, sql_type), sort_key(b, sql_type))
        assert cmp(key_a, key_b) == (-expected if desc else expected), (a, b, key_a, key_b)

    check()


@fast
@given(st.data())
def test_composite_keys_order_lexicographically_by_column(data):
    types, descending = data.draw(schemas())
    row_a, row_b = data.draw(related_rows(types))
    key_a = encode_key(7, 2, row_a, descending, types=types)
    key_b = encode_key(7, 2, row_b, descending, types=types)
    assert cmp(key_a, key_b) == row_cmp(row_a, row_b, types, descending)


@fast
@given(st.data())
def test_values_are_prefix_free(data):
    """No encoded value is a prefix of another of the same column: what makes composites work."""
    types, descending = data.draw(schemas(max_columns=1))
    a, b = data.draw(related_rows(types))
    key_a = encode_key(1, 1, a, descending, types=types)
    key_b = encode_key(1, 1, b, descending, types=types)
    assume(key_a != key_b)
    assert not key_a.startswith(key_b) and not key_b.startswith(key_a)


@fast
@given(ids, ids, ids, ids)
def test_ids_order_first(table_a, index_a, table_b, index_b):
    key_a = encode_key(table_a, index_a, ["zzz"])
    key_b = encode_key(table_b, index_b, [""])
    assert cmp(key_a, key_b) == cmp((table_a, index_a, 1), (table_b, index_b, 0))


def test_float_order_matches_postgres():
    ordered = [None, -math.inf, -1e308, -1.0, -5e-324, 0.0, 5e-324, 1.0, 1e308, math.inf, math.nan]
    keys = [encode_key(1, 1, [v], types=[SqlType.FLOAT]) for v in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_minus_zero_and_all_nans_share_one_key():
    assert encode_key(1, 1, [-0.0]) == encode_key(1, 1, [0.0])
    negative_nan = struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0]
    assert math.isnan(negative_nan)
    assert encode_key(1, 1, [negative_nan]) == encode_key(1, 1, [math.nan])


def test_null_first_ascending_last_descending():
    for sql_type, value in [(SqlType.INT, INT_MIN), (SqlType.BOOL, False), (SqlType.BYTES, b""), (SqlType.FLOAT, -math.inf)]:
        null_asc, value_asc = (encode_key(1, 1, [v], types=[sql_type]) for v in (None, value))
        null_desc, value_desc = (encode_key(1, 1, [v], [True], types=[sql_type]) for v in (None, value))
        assert null_asc < value_asc and null_desc > value_desc


# -- round trips and keyspace ------------------------------------------------------------


@fast
@given(st.data(), ids, ids)
def test_key_round_trip(data, table_id, index_id):
    types, descending = data.draw(schemas())
    row = data.draw(rows(types))
    key = encode_key(table_id, index_id, row, descending, types=types)
    decoded_table, decoded_index, decoded = decode_key(key, types, descending)
    assert (decoded_table, decoded_index) == (table_id, index_id)
    assert all(same(a, b) for a, b in zip(decoded, row)) and len(decoded) == len(row)
    # Inference gives the same key as the schema for values of the right Python type.
    assert encode_key(table_id, index_id, row, descending) == key


@fast
@given(st.data(), ids, ids)
def test_every_key_is_a_user_key(data, table_id, index_id):
    types, descending = data.draw(schemas())
    key = encode_key(table_id, index_id, data.draw(rows(types)), descending, types=types)
    assert SYSTEM_KEY_MAX <= key < KEY_MAX and key[0] >= 0x02
    if len(key) <= 4096:
        validate_user_key(key)


def test_layout_is_stable():
    """The bytes are persisted: this pins them (see the module docstring's HAZARD)."""
    assert encode_key(52, 1, [42, "abc"]) == bytes.fromhex("bc89" "2a2a" "51616263" "0001")
    assert encode_key(110, 256, []) == bytes.fromhex("f66e" "f70100")
    assert encode_key(0, 0, [None, True, False, -1, 0, b"\x00"]) == bytes.fromhex("8888" "00" "07" "06" "28" "29" "5000ff0001")
    assert encode_key(0, 0, [1.0]) == bytes.fromhex("88" "88" "40" "bff0000000000000")
    assert encode_key(0, 0, [None, 0], [True, True]) == bytes.fromhex("8888" "ff" "d6")
    assert encode_key(0, 0, [INT_MIN, INT_MAX]) == bytes.fromhex("8888" "20" "8000000000000000" "31" "7fffffffffffffff")


# -- prefixes ----------------------------------------------------------------------------


def test_prefix_end_examples():
    assert prefix_end(b"\x88") == b"\x89"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(key_prefix(52, 1)) == key_prefix(52, 2)
    for bad in (b"", b"\xff\xff", "abc"):
        with pytest.raises(ValueError):
            prefix_end(bad)


@fast
@given(st.binary(min_size=1, max_size=6).filter(lambda p: p.strip(b"\xff") != b""), st.binary(max_size=8))
def test_prefix_end_is_the_tightest_bound(prefix, other):
    end = prefix_end(prefix)
    assert prefix + other < end
    # Everything between the prefix and its end starts with the prefix.
    if prefix <= other < end:
        assert other.startswith(prefix)
    assert not end.startswith(prefix)


@fast
@given(st.data(), ids, ids)
def test_key_prefix_spans_cover_exactly_their_keys(data, table_id, index_id):
    types, descending = data.draw(schemas())
    row = data.draw(rows(types))
    key = encode_key(table_id, index_id, row, descending, types=types)
    for cut in range(len(row) + 1):
        prefix = key_prefix(table_id, index_id, row[:cut], descending[:cut], types=types[:cut])
        assert key.startswith(prefix) and prefix <= key < prefix_end(prefix)
    table_prefix = key_prefix(table_id)
    assert table_prefix <= key < prefix_end(table_prefix)
    if table_id < ID_MAX:
        assert not key.startswith(key_prefix(table_id + 1)) and key < key_prefix(table_id + 1)


def test_key_prefix_of_a_value_is_not_a_value_prefix():
    # Documented HAZARD: 'ab' is a complete value, so its prefix does not cover 'abc'.
    assert not encode_key(1, 1, ["abc"]).startswith(key_prefix(1, 1, ["ab"]))


def test_key_prefix_values_need_an_index():
    with pytest.raises(ValueError, match="index_id"):
        key_prefix(1, None, [1])


# -- pretty printing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, expected",
    [
        (encode_key(52, 1, [42, "abc"]), "/52/1/42/'abc'"),
        (encode_key(52, 1, [None, True, False, -7]), "/52/1/NULL/true/false/-7"),
        (encode_key(52, 1, [1.0, math.inf, -math.inf, math.nan]), "/52/1/1.0/+Inf/-Inf/NaN"),
        (encode_key(52, 1, [b"\x00a", "it's\n"]), "/52/1/b'\\x00a'/'it\\'s\\n'"),
        (encode_key(52, 1, [42, "abc"], [True, True]), "/52/1/42/'abc'"),
        (encode_key(1000, 70000, []), "/1000/70000"),
        (key_prefix(52), "/52"),
        (b"", "/Min"),
        (KEY_MAX, "/Max"),
        (b"\x01abc", "/?\\x01\\x61\\x62\\x63"),
        (encode_key(52, 1, [42, "abc"])[:-1], "/52/1/42/?\\x51\\x61\\x62\\x63\\x00"),
        (prefix_end(encode_key(52, 1, ["abc"])), "/52/1/?\\x51\\x61\\x62\\x63\\x00\\x02"),
        (key_prefix(52) + b"\xff", "/52/?\\xff"),
    ],
)
def test_pretty_key(key, expected):
    assert pretty_key(key) == expected


def test_pretty_key_distrusts_values_that_contradict_the_schema():
    key = encode_key(52, 1, [42, "abc"])
    assert pretty_key(key, {(52, 1): [SqlType.INT, SqlType.TEXT]}) == "/52/1/42/'abc'"
    assert pretty_key(key, {(52, 1): [SqlType.TEXT]}) == "/52/1/?\\x2a\\x2a\\x51\\x61\\x62\\x63\\x00\\x01"
    assert pretty_key(key, {(99, 1): [SqlType.TEXT]}) == "/52/1/42/'abc'"


@fast
@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"\x00", b"\x01", b"\xff", b"\x88", b"\x2a", b"\x51a", b"\xd6"]), max_size=10).map(b"".join))
def test_pretty_key_never_raises_on_garbage(key):
    text = pretty_key(key)
    assert isinstance(text, str) and text.startswith("/")


@fast
@given(st.data())
def test_pretty_key_of_truncated_keys_keeps_the_decodable_head(data):
    types, descending = data.draw(schemas())
    row = data.draw(rows(types))
    key = encode_key(52, 1, row, descending, types=types)
    assert pretty_key(key) == pretty_key(key, {(52, 1): types})
    # Where each column's encoding ends: a cut there is a whole (shorter) key.
    boundaries = [len(key_prefix(52, 1, row[:j], descending[:j], types=types[:j])) for j in range(len(row) + 1)]
    for cut in range(2, len(key)):
        last_whole = max(b for b in boundaries if b <= cut)
        tail = "".join(f"\\x{byte:02x}" for byte in key[last_whole:cut])
        expected = pretty_key(key[:last_whole]) + (f"/?{tail}" if tail else "")
        assert pretty_key(key[:cut]) == expected


# -- row values --------------------------------------------------------------------------


@fast
@given(st.data())
def test_row_round_trip(data):
    types = data.draw(st.lists(st.sampled_from(ALL_TYPES), max_size=6))
    row = data.draw(rows(types))
    decoded = decode_row(encode_row(row, types), types)
    assert len(decoded) == len(row) and all(same(a, b) for a, b in zip(decoded, row))
    # Row values keep -0.0 (only keys fold it into 0.0).
    for a, b in zip(decoded, row):
        if isinstance(b, float) and not math.isnan(b):
            assert math.copysign(1, a) == math.copysign(1, b)


def test_row_format_starts_with_its_version():
    assert encode_row([1, None], [SqlType.INT, SqlType.TEXT])[0] == ROW_FORMAT_V1


@fast
@given(st.binary(max_size=30))
def test_decode_row_of_garbage_raises_only_value_error(raw):
    try:
        decode_row(bytes([ROW_FORMAT_V1]) + raw, [SqlType.INT, SqlType.TEXT])
    except ValueError:
        pass


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "non-empty bytes"),
        (b"\x02\x80", "unknown row format version 2"),
        (b"\x01", "not valid CBOR"),
        (b"\x01\x82\x01", "not valid CBOR"),
        (b"\x01\x82\x01\xf6\x00", "1 bytes after"),
        (b"\x01\x01", "CBOR array"),
        (b"\x01\x81\x01", "1 values for 2 column types"),
        (b"\x01\x82\x61x\xf6", "column 0: INT needs a Python int, got str"),
        (b"\x01\x82\x1b\xff\xff\xff\xff\xff\xff\xff\xff\xf6", "outside the 64-bit signed range"),
    ],
)
def test_decode_row_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        decode_row(raw, [SqlType.INT, SqlType.TEXT])


def test_encode_row_errors():
    with pytest.raises(ValueError, match="TEXT needs a Python str, got int"):
        encode_row([1], [SqlType.TEXT])
    with pytest.raises(ValueError, match="2 values for 1 column types"):
        encode_row([1, 2], [SqlType.INT])


# -- encoding errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, sql_type, message",
    [
        (INT_MAX + 1, SqlType.INT, "outside the 64-bit signed range"),
        (INT_MIN - 1, SqlType.INT, "outside the 64-bit signed range"),
        (True, SqlType.INT, "INT needs a Python int, got bool"),
        (1, SqlType.FLOAT, "FLOAT needs a Python float, got int"),
        (b"x", SqlType.TEXT, "TEXT needs a Python str, got bytes"),
        ("x", SqlType.BYTES, "BYTES needs a Python bytes, got str"),
        (bytearray(b"x"), SqlType.BYTES, "BYTES needs a Python bytes, got bytearray"),
        (1, SqlType.BOOL, "BOOL needs a Python bool, got int"),
        (1, SqlType.NULL, "holds only None"),
        ("\ud800", SqlType.TEXT, "lone surrogate"),
        (1, "INT", "not a SqlType"),
    ],
)
def test_value_that_does_not_fit_its_type(value, sql_type, message):
    with pytest.raises(ValueError, match=message):
        encode_key(1, 1, [value], types=[sql_type])
    with pytest.raises(ValueError, match=message):
        encode_row([value], [sql_type])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: encode_key(1, 1, [2**63]), "column 0: INT 9223372036854775808 is outside"),
        (lambda: encode_key(1, 1, [[1]]), "cannot store a list"),
        (lambda: encode_key(-1, 1, []), "table id must be an int"),
        (lambda: encode_key(1, ID_MAX + 1, []), "index id must be an int"),
        (lambda: encode_key(True, 1, []), "table id must be an int"),
        (lambda: encode_key(1, 1, [1, 2], [True]), "1 entries for 2 columns"),
        (lambda: encode_key(1, 1, [1], [1]), "must be bools"),
        (lambda: encode_key(1, 1, [1], types=[SqlType.INT, SqlType.INT]), "1 values for 2 column types"),
    ],
)
def test_encode_key_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- decoding errors ---------------------------------------------------------------------

I, T, F = SqlType.INT, SqlType.TEXT, SqlType.FLOAT


@pytest.mark.parametrize(
    "key, types, message",
    [
        (b"", [], "truncated: expected a table id at offset 0"),
        (b"\x01x", [], "0x01 at offset 0 is not a table id tag"),
        (b"\xbc", [], "truncated: expected a index id at offset 1"),
        (b"\xf7\x01", [], "index id|table id needs 2 bytes"),
        (b"\xf6\x05\x88", [], "non-canonical table id"),
        (bytes.fromhex("bc89"), [I], "truncated: expected a column value at offset 2"),
        (bytes.fromhex("bc89" "2b"), [I], "INT needs 2 bytes"),
        (bytes.fromhex("bc89" "2a00"), [I], "non-canonical INT"),
        (bytes.fromhex("bc89" "27ff"), [I], "non-canonical INT"),
        (bytes.fromhex("bc89" "40" "7fffffffffffffff"), [F], "non-canonical FLOAT"),  # -0.0
        (bytes.fromhex("bc89" "40" "fff8000000000001"), [F], "non-canonical FLOAT"),  # another NaN
        (bytes.fromhex("bc89" "40" "00"), [F], "FLOAT needs 8 bytes"),
        (bytes.fromhex("bc89" "516162"), [T], "has no terminator"),
        (bytes.fromhex("bc89" "51610002"), [T], "bad escape 00 02"),
        (bytes.fromhex("bc89" "51ff0001"), [T], "not valid UTF-8"),
        (bytes.fromhex("bc89" "13"), [I], "unknown column value tag 0x13"),
        (bytes.fromhex("bc89" "2a2a"), [T], "column 0: expected TEXT, the key holds INT"),
        (bytes.fromhex("bc89" "29" "00"), [I], "1 bytes at offset 3 follow the last of the 1 columns"),
        (bytes.fromhex("bc89" "d6"), [I], "expected an ascending value, the key holds a descending one"),
    ],
)
def test_undecodable_keys(key, types, message):
    with pytest.raises(ValueError, match=message):
        decode_key(key, types)


def test_decode_key_checks_direction_and_input_type():
    key = encode_key(1, 1, [5])
    with pytest.raises(ValueError, match="expected a descending value"):
        decode_key(key, [I], [True])
    with pytest.raises(ValueError, match="keys are bytes"):
        decode_key(bytearray(key), [I])


@fast
@given(st.data())
def test_every_truncation_of_a_key_is_rejected(data):
    types, descending = data.draw(schemas())
    key = encode_key(3, 4, data.draw(rows(types)), descending, types=types)
    for cut in range(len(key)):
        with pytest.raises(ValueError):
            decode_key(key[:cut], types, descending)


@fast
@given(st.binary(max_size=24), st.lists(st.sampled_from(ALL_TYPES), max_size=3))
def test_decode_key_of_garbage_raises_only_value_error(key, types):
    try:
        decode_key(b"\xbc\x89" + key, types)
    except ValueError:
        pass
