"""Running SQL text: scripts (`-e`, standard input) and a line-based interactive loop.

Scripts run statement by statement and go on after an error (like `psql -f`); the caller
gets the number of errors. The interactive loop reads lines until a `;` ends a statement,
shows the transaction state in its prompt (`spanlite>`, `spanlite*>` inside BEGIN,
`spanlite!>` after an error inside BEGIN) and knows `\\q`, `\\dt`, `\\timing`, `\\?`.
(A prompt_toolkit shell with history and the remaining meta-commands is the next step.)
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import trio

from ranges.api import SpanliteError
from sql_lite_front import parser
from sql_lite_front.errors import SqlError
from sql_lite_front.executor import Session
from sql_lite_front.output import render

HELP = r"""meta-commands:
  \q          quit (also Ctrl-D)
  \dt         list tables
  \timing     toggle printing how long each statement took
  \?          this text
SQL statements end with ';' and may span lines."""

PROMPTS = {"idle": "spanlite> ", "open": "spanlite*> ", "failed": "spanlite!> "}


async def run_script(session: Session, text: str, fmt: str, out: Callable[[str], None],
                     err: Callable[[str], None], timing: bool = False) -> int:
    """Run every statement of `text`; returns how many failed."""
    try:
        statements = parser.parse(text)
    except SqlError as e:
        err(e.format())
        return 1
    errors = 0
    for statement in statements:
        started = time.perf_counter()
        try:
            result = await session.execute_statement(statement)
        except SqlError as e:
            err(e.format())
            errors += 1
            continue
        except SpanliteError as e:
            err(f"ERROR:  {e.message}\nSQLSTATE: XX000")
            errors += 1
            continue
        out(render(result, fmt))
        if timing:
            out(f"Time: {1000 * (time.perf_counter() - started):.3f} ms")
    return errors


async def interactive(session: Session, fmt: str = "table") -> None:
    out = print
    timing = False
    buffer: list[str] = []
    while True:
        prompt = PROMPTS[session.transaction_state] if not buffer else "       -> "
        try:
            line = await trio.to_thread.run_sync(input, prompt)
        except EOFError:
            out("")
            return
        stripped = line.strip()
        if not buffer and stripped.startswith("\\"):
            if stripped in ("\\q", "\\quit"):
                return
            if stripped == "\\timing":
                timing = not timing
                out(f"Timing is {'on' if timing else 'off'}.")
            elif stripped == "\\dt":
                await run_script(session, "SHOW TABLES;", fmt, out, _stderr)
            else:
                out(HELP)
            continue
        buffer.append(line)
        if stripped.endswith(";"):
            text, buffer = "\n".join(buffer), []
            await run_script(session, text, fmt, out, _stderr, timing)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)
