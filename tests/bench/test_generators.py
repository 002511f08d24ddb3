"""bench.generators against YCSB's definitions (site.ycsb.generator.*, site.ycsb.Utils)."""

from __future__ import annotations

import collections
import math
import random
import struct

import pytest

from bench.generators import (
    FNV_OFFSET_BASIS_64,
    FNV_PRIME_64,
    INT64_MAX,
    INT64_MIN,
    SCRAMBLED_ITEM_COUNT,
    SCRAMBLED_ZETAN,
    AcknowledgedCounterGenerator,
    CounterGenerator,
    DiscreteGenerator,
    ScrambledZipfianGenerator,
    SkewedLatestGenerator,
    TooManyUnacknowledgedError,
    UniformLongGenerator,
    ZipfianGenerator,
    build_key_name,
    fnvhash64,
    java_abs,
    java_rem,
    to_int64,
    zeta_static,
)

U64 = 1 << 64


# ---------------------------------------------------------------------------------------
# fnvhash64: derivations of the pinned values.
#
# Utils.fnvhash64(val) starts from h = 0xCBF29CE484222325 and, 8 times, takes the low
# octet of val (val & 0xff), shifts val right arithmetically (val >> 8), and sets
# h = (h ^ octet) * 1099511628211 with Java's wrapping 64-bit multiply. It returns
# Math.abs(h) with h read as a signed long.
#
# val = 0: every octet is 0, so each XOR is a no-op and h = OFFSET * PRIME^8 mod 2^64
#   = 0xA8C7F832281A39C5. Its top bit is set, so as a Java long it is
#   0xA8C7F832281A39C5 - 2^64 = -6284781860667377211, and Math.abs gives
#   6284781860667377211: YCSB's famous first key "user6284781860667377211".
# val = 1: the first octet is 1, the other seven 0: h = ((OFFSET ^ 1) * PRIME) * PRIME^7,
#   again negative as a long; Math.abs gives 8517097267634966620 ("user8517097267634966620").
# val = 4: h's top bit is clear, so Math.abs changes nothing: 3232700585171816769.
# val = -1: the arithmetic shift keeps feeding 0xff, so all eight octets are 0xff:
#   8289690350564177859.


def _fnv1a_over_le_bytes(value: int) -> int:
    """An independent reading of Utils.fnvhash64: FNV-1a over the little-endian bytes, then Math.abs."""
    h = FNV_OFFSET_BASIS_64
    for octet in struct.pack("<q", value):
        h = ((h ^ octet) * FNV_PRIME_64) % U64
    signed = h - U64 if h >= 1 << 63 else h
    return signed if signed == INT64_MIN else abs(signed)


def test_fnvhash64_of_zero_is_offset_times_prime_to_the_eighth_then_math_abs():
    h = FNV_OFFSET_BASIS_64 * pow(FNV_PRIME_64, 8, U64) % U64
    assert h == 0xA8C7F832281A39C5
    assert h - U64 == -6284781860667377211
    assert fnvhash64(0) == 6284781860667377211


def test_fnvhash64_of_one_xors_the_first_octet_only():
    h = ((FNV_OFFSET_BASIS_64 ^ 1) * FNV_PRIME_64) * pow(FNV_PRIME_64, 7, U64) % U64
    assert h >= 1 << 63, "negative as a Java long, so Math.abs flips it"
    assert fnvhash64(1) == U64 - h == 8517097267634966620


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 6284781860667377211),
        (1, 8517097267634966620),
        (2, 1820151046732198393),
        (4, 3232700585171816769),  # positive before Math.abs
        (5, 1000385178204227360),
        (42, 55488592825689361),
        (1000, 5952875239596136740),
        (-1, 8289690350564177859),  # all octets 0xff by the arithmetic shift
        (INT64_MAX, 8289549613075766851),
        (INT64_MIN, 6284922598155788219),
    ],
)
def test_fnvhash64_pinned_values(value, expected):
    assert fnvhash64(value) == expected
    assert _fnv1a_over_le_bytes(value) == expected


def test_fnvhash64_matches_the_byte_reading_on_random_longs():
    rng = random.Random(7)
    for _ in range(2000):
        value = to_int64(rng.getrandbits(64))
        assert fnvhash64(value) == _fnv1a_over_le_bytes(value)


def test_java_long_helpers():
    assert java_abs(INT64_MIN) == INT64_MIN, "Math.abs(Long.MIN_VALUE) overflows"
    assert java_abs(-5) == 5
    assert java_rem(-7, 3) == -1, "Java % takes the dividend's sign"
    assert java_rem(7, -3) == 1
    assert to_int64(1 << 63) == INT64_MIN
    assert to_int64(U64 - 1) == -1


def test_build_key_name():
    assert build_key_name(0) == "user6284781860667377211"
    assert build_key_name(1) == "user8517097267634966620"
    assert build_key_name(5, zeropadding=8, ordered=True) == "user00000005"
    assert build_key_name(123456789, zeropadding=3, ordered=True) == "user123456789"


# ---------------------------------------------------------------------------------------
# ZipfianGenerator


def _draw(generator, n):
    return [generator.next_value() for _ in range(n)]


def test_zipfian_item_frequencies_follow_one_over_zeta():
    n_items, draws = 1000, 100_000
    gen = ZipfianGenerator(0, n_items - 1, rng=random.Random(1))
    counts = collections.Counter(_draw(gen, draws))
    zetan = zeta_static(n_items, 0.99)
    assert gen.zetan == zetan
    # u * zetan < 1 returns item 0, so P(0) = 1 / zetan exactly; P(1) = 0.5^0.99 / zetan.
    p0, p1 = 1 / zetan, math.pow(0.5, 0.99) / zetan
    sigma = math.sqrt(p0 * (1 - p0) / draws)
    assert abs(counts[0] / draws - p0) < 5 * sigma
    assert abs(counts[1] / draws - p1) < 5 * sigma
    assert counts[0] > counts[1] > counts[2] > counts[10] > counts[100]
    assert min(counts) >= 0 and max(counts) < n_items


def test_zipfian_min_is_the_most_popular_item():
    gen = ZipfianGenerator(500, 599, rng=random.Random(2))
    counts = collections.Counter(_draw(gen, 20_000))
    assert counts.most_common(1)[0][0] == 500
    assert min(counts) >= 500 and max(counts) <= 599


def test_zipfian_grows_zeta_incrementally_with_ycsb_eta_quirk():
    gen = ZipfianGenerator(0, 99, rng=random.Random(3))
    assert gen.count_for_zeta == 100
    values = [gen.next_long(150) for _ in range(5000)]
    assert gen.count_for_zeta == 150
    # Same summation order as from scratch, so exactly equal.
    assert gen.zetan == zeta_static(150, 0.99)
    # YCSB recomputes eta with the construction-time item count (100), not 150.
    assert gen.eta == (1 - math.pow(2.0 / 100, 1 - 0.99)) / (1 - gen.zeta2theta / gen.zetan)
    assert max(values) < 150 and max(values) >= 100, "the new items are reachable"


def test_zipfian_does_not_recompute_when_the_item_count_shrinks():
    gen = ZipfianGenerator(0, 199, rng=random.Random(4))
    zetan = gen.zetan
    gen.next_long(50)
    assert gen.zetan == zetan and gen.count_for_zeta == 200


def test_zipfian_is_deterministic_per_seed():
    a = _draw(ZipfianGenerator(0, 999, rng=random.Random(9)), 500)
    b = _draw(ZipfianGenerator(0, 999, rng=random.Random(9)), 500)
    c = _draw(ZipfianGenerator(0, 999, rng=random.Random(10)), 500)
    assert a == b and a != c


# ---------------------------------------------------------------------------------------
# ScrambledZipfianGenerator


def test_scrambled_zetan_is_zeta_of_ten_billion():
    # Euler-Maclaurin: the sum's tail past m is the integral of x^-theta over [m + 1/2, n + 1/2]
    # to well within 1e-9 here, so ZETAN can be checked without 10^10 terms.
    m, theta = 100_000, 0.99
    tail = ((SCRAMBLED_ITEM_COUNT + 0.5) ** (1 - theta) - (m + 0.5) ** (1 - theta)) / (1 - theta)
    assert zeta_static(m, theta) + tail == pytest.approx(SCRAMBLED_ZETAN, abs=1e-9)


def test_scrambled_zipfian_scatters_the_popular_items():
    n_items, draws = 1000, 100_000
    gen = ScrambledZipfianGenerator(0, n_items - 1, rng=random.Random(5))
    counts = collections.Counter(_draw(gen, draws))
    assert min(counts) >= 0 and max(counts) < n_items
    # The underlying zipfian's item 0 has probability 1/ZETAN and lands on fnvhash64(0) % n.
    hottest, hottest_count = counts.most_common(1)[0]
    assert hottest == fnvhash64(0) % n_items
    p0 = 1 / SCRAMBLED_ZETAN
    assert p0 - 0.005 < hottest_count / draws < p0 + 0.01  # + what other items fold onto it
    top10 = [item for item, _ in counts.most_common(10)]
    assert max(top10) - min(top10) > n_items // 2, f"popular items clustered: {sorted(top10)}"
    assert len(counts) > 0.9 * n_items, "nearly every item is drawn"


def test_scrambled_zipfian_offsets_by_min():
    gen = ScrambledZipfianGenerator(1000, 1099, rng=random.Random(6))
    values = _draw(gen, 5000)
    assert min(values) >= 1000 and max(values) <= 1099
    assert collections.Counter(values).most_common(1)[0][0] == 1000 + fnvhash64(0) % 100


def test_scrambled_zipfian_supports_only_the_precomputed_constant():
    with pytest.raises(ValueError):
        ScrambledZipfianGenerator(0, 9, 0.5, rng=random.Random(0))


# ---------------------------------------------------------------------------------------
# SkewedLatestGenerator and the counters


def test_skewed_latest_favours_the_most_recent_items():
    counter = CounterGenerator(1000)  # last_value 999: items 0..999 exist
    gen = SkewedLatestGenerator(counter, rng=random.Random(8))
    counts = collections.Counter(_draw(gen, 20_000))
    assert counts.most_common(1)[0][0] == 999
    assert max(counts) <= 999
    for _ in range(100):
        counter.next_value()  # 100 newer items, last_value 1099
    counts = collections.Counter(_draw(gen, 20_000))
    assert counts.most_common(1)[0][0] == 1099
    assert max(counts) <= 1099
    recent = sum(c for item, c in counts.items() if item >= 1090)
    old = sum(c for item, c in counts.items() if item < 1000)
    assert recent > 0.3 * 20_000 and recent > old


def test_counter_generator_last_value():
    counter = CounterGenerator(10)
    assert counter.last_value() == 9
    assert [counter.next_value() for _ in range(3)] == [10, 11, 12]
    assert counter.last_value() == 12


def test_acknowledged_counter_exposes_only_the_contiguous_acknowledged_prefix():
    counter = AcknowledgedCounterGenerator(1000)
    assert counter.last_value() == 999
    first, second, third = (counter.next_value() for _ in range(3))
    assert (first, second, third) == (1000, 1001, 1002)
    counter.acknowledge(second)
    assert counter.last_value() == 999, "1000 still pending"
    counter.acknowledge(first)
    assert counter.last_value() == 1001
    counter.acknowledge(third)
    assert counter.last_value() == 1002


def test_acknowledged_counter_rejects_a_double_acknowledgement_of_a_pending_slot():
    counter = AcknowledgedCounterGenerator(0)
    counter.next_value()
    value = counter.next_value()  # 1, pending behind 0
    counter.acknowledge(value)
    with pytest.raises(TooManyUnacknowledgedError):
        counter.acknowledge(value)


# ---------------------------------------------------------------------------------------
# UniformLongGenerator and DiscreteGenerator


def test_uniform_long_covers_the_inclusive_interval():
    gen = UniformLongGenerator(3, 7, rng=random.Random(11))
    values = _draw(gen, 10_000)
    assert set(values) == {3, 4, 5, 6, 7}
    assert sum(values) / len(values) == pytest.approx(5, abs=0.05)
    assert gen.last_value() == values[-1]


def test_discrete_generator_follows_the_weights():
    gen = DiscreteGenerator(rng=random.Random(12))
    gen.add_value(0.95, "READ")
    gen.add_value(0.05, "UPDATE")
    counts = collections.Counter(gen.next_value() for _ in range(20_000))
    assert counts["READ"] / 20_000 == pytest.approx(0.95, abs=0.01)
    assert gen.last_value() in ("READ", "UPDATE")
