"""The interactive KV shell of `spanlite demo` (the SQL issue replaces it with SQL).

Commands: put KEY VALUE | get KEY | del KEY | scan START END [LIMIT] | status | help | quit.
Keys and values are text (UTF-8); quote with "..." to include spaces.
"""

from __future__ import annotations

import shlex
import sys
from typing import Callable

import trio

from cluster.client import Client
from ranges.api import SpanliteError

HELP = """commands:
  put KEY VALUE         write a key
  get KEY               read a key (prints (not found) when missing)
  del KEY               delete a key
  scan START END [N]    keys in [START, END), at most N
  status                nodes and ranges
  help                  this text
  quit                  leave (also Ctrl-D)"""


async def run_command(db: Client, line: str, out: Callable[[str], None]) -> bool:
    """Run one shell line; False when the shell should exit."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        out(f"error: {e} (close your quotes)")
        return True
    if not words:
        return True
    name, args = words[0].lower(), words[1:]
    if name in ("quit", "exit", "\\q"):
        return False
    try:
        await _dispatch(db, name, args, out)
    except SpanliteError as e:
        out(f"error: {e.message}")
    except ValueError as e:
        out(f"error: {e}")
    return True


async def _dispatch(db: Client, name: str, args: list[str], out: Callable[[str], None]) -> None:
    if name == "help" or name == "\\?":
        out(HELP)
    elif name == "put" and len(args) == 2:
        await db.put(args[0].encode(), args[1].encode())
        out("OK")
    elif name == "get" and len(args) == 1:
        value = await db.get(args[0].encode())
        out("(not found)" if value is None else value.decode(errors="replace"))
    elif name in ("del", "delete") and len(args) == 1:
        await db.delete(args[0].encode())
        out("OK")
    elif name == "scan" and len(args) in (2, 3):
        limit = int(args[2]) if len(args) == 3 else None
        rows = await db.scan(args[0].encode(), args[1].encode(), limit)
        for key, value in rows:
            out(f"{key.decode(errors='replace')}\t{value.decode(errors='replace')}")
        out(f"({len(rows)} rows)")
    elif name == "status":
        from cluster.cli import format_status

        out(format_status(await db.status()))
    else:
        out(f"error: cannot parse {name!r} with {len(args)} arguments; type `help` for the commands")


async def interactive(db: Client, *, prompt: str = "spanlite> ") -> None:
    """Read commands from stdin until EOF or quit. A non-terminal stdin is read as a script."""
    tty = sys.stdin.isatty()
    while True:
        line = await trio.to_thread.run_sync(_read_line, prompt if tty else "")
        if line is None:
            return
        if not await run_command(db, line, print):
            return


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None
