"""YCSB's core number generators, reproduced from `site.ycsb.generator.*` and `site.ycsb.Utils`.

Each class names the YCSB class it mirrors and keeps its arithmetic, including YCSB's quirks
(they are part of what "YCSB workload A" means, so results stay comparable with published
YCSB numbers). Java's signed 64-bit `long` semantics are reproduced where they can change a
result: wrap-around multiplication, arithmetic `>>`, `Math.abs(Long.MIN_VALUE)` staying
negative, and `%` taking the sign of the dividend.

Differences from YCSB, all deliberate:

- Randomness comes from an injected, seeded `random.Random` (never a global or thread-local
  source), so a seed replays a workload exactly. `rng.random()` stands in for Java's
  `Random.nextDouble()` and `rng.getrandbits(64)` for `nextLong()`; the draws differ from
  Java's, the distributions do not.
- No locks: the runner drives generators from one trio thread, so YCSB's `synchronized`
  sections and `AcknowledgedCounterGenerator`'s `tryLock` always "succeed" here.

HAZARD: `ZipfianGenerator` keeps YCSB's incremental-zeta quirk: when the item count grows,
`eta` is recomputed with the item count given at construction (`items`), not the new count.
`SkewedLatestGenerator` (workload D) relies on that growth path.

HAZARD: `ScrambledZipfianGenerator` draws from a zipfian over `ITEM_COUNT` = 10^10 items with
the precomputed `ZETAN` = zeta(10^10, 0.99), then folds with `fnvhash64 % itemcount`. Its
popularity is therefore not exactly zipfian over `itemcount` items (a known YCSB property,
brianfrankcooper/YCSB#1495); it is what YCSB measures, so it is what we measure.
"""

from __future__ import annotations

import math
import random

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1

# site.ycsb.Utils
FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325
FNV_PRIME_64 = 1099511628211

# site.ycsb.generator.ZipfianGenerator.ZIPFIAN_CONSTANT
ZIPFIAN_CONSTANT = 0.99

# site.ycsb.generator.ScrambledZipfianGenerator: ZETAN is zeta(ITEM_COUNT, 0.99), precomputed
# because summing 10^10 terms takes minutes.
SCRAMBLED_ITEM_COUNT = 10_000_000_000
SCRAMBLED_ZETAN = 26.46902820178302

# site.ycsb.generator.AcknowledgedCounterGenerator.WINDOW_SIZE (2^20).
ACK_WINDOW_SIZE = 1 << 20
_ACK_WINDOW_MASK = ACK_WINDOW_SIZE - 1


class TooManyUnacknowledgedError(Exception):
    """More than `ACK_WINDOW_SIZE` insert keys are handed out but not yet acknowledged."""


# ---------------------------------------------------------------------------------------
# Java long arithmetic


def to_int64(value: int) -> int:
    """Wrap an integer to Java's signed 64-bit `long` (two's complement)."""
    value &= _UINT64_MASK
    return value - (1 << 64) if value > INT64_MAX else value


def java_abs(value: int) -> int:
    """`Math.abs(long)`: like abs(), except that `Long.MIN_VALUE` stays negative (overflow)."""
    assert INT64_MIN <= value <= INT64_MAX, f"not a Java long: {value}"
    return to_int64(-value) if value < 0 else value


def java_rem(dividend: int, divisor: int) -> int:
    """Java's `%` on longs: truncating division, so the result has the dividend's sign."""
    assert divisor != 0, "Java would throw ArithmeticException: / by zero"
    remainder = abs(dividend) % abs(divisor)
    return -remainder if dividend < 0 else remainder


def fnvhash64(value: int) -> int:
    """`Utils.fnvhash64(long)`: FNV-1a over the long's 8 bytes, low byte first, then `Math.abs`.

    `val >> 8` is Java's arithmetic shift, so a negative input feeds 0xff octets once its
    bits run out; Python's `>>` on negative ints floors the same way. XOR and the wrapping
    multiply act on the same bits whether read signed or unsigned, so the hash runs on
    unsigned 64-bit values and is read back as a signed long only for `Math.abs`.
    """
    assert INT64_MIN <= value <= INT64_MAX, f"fnvhash64 takes a Java long, got {value}"
    hashval = FNV_OFFSET_BASIS_64
    for _ in range(8):
        octet = value & 0xFF
        value >>= 8
        hashval ^= octet
        hashval = (hashval * FNV_PRIME_64) & _UINT64_MASK
    return java_abs(to_int64(hashval))


# ---------------------------------------------------------------------------------------
# Generators


class NumberGenerator:
    """`site.ycsb.generator.NumberGenerator`: `next_value()` and the last value it returned."""

    def __init__(self) -> None:
        self._last_value: int | None = None

    def next_value(self) -> int:
        raise NotImplementedError

    def last_value(self) -> int:
        assert self._last_value is not None, f"{type(self).__name__}: no value generated yet"
        return self._last_value

    def _set_last_value(self, value: int) -> None:
        self._last_value = value


class ConstantIntegerGenerator(NumberGenerator):
    """`ConstantIntegerGenerator`: always the same number (YCSB's default field length)."""

    def __init__(self, value: int) -> None:
        super().__init__()
        self._value = value
        self._set_last_value(value)

    def next_value(self) -> int:
        return self._value


class CounterGenerator(NumberGenerator):
    """`CounterGenerator`: countstart, countstart + 1, ...; `last_value` is the last handed out."""

    def __init__(self, count_start: int) -> None:
        super().__init__()
        self._counter = count_start

    def next_value(self) -> int:
        value = self._counter
        self._counter += 1
        return value

    def last_value(self) -> int:
        # YCSB: counter.get() - 1, i.e. countstart - 1 before anything was generated.
        return self._counter - 1


class AcknowledgedCounterGenerator(CounterGenerator):
    """`AcknowledgedCounterGenerator`: `last_value` is the highest *acknowledged* value.

    Workload D/E inserts take keys from `next_value()`; reads may only pick keys below the
    contiguous acknowledged prefix, so nobody reads a record whose insert has not finished.
    """

    def __init__(self, count_start: int) -> None:
        super().__init__(count_start)
        self._window = bytearray(ACK_WINDOW_SIZE)
        # Invariant: every value <= _limit has been acknowledged.
        self._limit = count_start - 1

    def last_value(self) -> int:
        return self._limit

    def acknowledge(self, value: int) -> None:
        slot = value & _ACK_WINDOW_MASK
        if self._window[slot]:
            raise TooManyUnacknowledgedError("Too many unacknowledged insertion keys.")
        self._window[slot] = 1
        self._advance_limit()

    def _advance_limit(self) -> None:
        # YCSB's loop bound compares the absolute index with a masked slot number; kept
        # as is: it only matters after 2^20 consecutive pending acknowledgements.
        before_first_slot = self._limit & _ACK_WINDOW_MASK
        index = self._limit + 1
        while index != before_first_slot:
            slot = index & _ACK_WINDOW_MASK
            if not self._window[slot]:
                break
            self._window[slot] = 0
            index += 1
        self._limit = index - 1


class UniformLongGenerator(NumberGenerator):
    """`UniformLongGenerator`: uniform over [lb, ub] inclusive, as `abs(nextLong()) % interval + lb`."""

    def __init__(self, lb: int, ub: int, *, rng: random.Random) -> None:
        super().__init__()
        assert lb <= ub, f"empty interval [{lb}, {ub}]"
        self._lb = lb
        self._interval = ub - lb + 1
        self._rng = rng

    def next_value(self) -> int:
        next_long = to_int64(self._rng.getrandbits(64))
        value = java_rem(java_abs(next_long), self._interval) + self._lb
        self._set_last_value(value)
        return value


def zeta_static(n: int, theta: float, start: int = 0, initial_sum: float = 0.0) -> float:
    """`ZipfianGenerator.zetastatic`: sum of 1 / (i + 1)^theta for i in [start, n).

    Summed in the same order as YCSB, so incremental and from-scratch sums agree exactly.
    """
    assert 0 <= start <= n, f"zeta over [{start}, {n})"
    total = initial_sum
    for i in range(start, n):
        total += 1 / math.pow(i + 1, theta)
    return total


class ZipfianGenerator(NumberGenerator):
    """`ZipfianGenerator`: Gray et al., "Quickly Generating Billion-Record Synthetic Databases" (SIGMOD 1994).

    Items min..max inclusive; min is the most popular, min + 1 the next, and so on.
    `zetan` may be passed precomputed (as `ScrambledZipfianGenerator` does).
    """

    def __init__(
        self,
        min_item: int,
        max_item: int,
        zipfian_constant: float = ZIPFIAN_CONSTANT,
        *,
        rng: random.Random,
        zetan: float | None = None,
    ) -> None:
        super().__init__()
        self.items = max_item - min_item + 1
        assert self.items >= 1, f"zipfian over no items: [{min_item}, {max_item}]"
        self.base = min_item
        self.theta = zipfian_constant
        self._rng = rng
        # YCSB only recomputes zeta on a shrinking item count when asked; it never is here.
        self.allow_item_count_decrease = False
        self.zeta2theta = zeta_static(2, self.theta)
        self.alpha = 1.0 / (1.0 - self.theta)
        self.zetan = zeta_static(self.items, self.theta) if zetan is None else zetan
        # Invariant: zetan == zeta(count_for_zeta, theta).
        self.count_for_zeta = self.items
        self.eta = self._eta()
        self.next_value()  # YCSB's constructor draws once; keep the stream identical in shape.

    def _eta(self) -> float:
        # YCSB uses the construction-time `items` here even after zetan has grown (see HAZARD).
        return (1 - math.pow(2.0 / self.items, 1 - self.theta)) / (1 - self.zeta2theta / self.zetan)

    def next_long(self, item_count: int) -> int:
        """The next item of a zipfian over `item_count` items (YCSB's `nextLong(itemcount)`)."""
        if item_count != self.count_for_zeta:
            self._recompute_zeta(item_count)
        u = self._rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return self.base
        if uz < 1.0 + math.pow(0.5, self.theta):
            return self.base + 1
        # Java's (long) cast truncates toward zero, as int() does.
        value = self.base + int(item_count * math.pow(self.eta * u - self.eta + 1, self.alpha))
        self._set_last_value(value)  # YCSB sets it on this path only.
        return value

    def _recompute_zeta(self, item_count: int) -> None:
        if item_count > self.count_for_zeta:
            # Items were added: extend the sum from where it stopped (cheap).
            self.zetan = zeta_static(item_count, self.theta, self.count_for_zeta, self.zetan)
            self.count_for_zeta = item_count
            self.eta = self._eta()
        elif self.allow_item_count_decrease:
            self.zetan = zeta_static(item_count, self.theta)
            self.count_for_zeta = item_count
            self.eta = self._eta()

    def next_value(self) -> int:
        return self.next_long(self.items)


class ScrambledZipfianGenerator(NumberGenerator):
    """`ScrambledZipfianGenerator`: zipfian popularity scattered over [min, max] by fnvhash64.

    The underlying zipfian is over 0..ITEM_COUNT (so ITEM_COUNT + 1 items, as in YCSB) with
    the precomputed ZETAN; only the 0.99 constant is supported, because any other constant
    would need zeta over 10^10 terms (YCSB computes it; that takes minutes in Java).
    """

    def __init__(
        self,
        min_item: int,
        max_item: int,
        zipfian_constant: float = ZIPFIAN_CONSTANT,
        *,
        rng: random.Random,
    ) -> None:
        super().__init__()
        if zipfian_constant != ZIPFIAN_CONSTANT:
            raise ValueError(f"ScrambledZipfianGenerator supports only the constant {ZIPFIAN_CONSTANT}")
        self.min_item = min_item
        self.max_item = max_item
        self.item_count = max_item - min_item + 1
        assert self.item_count >= 1, f"scrambled zipfian over no items: [{min_item}, {max_item}]"
        self._zipfian = ZipfianGenerator(
            0, SCRAMBLED_ITEM_COUNT, zipfian_constant, rng=rng, zetan=SCRAMBLED_ZETAN
        )

    def next_value(self) -> int:
        value = self.min_item + java_rem(fnvhash64(self._zipfian.next_value()), self.item_count)
        self._set_last_value(value)
        return value


class SkewedLatestGenerator(NumberGenerator):
    """`SkewedLatestGenerator`: `max - zipfian.next_long(max)`, max = the basis's last value.

    The most recently acknowledged insert is the most popular item (workload D's "latest").
    """

    def __init__(self, basis: CounterGenerator, *, rng: random.Random) -> None:
        super().__init__()
        self._basis = basis
        # YCSB: new ZipfianGenerator(basis.lastValue()), i.e. items 0 .. lastValue - 1.
        self._zipfian = ZipfianGenerator(0, basis.last_value() - 1, rng=rng)
        self.next_value()  # YCSB's constructor draws once.

    def next_value(self) -> int:
        max_item = self._basis.last_value()
        value = max_item - self._zipfian.next_long(max_item)
        self._set_last_value(value)
        return value


class DiscreteGenerator:
    """`DiscreteGenerator`: picks one of a few values by weight (the operation chooser)."""

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._values: list[tuple[float, str]] = []
        self._last_value: str | None = None

    def add_value(self, weight: float, value: str) -> None:
        assert weight > 0, f"weight of {value!r} must be positive, got {weight}"
        self._values.append((weight, value))

    def next_value(self) -> str:
        assert self._values, "DiscreteGenerator has no values"
        total = sum(weight for weight, _ in self._values)
        val = self._rng.random()
        for weight, value in self._values:
            share = weight / total
            if val < share:
                self._last_value = value
                return value
            val -= share
        # Rounding can leave val a hair above the last share; YCSB throws here, which a
        # float sum of 1.0 - epsilon makes reachable. Fall back to the last value instead.
        self._last_value = self._values[-1][1]
        return self._last_value

    def last_value(self) -> str:
        if self._last_value is None:
            return self.next_value()
        return self._last_value


def build_key_name(keynum: int, zeropadding: int = 1, ordered: bool = False) -> str:
    """`CoreWorkload.buildKeyName`: "user" + (hashed) key number, left-padded with zeros."""
    if not ordered:
        keynum = fnvhash64(keynum)
    digits = str(keynum)
    return "user" + "0" * (zeropadding - len(digits)) + digits
