"""Clock settings and durations."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clock.settings import (
    DEFAULT_MAX_OFFSET_NS,
    DURATION_NS_MAX,
    MAX_OFFSET_NS_LIMIT,
    format_duration,
    parse_duration,
    validate_max_offset_ns,
)


def test_default_max_offset_is_20ms():
    assert DEFAULT_MAX_OFFSET_NS == 20_000_000


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("250ms", 250_000_000),
        ("1s", 1_000_000_000),
        ("1.5s", 1_500_000_000),
        ("0.25s", 250_000_000),
        ("500us", 500_000),
        ("500µs", 500_000),
        ("500μs", 500_000),
        ("100ns", 100),
        ("2m", 120_000_000_000),
        ("1.5m", 90_000_000_000),
        ("1h", 3_600_000_000_000),
        ("1.000000001s", 1_000_000_001),
        ("0", 0),
        ("0s", 0),
        ("12345", 12_345),
        ("  20ms\n", 20_000_000),
        ("007ms", 7_000_000),
    ],
)
def test_parse_duration_accepts(text, expected_ns):
    assert parse_duration(text) == expected_ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ms",
        "-5ms",
        "+5ms",
        "1.5",
        "1.5ns",
        "0.0000000001s",
        "5 ms",
        "5MS",
        "5sec",
        "5d",
        "1e9",
        "1,5s",
        ".5s",
        "5.s",
        "1m30s",
        "nan",
        "１s",
        "9" * 80,
        "99999999999h",
    ],
)
def test_parse_duration_rejects_with_a_helpful_message(text):
    with pytest.raises(ValueError, match="invalid duration") as excinfo:
        parse_duration(text)
    assert repr(text) in str(excinfo.value)


def test_parse_duration_message_lists_the_accepted_forms():
    with pytest.raises(ValueError) as excinfo:
        parse_duration("soon")
    message = str(excinfo.value)
    for form in ("ns", "us", "ms", "250ms", "1.5s", "plain integer"):
        assert form in message


def test_parse_duration_rejects_non_strings():
    with pytest.raises(TypeError):
        parse_duration(250)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1us"),
        (1_500, "1.5us"),
        (20_000_000, "20ms"),
        (250_000_000, "250ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (1_000_000_001, "1.000000001s"),
        (90_000_000_000, "90s"),
        (120_000_000_000, "2m"),
        (3_600_000_000_000, "1h"),
        (-20_000_000, "-20ms"),
    ],
)
def test_format_duration(ns, text):
    assert format_duration(ns) == text


@given(st.one_of(st.integers(0, DURATION_NS_MAX), st.integers(0, 10**12)))
def test_parse_inverts_format(ns):
    assert parse_duration(format_duration(ns)) == ns


@pytest.mark.parametrize("ns", [0, 1, DEFAULT_MAX_OFFSET_NS, MAX_OFFSET_NS_LIMIT])
def test_validate_max_offset_accepts(ns):
    assert validate_max_offset_ns(ns) == ns


@pytest.mark.parametrize("bad", [-1, MAX_OFFSET_NS_LIMIT + 1, 0.5, True, "20ms"])
def test_validate_max_offset_rejects(bad):
    with pytest.raises(ValueError, match="max offset"):
        validate_max_offset_ns(bad)
