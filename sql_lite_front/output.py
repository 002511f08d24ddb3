"""Printing results the way psql does (`--format table`), or as CSV or JSON lines.

table: columns aligned, a header rule, `(N rows)` after a SELECT; NULL prints empty.
csv:   a header line, then RFC 4180 rows (NULL is an empty field).
json:  one JSON object per row, keyed by column name (bytes as "\\x..." hex, like psql's bytea).
"""

from __future__ import annotations

import csv
import io
import json

from sql_lite_front.evaluator import to_text
from sql_lite_front.executor import Result

FORMATS = ("table", "csv", "json")


def render(result: Result, fmt: str = "table") -> str:
    if not result.columns:
        return result.status
    if fmt == "csv":
        return _csv(result)
    if fmt == "json":
        return "\n".join(json.dumps(dict(zip(result.columns, (_json_value(v) for v in row)))) for row in result.rows)
    return _table(result)


def _cell(value: object) -> str:
    return "" if value is None else to_text(value)


def _table(result: Result) -> str:
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(result.columns)]
    header = " | ".join(c.center(w) for c, w in zip(result.columns, widths))
    rule = "-+-".join("-" * w for w in widths)
    lines = [" " + header.rstrip(), "-" + rule + "-"]
    for row, values in zip(cells, result.rows):
        parts = [c.rjust(w) if isinstance(v, (int, float)) and not isinstance(v, bool) else c.ljust(w)
                 for c, w, v in zip(row, widths, values)]
        lines.append(" " + " | ".join(parts).rstrip())
    count = len(result.rows)
    lines.append(f"({count} row{'' if count == 1 else 's'})")
    return "\n".join(lines)


def _csv(result: Result) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue().rstrip("\n")


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, float) and value != value:
        return "NaN"
    return value
