"""Latency histograms and YCSB's result format.

Mirrors `site.ycsb.measurements`: one HDR histogram per measurement name (microseconds,
1 us .. 60 s, 3 significant digits, as `OneMeasurementHdrHistogram`), return-code counts per
operation, and `TextMeasurementsExporter`'s lines:

    [OVERALL], RunTime(ms), 10110
    [OVERALL], Throughput(ops/sec), 98.91196834817013
    [READ], Operations, 499
    [READ], AverageLatency(us), 1089.0881763527055
    [READ], MinLatency(us), 487
    [READ], MaxLatency(us), 20415
    [READ], 50thPercentileLatency(us), 942
    [READ], 95thPercentileLatency(us), 1574
    [READ], 99thPercentileLatency(us), 2651
    [READ], Return=OK, 499

As YCSB's `DBWrapper.measure` does, a failed operation's latency goes to "<OP>-FAILED" and
its status is counted on "<OP>" (`Return=ERROR`, `Return=NOT_FOUND`): errors are counted,
never hidden. Doubles print as Java's `Double.toString` does, so the text diffs cleanly
against real YCSB output. Sections come in a fixed order (YCSB's follows a hash map).

HAZARD: HDR values are bucketed: Max and the percentiles are the highest value equivalent
to the recorded one (within 0.1%), exactly as YCSB reports them. Latencies beyond 60 s are
clamped to 60 s rather than dropped.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass, field
from typing import Mapping

from hdrh.histogram import HdrHistogram

LATENCY_US_MIN = 1
LATENCY_US_MAX = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 95.0, 99.0)  # YCSB's hdrhistogram.percentiles default "50,95,99"

STATUS_OK = "OK"
STATUS_ERROR = "ERROR"
STATUS_NOT_FOUND = "NOT_FOUND"

# Sections print in this order; any other measurement name follows, sorted.
OP_ORDER = ("READ", "UPDATE", "INSERT", "SCAN", "READ-MODIFY-WRITE")
FAILED_SUFFIX = "-FAILED"

# Error messages kept for the report; more distinct messages are only counted.
ERROR_SAMPLES_MAX = 10


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LATENCY_US_MIN, LATENCY_US_MAX, SIGNIFICANT_DIGITS)


def java_double(value: float) -> str:
    """Java's `Double.toString`: shortest digits; plain in [1e-3, 1e7), else "d.dddE<exp>"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        return repr(float(value))  # Python's repr is shortest round-trip and keeps ".0"
    sign, digits, exponent = decimal.Decimal(repr(float(value))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    scientific_exponent = exponent + len(digits) - 1
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{scientific_exponent}"


def ordinal(percentile: float) -> str:
    """YCSB's `OneMeasurementHdrHistogram.ordinal`: 50 -> "50th", 99.9 -> "99.9"."""
    if percentile % 1 != 0:
        return java_double(percentile)
    n = int(percentile)
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return f"{n}{('th', 'st', 'nd', 'rd', 'th', 'th', 'th', 'th', 'th', 'th')[n % 10]}"


def percentile_key(percentile: float) -> str:
    """The JSON name of a percentile: 50 -> "p50_latency_us", 99.9 -> "p99.9_latency_us"."""
    number = int(percentile) if percentile % 1 == 0 else percentile
    return f"p{number}_latency_us"


def clamp_latency_us(latency_us: int) -> int:
    return min(max(latency_us, 0), LATENCY_US_MAX)


@dataclass
class Measurement:
    """One measurement name's histogram and return codes (YCSB's `OneMeasurement`)."""

    name: str
    histogram: HdrHistogram = field(default_factory=new_histogram)
    return_codes: dict[str, int] = field(default_factory=dict)

    def measure(self, latency_us: int) -> None:
        recorded = self.histogram.record_value(clamp_latency_us(latency_us))
        assert recorded, f"{self.name}: latency {latency_us} us not recorded"

    def report_status(self, status: str) -> None:
        self.return_codes[status] = self.return_codes.get(status, 0) + 1

    def summary(self) -> dict[str, object]:
        h = self.histogram
        figures: dict[str, object] = {
            "operations": h.get_total_count(),
            "average_latency_us": h.get_mean_value(),
            "min_latency_us": h.get_min_value(),
            "max_latency_us": h.get_max_value(),
        }
        for p in PERCENTILES:
            figures[percentile_key(p)] = h.get_value_at_percentile(p)
        figures["return_codes"] = dict(sorted(self.return_codes.items(), key=_status_order))
        return figures

    def text_lines(self) -> list[str]:
        h = self.histogram
        lines = [
            _line(self.name, "Operations", h.get_total_count()),
            _line(self.name, "AverageLatency(us)", java_double(h.get_mean_value())),
            _line(self.name, "MinLatency(us)", h.get_min_value()),
            _line(self.name, "MaxLatency(us)", h.get_max_value()),
        ]
        for p in PERCENTILES:
            lines.append(_line(self.name, f"{ordinal(p)}PercentileLatency(us)", h.get_value_at_percentile(p)))
        for status, count in sorted(self.return_codes.items(), key=_status_order):
            lines.append(_line(self.name, f"Return={status}", count))
        return lines


def _status_order(item: tuple[str, int]) -> tuple[int, str]:
    return (0 if item[0] == STATUS_OK else 1, item[0])


def _line(metric: str, measurement: str, value: object) -> str:
    return f"[{metric}], {measurement}, {value}"


def _section_order(name: str) -> tuple[int, int, str]:
    base = name.removesuffix(FAILED_SUFFIX)
    rank = OP_ORDER.index(base) if base in OP_ORDER else len(OP_ORDER)
    return (rank, 0 if name == base else 1, name)


class Measurements:
    """All measurements of one phase (YCSB's `Measurements`), plus optional interval histograms.

    With `track_intervals`, every latency also lands in a per-name interval histogram that
    `take_interval()` hands out and resets: the progress line's "last second" figures.
    """

    def __init__(self, *, track_intervals: bool = False) -> None:
        self.by_name: dict[str, Measurement] = {}
        self.track_intervals = track_intervals
        self._interval: dict[str, HdrHistogram] = {}
        self.error_samples: list[str] = []
        self.error_count = 0

    def _get(self, name: str) -> Measurement:
        measurement = self.by_name.get(name)
        if measurement is None:
            measurement = self.by_name[name] = Measurement(name)
        return measurement

    def measure(self, name: str, latency_us: int) -> None:
        self._get(name).measure(latency_us)
        if self.track_intervals:
            histogram = self._interval.get(name)
            if histogram is None:
                histogram = self._interval[name] = new_histogram()
            histogram.record_value(clamp_latency_us(latency_us))

    def report_status(self, name: str, status: str) -> None:
        self._get(name).report_status(status)

    def record(self, op: str, latency_us: int, status: str) -> None:
        """DBWrapper.measure + reportStatus: failures are timed under "<op>-FAILED"."""
        self.measure(op if status == STATUS_OK else op + FAILED_SUFFIX, latency_us)
        self.report_status(op, status)

    def note_error(self, message: str) -> bool:
        """Count an error; keep its message if new and room is left. True if kept."""
        self.error_count += 1
        if message in self.error_samples or len(self.error_samples) >= ERROR_SAMPLES_MAX:
            return False
        self.error_samples.append(message)
        return True

    def take_interval(self) -> dict[str, HdrHistogram]:
        interval, self._interval = self._interval, {}
        return interval

    def ordered(self) -> list[Measurement]:
        return [self.by_name[name] for name in sorted(self.by_name, key=_section_order)]

    # -- merging the measurements of several client processes (`bench.multiprocess`) --

    def to_wire(self) -> dict[str, object]:
        """A picklable copy: histograms HDR-encoded, return codes, errors."""
        return {
            "by_name": {name: [m.histogram.encode(), dict(m.return_codes)] for name, m in self.by_name.items()},
            "error_count": self.error_count,
            "error_samples": list(self.error_samples),
        }

    def add_wire(self, wire: dict) -> None:
        """Add another process's `to_wire()` figures into these (histograms add exactly)."""
        for name, (encoded, return_codes) in wire["by_name"].items():
            measurement = self._get(name)
            measurement.histogram.add(HdrHistogram.decode(encoded))
            for status, count in return_codes.items():
                measurement.return_codes[status] = measurement.return_codes.get(status, 0) + count
        self.error_count += wire["error_count"]
        for message in wire["error_samples"]:
            if message not in self.error_samples and len(self.error_samples) < ERROR_SAMPLES_MAX:
                self.error_samples.append(message)


def encode_histograms(histograms: Mapping[str, HdrHistogram]) -> dict[str, bytes]:
    return {name: h.encode() for name, h in histograms.items()}


def merge_encoded_histograms(into: dict[str, HdrHistogram], encoded: Mapping[str, bytes]) -> None:
    for name, data in encoded.items():
        histogram = into.get(name)
        if histogram is None:
            histogram = into[name] = new_histogram()
        histogram.add(HdrHistogram.decode(data))


@dataclass
class Report:
    """The result of one phase: what YCSB prints at the end of a `load` or `run`.

    `operations` counts every operation finished, failed ones included (YCSB's opsdone).
    For phase "both", the run report carries the load report in `load_report`.
    """

    phase: str
    workload: str
    runtime_ns: int
    operations: int
    measurements: Measurements
    load_report: Report | None = None

    @property
    def runtime_ms(self) -> int:
        return self.runtime_ns // 1_000_000

    @property
    def throughput_ops_per_s(self) -> float:
        # YCSB divides by whole milliseconds; nanoseconds give the same figure, more exactly.
        if self.runtime_ns <= 0:
            return 0.0
        return self.operations * 1e9 / self.runtime_ns

    @property
    def error_samples(self) -> list[str]:
        return self.measurements.error_samples

    def return_count(self, op: str, status: str) -> int:
        measurement = self.measurements.by_name.get(op)
        return 0 if measurement is None else measurement.return_codes.get(status, 0)

    def operation_count(self, name: str) -> int:
        measurement = self.measurements.by_name.get(name)
        return 0 if measurement is None else measurement.histogram.get_total_count()

    def text_lines(self) -> list[str]:
        lines = [
            _line("OVERALL", "RunTime(ms)", self.runtime_ms),
            _line("OVERALL", "Throughput(ops/sec)", java_double(self.throughput_ops_per_s)),
        ]
        for measurement in self.measurements.ordered():
            lines.extend(measurement.text_lines())
        return lines

    def to_text(self) -> str:
        """YCSB's text output of this phase only (print `load_report.to_text()` for the load)."""
        return "\n".join(self.text_lines()) + "\n"

    def to_json(self, settings: Mapping[str, object]) -> dict[str, object]:
        """The same figures as `to_text`, plus the cluster settings (nodes, ranges, max_offset, durability, ...)."""
        result: dict[str, object] = {
            "phase": self.phase,
            "workload": self.workload,
            "runtime_ms": self.runtime_ms,
            "throughput_ops_per_sec": self.throughput_ops_per_s,
            "operations": self.operations,
            "measurements": {m.name: m.summary() for m in self.measurements.ordered()},
            "errors": {"count": self.measurements.error_count, "samples": list(self.error_samples)},
            "settings": dict(settings),
        }
        if self.load_report is not None:
            result["load"] = self.load_report.to_json(settings)
        return result


def format_progress(
    elapsed_s: float,
    operations: int,
    interval_operations: int,
    interval_s: float,
    interval_histograms: Mapping[str, HdrHistogram],
) -> str:
    """One status line, shaped like YCSB's StatusThread output.

    "12 sec: 34567 operations; 2890.1 current ops/sec; [READ: Count=1450, 50=812, 99=2431] ..."
    """
    rate = interval_operations / interval_s if interval_s > 0 else 0.0
    parts = [f"{elapsed_s:.0f} sec: {operations} operations; {rate:.1f} current ops/sec;"]
    for name in sorted(interval_histograms, key=_section_order):
        h = interval_histograms[name]
        parts.append(
            f"[{name}: Count={h.get_total_count()}, 50={h.get_value_at_percentile(50)}, "
            f"99={h.get_value_at_percentile(99)}]"
        )
    return " ".join(parts)
