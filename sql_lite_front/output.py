"""Printing results the way psql does (`--format table`), or as CSV or JSON lines.

table: columns aligned, headers centred, a `-+-` rule, numbers right-aligned, `(N rows)` after
       a SELECT; NULL prints empty. Expanded (psql's `\\x`): one `column | value` line per
       column under a `-[ RECORD n ]-+-----` rule per row, drawn as psql's print.c draws it.
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


def render(result: Result, fmt: str = "table", *, expanded: bool = False) -> str:
    """The text to print for `result`: its status for statements without columns (INSERT 0 1)."""
    if not result.columns:
        return result.status
    if fmt == "csv":
        return _csv(result)
    if fmt == "json":
        return "\n".join(json.dumps(dict(zip(result.columns, (_json_value(v) for v in row)))) for row in result.rows)
    if expanded:
        return render_expanded(result.columns, result.rows)
    return render_table(result.columns, result.rows)


def _cell(value: object) -> str:
    return "" if value is None else to_text(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rows_footer(count: int) -> str:
    return f"({count} row{'' if count == 1 else 's'})"


def render_table(columns: list[str], rows: list[tuple], *, title: str | None = None, footer: bool = True) -> str:
    """psql's aligned table; `title` is centred above it (as `\\d` shows `Table "t"`)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    header = " | ".join(_centre(c, w) for c, w in zip(columns, widths))
    rule = "-+-".join("-" * w for w in widths)
    lines = [" " + header.rstrip(), "-" + rule + "-"]
    for row, values in zip(cells, rows):
        parts = [c.rjust(w) if _is_number(v) else c.ljust(w) for c, w, v in zip(row, widths, values)]
        lines.append(" " + " | ".join(parts).rstrip())
    if footer:
        lines.append(_rows_footer(len(rows)))
    if title is not None:
        lines.insert(0, title.center(len(rule) + 2).rstrip())
    return "\n".join(lines)


def _centre(text: str, width: int) -> str:
    """psql's centring: an odd space goes to the right (str.center may put it on the left)."""
    pad = width - len(text)
    return " " * (pad // 2) + text + " " * (pad - pad // 2)


def render_expanded(columns: list[str], rows: list[tuple]) -> str:
    """psql's `\\x` layout:

        -[ RECORD 1 ]-----
        id      | 7
        name    | ada
    """
    if not rows:
        return _rows_footer(0)
    name_width = max(len(c) for c in columns)
    cells = [[_cell(v) for v in row] for row in rows]
    value_width = max(len(c) for row in cells for c in row)
    lines = []
    for number, row in enumerate(cells, start=1):
        lines.append(_record_rule(number, name_width, value_width))
        lines += [f"{name.ljust(name_width)} | {value}".rstrip() for name, value in zip(columns, row)]
    return "\n".join(lines)


def _record_rule(number: int, name_width: int, value_width: int) -> str:
    """`-[ RECORD n ]` over the name column, `-+-` at the bar when the label leaves room, then
    dashes over the values (print_aligned_vertical_line, border 1)."""
    label = f"-[ RECORD {number} ]"
    overhang = len(label) - name_width  # how far the label reaches past the name column
    if overhang <= 0:
        return label + "-" * -overhang + "-+-" + "-" * value_width
    joint = "-+-"[overhang:] if overhang < 3 else ""
    return label + joint + "-" * max(value_width - max(overhang - 3, 0), 0)


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
