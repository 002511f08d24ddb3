"""Clock settings and human-readable durations.

Durations are integer nanoseconds everywhere in spanlite (units last in names: `_ns`).
`parse_duration` turns operator input (`250ms`, `1.5s`) into ns; `format_duration` goes back.
"""

from __future__ import annotations

import re

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_M = 60 * NS_PER_S
NS_PER_H = 60 * NS_PER_M

# Loopback clusters: every node reads the same kernel clock, so real skew is ~0 and the
# bound only has to cover skew injected by tests, the simulator and the chaos tool. Kept
# small because every read-write commit waits out max offset (commit-wait) and every lease
# loses max offset to its stasis period. Clusters spread over machines must raise it
# (CockroachDB defaults to 500ms; 250ms is a common NTP-synced choice).
DEFAULT_MAX_OFFSET_NS = 20 * NS_PER_MS

# A max offset this large means a misconfiguration: every commit would wait this long.
MAX_OFFSET_NS_LIMIT = 10 * NS_PER_S

# The HLC persists its wall-time high-water mark this far ahead of the time it hands out,
# so it writes (fsyncs) about once per window rather than once per timestamp.
DEFAULT_HIGH_WATER_WINDOW_NS = 500 * NS_PER_MS

# Largest first: parse accepts all of them; format picks the largest that reads well.
_UNIT_NS: dict[str, int] = {
    "h": NS_PER_H,
    "m": NS_PER_M,
    "s": NS_PER_S,
    "ms": NS_PER_MS,
    "us": NS_PER_US,
    "µs": NS_PER_US,  # micro sign U+00B5
    "μs": NS_PER_US,  # Greek mu U+03BC
    "ns": 1,
}
_DURATION_RE = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?(?P<unit>[a-zµμ]+)?")
_ACCEPTED_FORMS = (
    "a non-negative number with a unit ns, us, ms, s, m or h (e.g. 250ms, 1s, 1.5s, 500us, 100ns, 2m), "
    "or a plain integer meaning nanoseconds"
)
_TEXT_CHARS_MAX = 64
# A duration must fit a Timestamp's wall time (signed 64-bit ns, about 292 years).
DURATION_NS_MAX = (1 << 63) - 1


def parse_duration(text: str) -> int:
    """`"250ms"` -> 250_000_000. A plain integer means nanoseconds. Raises `ValueError`."""
    if not isinstance(text, str):
        raise TypeError(f"parse_duration takes a str, got {type(text).__name__}: {text!r}")
    stripped = text.strip()
    match = _DURATION_RE.fullmatch(stripped) if len(stripped) <= _TEXT_CHARS_MAX else None
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected {_ACCEPTED_FORMS}")
    whole, frac, unit = match.group("whole"), match.group("frac") or "", match.group("unit")
    if unit is None and frac:
        raise ValueError(f"invalid duration {text!r}: a number without a unit must be whole nanoseconds; "
                         f"expected {_ACCEPTED_FORMS}")
    unit_ns = _UNIT_NS.get(unit or "ns")
    if unit_ns is None:
        raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}; expected {_ACCEPTED_FORMS}")
    scale = 10 ** len(frac)
    total_scaled = (int(whole) * scale + int(frac or "0")) * unit_ns
    if total_scaled % scale != 0:
        raise ValueError(f"invalid duration {text!r}: not a whole number of nanoseconds")
    duration_ns = total_scaled // scale
    if duration_ns > DURATION_NS_MAX:
        raise ValueError(f"invalid duration {text!r}: larger than {format_duration(DURATION_NS_MAX)}")
    assert duration_ns >= 0, f"parsed a negative duration from {text!r}"
    return duration_ns


def format_duration(ns: int) -> str:
    """250_000_000 -> `"250ms"`; 1_500_000_000 -> `"1.5s"`. Exact: `parse_duration` inverts it
    for non-negative values. Negative durations (e.g. a measured skew) get a leading `-`."""
    assert isinstance(ns, int), f"format_duration takes int ns, got {ns!r}"
    if ns < 0:
        return "-" + format_duration(-ns)
    if ns == 0:
        return "0s"
    for unit, unit_ns in (("h", NS_PER_H), ("m", NS_PER_M)):
        if ns % unit_ns == 0:
            return f"{ns // unit_ns}{unit}"
    for unit, unit_ns, digits in (("s", NS_PER_S, 9), ("ms", NS_PER_MS, 6), ("us", NS_PER_US, 3)):
        if ns >= unit_ns:
            whole, frac = divmod(ns, unit_ns)
            frac_text = str(frac).rjust(digits, "0").rstrip("0")
            return f"{whole}.{frac_text}{unit}" if frac_text else f"{whole}{unit}"
    return f"{ns}ns"


def validate_max_offset_ns(max_offset_ns: int) -> int:
    """Returns `max_offset_ns` if usable as a cluster's max clock offset; else `ValueError`."""
    if not isinstance(max_offset_ns, int) or isinstance(max_offset_ns, bool):
        raise ValueError(f"max offset must be integer nanoseconds, got {max_offset_ns!r}")
    if not 0 <= max_offset_ns <= MAX_OFFSET_NS_LIMIT:
        raise ValueError(
            f"max offset {format_duration(max_offset_ns)} is outside [0s, {format_duration(MAX_OFFSET_NS_LIMIT)}]"
        )
    return max_offset_ns
