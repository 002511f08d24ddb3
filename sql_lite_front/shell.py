"""The SQL shell: scripts (`-e`, standard input, `\\i FILE`) and the interactive prompt_toolkit loop.

    status = await run_session(Session(db), execute=None, fmt="table")   # what `spanlite sql` runs

Design:
- **Split first, then parse each statement.** `split_script` is a small lexer that knows just
  enough SQL to find the `;` that end statements: single-quoted strings ('' escapes), double-quoted
  identifiers, dollar-quoted strings, `--` and (nested) `/* */` comments. Each piece is then parsed
  on its own, so a syntax error in one statement is reported with its line in the script and the
  next statement still runs, like `psql -f`. The same splitter tells the interactive loop when the
  text typed so far ends a statement (a `;` outside quotes), so both agree on what a statement is.
- **Meta-commands** (`\\?`, `\\q`, `\\dt`, `\\d [table]`, `\\timing`, `\\x`, `\\i FILE`) are lines
  that start with a backslash where no statement is in progress; they run in scripts as well as
  at the prompt (psql accepts `\\i` in files too). They end at the end of their line.
- **One error format** everywhere: `SqlError.format()` (ERROR / LINE + caret / DETAIL / HINT /
  SQLSTATE). A script's errors get a `source:line:` prefix, as psql's `psql:file:3: ERROR:`.
- **The interactive loop** reads lines with prompt_toolkit in a worker thread
  (`trio.to_thread.run_sync(prompt_session.prompt, ...)`) while the SQL runs in trio; in
  `spanlite demo` the whole cluster lives in the same trio loop, so nothing here may block it.
  The prompt shows the transaction state, as psql's `=>`/`*>`/`!>`: `spanlite> ` idle,
  `spanlite*> ` inside BEGIN, `spanlite!> ` in a failed block, `spanlite-> ` continuing a
  statement. Ctrl-C at the prompt clears the statement being typed, Ctrl-C while a statement runs
  cancels it at its next read or write (57014), Ctrl-D quits (rolling back an open transaction).
- Retries: a statement outside BEGIN..COMMIT runs through `db.run_transaction`, which retries a
  retryable conflict by itself (executor.py); inside a block a conflict is 40001 with a hint.

HAZARD: prompt_toolkit runs in a non-main thread, so it cannot install signal handlers: terminal
resizes are noticed at the next prompt only. Ctrl-C at the prompt is a key press (raw mode), not
a signal, and arrives as KeyboardInterrupt from `prompt()`.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

from ranges.api import SpanliteError
from sql_lite_front import catalog, parser
from sql_lite_front.catalog import TableDescriptor
from sql_lite_front.errors import SqlError, in_failed_sql_transaction
from sql_lite_front.executor import Result, Session
from sql_lite_front.output import render, render_table

Output = Callable[[str], None]

HELP = r"""General
  \q                 quit (also Ctrl-D; an open transaction is rolled back)
  \?                 this help

Informational
  \dt                list tables
  \d                 list tables (same as \dt)
  \d TABLE           describe a table: columns, primary key, indexes

Formatting
  \x [on|off]        toggle expanded output (one line per column, like psql's \x)
  \timing [on|off]   toggle printing how long each statement took

Input
  \i FILE            run the statements and meta-commands in FILE

SQL statements end with ';' and may span lines; Ctrl-C clears the statement being typed
(or cancels the one running). Try: SHOW TABLES; SHOW RANGES FROM TABLE t; EXPLAIN SELECT ..."""

PROMPTS = {"idle": "spanlite> ", "open": "spanlite*> ", "failed": "spanlite!> "}
CONTINUATION_PROMPT = "spanlite-> "
HISTORY_ENV = "SPANLITE_HISTORY"
DEFAULT_HISTORY = "~/.spanlite_history"
MAX_INCLUDE_DEPTH = 16  # \i of a file that includes itself must end somewhere


# ---------------------------------------------------------------------------------------
# Splitting a script into statements and meta-commands


@dataclass(frozen=True)
class Piece:
    """One statement (kind "sql", without its ';') or meta-command line (kind "meta", without
    its newline) of a script. `start` is the offset of its first character in the script (a
    statement starts at its first character that is neither blank nor a comment); `line` is
    that character's 1-based line. `terminated` is False for a statement the script ended
    inside of; `unterminated` then names what was left open ("quoted string", ...), if any."""

    kind: str
    text: str
    start: int
    line: int
    terminated: bool = True
    unterminated: str | None = None


_COMMENTS = ("comment", "/* comment")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$]")


def split_script(text: str) -> list[Piece]:
    """The statements and meta-commands of `text`, in order (empty statements are skipped)."""
    pieces: list[Piece] = []
    statement_start: int | None = None  # None while only blanks and comments were seen
    i = 0
    while i < len(text):
        char = text[i]
        if char == ";":
            if statement_start is not None:
                pieces.append(_piece("sql", text, statement_start, i))
            statement_start, i = None, i + 1
        elif char == "\\" and statement_start is None:
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            pieces.append(_piece("meta", text, i, end))
            i = end + 1
        elif char.isspace():
            i += 1
        else:
            end, what = _skip_quoted_or_comment(text, i) or (i + 1, "")
            if statement_start is None and what not in _COMMENTS:
                statement_start = i
            if end is None:  # the script ends inside a string or comment
                start = i if statement_start is None else statement_start
                pieces.append(_piece("sql", text, start, len(text), terminated=False, unterminated=what))
                return pieces
            i = end
    if statement_start is not None:
        pieces.append(_piece("sql", text, statement_start, len(text), terminated=False))
    return pieces


def _piece(kind: str, text: str, start: int, end: int, **fields) -> Piece:
    return Piece(kind, text[start:end], start, text.count("\n", 0, start) + 1, **fields)


def _skip_quoted_or_comment(text: str, i: int) -> tuple[int | None, str] | None:
    """If a string, quoted identifier or comment starts at `i`: (the offset after it, what it
    is); (None, what) if the text ends inside it; None for any other character."""
    char = text[i]
    if char == "'":
        return _closing_quote(text, i, "'"), "quoted string"
    if char == '"':
        return _closing_quote(text, i, '"'), "quoted identifier"
    if text.startswith("--", i):
        newline = text.find("\n", i)
        return (len(text) if newline < 0 else newline + 1), "comment"
    if text.startswith("/*", i):
        return _end_of_block_comment(text, i), "/* comment"  # the name matters only when left open
    if char == "$" and (i == 0 or not _IDENTIFIER_CHAR.match(text[i - 1])):
        tag = _DOLLAR_TAG.match(text, i)
        if tag is not None:
            close = text.find(tag.group(), tag.end())
            return (None if close < 0 else close + len(tag.group())), "dollar-quoted string"
    return None


def _closing_quote(text: str, i: int, quote: str) -> int | None:
    """The offset after the quote closing the one at `i` (a doubled quote is an escaped one)."""
    j = i + 1
    while True:
        j = text.find(quote, j)
        if j < 0:
            return None
        if not text.startswith(quote, j + 1):
            return j + 1
        j += 2


def _end_of_block_comment(text: str, i: int) -> int | None:
    """PostgreSQL's /* */ comments nest (so do sqlglot's)."""
    depth, j = 0, i
    while j < len(text):
        if text.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif text.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return None


def _open_quote(text: str) -> bool:
    """True when `text` ends inside a string, quoted identifier or comment."""
    pieces = split_script(text)
    return bool(pieces) and pieces[-1].unterminated is not None


class MetaCommandError(Exception):
    """A meta-command the shell itself could not run (no server involved, so no SQLSTATE):
    printed as the one line psql prints, e.g. `invalid command \\foo. Try \\? for help.`"""


# ---------------------------------------------------------------------------------------
# The shell: runs pieces, meta-commands and keeps the display settings


class Shell:
    """One user's shell over a Session: display settings (`fmt`, `\\x`, `\\timing`) and where
    output goes. `errors` counts the statements and meta-commands that failed."""

    def __init__(self, session: Session, fmt: str = "table", out: Output = print, err: Output | None = None,
                 *, timing: bool = False) -> None:
        self.session = session
        self.fmt = fmt
        self.out = out
        self.err = err or _stderr
        self.timing = timing
        self.expanded = False
        self.quit = False  # \q was given
        self.errors = 0
        self._include_depth = 0
        self._running: trio.CancelScope | None = None  # the statement Ctrl-C would cancel

    # -------------------------------------------------------------- scripts

    async def run_script(self, text: str, source: str | None = None) -> int:
        """Run every statement and meta-command of `text`, going on after errors; returns how
        many failed. `source` ("<stdin>", a file name) prefixes error messages with
        `source:line:`."""
        before = self.errors
        for piece in split_script(text):
            await self.run_piece(piece, source)
            if self.quit:
                break
        return self.errors - before

    async def run_piece(self, piece: Piece, source: str | None = None) -> None:
        if piece.kind == "meta":
            await self._timed(self.meta_command(piece.text), piece, source)
        else:
            await self._timed(self._statement(piece), piece, source)

    async def _timed(self, work: Awaitable[None], piece: Piece, source: str | None) -> None:
        started = time.perf_counter()
        try:
            await self._interruptible(work)
        except SqlError as e:
            self._report(e, piece, source)
        except SpanliteError as e:  # the executor converts these; a last line of defence
            self._report(SqlError(e.message, "XX000"), piece, source)
        except MetaCommandError as e:
            self._report(e, piece, source)
        if self.timing and piece.kind == "sql":
            self.out(f"Time: {1000 * (time.perf_counter() - started):.3f} ms")

    async def _interruptible(self, work: Awaitable[None]) -> None:
        """Run `work` where the interactive shell's Ctrl-C watcher can cancel it, as psql cancels
        a query. (It takes effect at the statement's next read or write: pure computation, such
        as a big join, runs to its end.)"""
        with trio.CancelScope() as scope:
            self._running = scope
            try:
                await work
            finally:
                self._running = None
        if scope.cancelled_caught:
            if self.session.txn is not None:
                self.session.failed = True  # PostgreSQL aborts a block whose statement was cancelled
            raise SqlError("canceling statement due to user request", "57014")

    async def _statement(self, piece: Piece) -> None:
        if piece.unterminated is not None:
            raise SqlError(f"unterminated {piece.unterminated}", "42601", position=_opening_position(piece),
                           statement=piece.text, hint=_unterminated_hint(piece.unterminated))
        try:
            statements = parser.parse(piece.text)
        except SqlError:
            if self.session.txn is not None:
                self.session.failed = True  # PostgreSQL: a syntax error inside BEGIN fails the block too
            raise
        for statement in statements:
            result = await self.session.execute_statement(statement)
            self._show(result)

    def _show(self, result: Result) -> None:
        text = render(result, self.fmt, expanded=self.expanded)
        if text:
            self.out(text)

    def _report(self, error: SqlError | MetaCommandError, piece: Piece, source: str | None) -> None:
        self.errors += 1
        text = error.format() if isinstance(error, SqlError) else str(error)
        if source is not None:
            text = f"{source}:{_error_line(error, piece)}: {text}"
        self.err(text)

    # -------------------------------------------------------------- meta-commands

    async def meta_command(self, line: str) -> None:
        """Run one backslash command line (`\\d orders`); unknown ones are errors."""
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip().rstrip(";").strip()
        handler = _META_COMMANDS.get(name)
        if handler is None:
            raise MetaCommandError(f"invalid command {name}. Try \\? for help.")
        await handler(self, argument)

    async def _help(self, argument: str) -> None:
        self.out(HELP)

    async def _quit(self, argument: str) -> None:
        self.quit = True

    async def _timing(self, argument: str) -> None:
        self.timing = _toggle(self.timing, argument, "\\timing")
        self.out(f"Timing is {'on' if self.timing else 'off'}.")

    async def _expanded(self, argument: str) -> None:
        self.expanded = _toggle(self.expanded, argument, "\\x")
        self.out(f"Expanded display is {'on' if self.expanded else 'off'}.")

    async def _list_tables(self, argument: str) -> None:
        tables = await self._read_catalog(catalog.list_tables)
        if not tables:
            self.out("Did not find any relations.")
            return
        rows = [(t.name, "table", ", ".join(t.primary_key), ", ".join(i.name for i in t.indexes))
                for t in tables]
        self.out(render_table(["Name", "Type", "Primary key", "Indexes"], rows, title="List of relations"))

    async def _describe(self, argument: str) -> None:
        if not argument:
            await self._list_tables(argument)
            return
        name = _identifier(argument)
        table = await self._read_catalog(lambda txn: catalog.get_table(txn, name))
        if table is None:
            raise MetaCommandError(f'Did not find any relation named "{argument}". \\dt lists the tables.')
        self.out(describe_table(table))

    async def _include(self, argument: str) -> None:
        if not argument:
            raise MetaCommandError("\\i: missing required argument: \\i FILE runs the statements in FILE")
        if self._include_depth >= MAX_INCLUDE_DEPTH:
            raise MetaCommandError(f"\\i {argument}: files include each other more than {MAX_INCLUDE_DEPTH} "
                                   f"deep; is a file including itself?")
        try:
            text = await trio.Path(os.path.expanduser(argument)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            where = "" if os.path.isabs(argument) else f" (relative paths start at {os.getcwd()})"
            raise MetaCommandError(f"{argument}: {reason}{where}") from None
        self._include_depth += 1
        try:
            await self.run_script(text, source=str(argument))
        finally:
            self._include_depth -= 1

    async def _read_catalog(self, read: Callable):
        """Catalog reads for \\d: inside the open transaction (so its own DDL shows), else in a
        snapshot that takes no locks."""
        session = self.session
        if session.txn is not None:
            if session.failed:
                raise in_failed_sql_transaction()
            return await read(session.txn)
        async with session.db.read_only() as snapshot:
            return await read(snapshot)

    # -------------------------------------------------------------- interactive loop

    async def interact(self, prompt_session=None) -> None:
        """Read statements and meta-commands at a prompt until \\q or Ctrl-D."""
        if prompt_session is None:
            prompt_session = new_prompt_session()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._cancel_statements_on_sigint)
            try:
                await self._prompt_loop(prompt_session)
            finally:
                nursery.cancel_scope.cancel()

    async def _cancel_statements_on_sigint(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """One SIGINT receiver for the whole session (a receiver closed with a signal pending
        re-raises it as KeyboardInterrupt): a Ctrl-C while a statement runs cancels it, one
        between statements is ignored. At the prompt Ctrl-C is a key, not a signal."""
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                if self._running is not None:
                    self._running.cancel()

    async def _prompt_loop(self, prompt_session) -> None:
        buffer = ""
        while not self.quit:
            prompt = CONTINUATION_PROMPT if buffer else PROMPTS[self.session.transaction_state]
            try:
                line = await trio.to_thread.run_sync(prompt_session.prompt, prompt)
            except KeyboardInterrupt:
                buffer = ""  # Ctrl-C: drop what was typed, like psql
                continue
            except EOFError:
                break  # Ctrl-D
            buffer = await self._take_line(buffer, line)
        await self._leave()

    async def _take_line(self, buffer: str, line: str) -> str:
        """Add a typed line; run what it completes; returns the text still being typed."""
        if buffer and line.lstrip().startswith("\\") and not _open_quote(buffer):
            await self.run_piece(Piece("meta", line.strip(), 0, 1))  # psql: meta-commands interleave
            return buffer
        text = f"{buffer}\n{line}" if buffer else line
        pieces = split_script(text)
        pending = pieces[-1] if pieces and pieces[-1].kind == "sql" and not pieces[-1].terminated else None
        for piece in pieces:
            if piece is pending:
                break
            await self.run_piece(piece)
            if self.quit:
                return ""
        return text[pending.start:] if pending is not None else ""

    async def _leave(self) -> None:
        """Quitting inside BEGIN: roll back now rather than leave locks until the transaction
        record expires (and say so: the user may have expected a COMMIT)."""
        if self.session.txn is None:
            return
        try:
            await self.session.execute_statement(parser.Rollback())
        except SpanliteError as e:
            self.err(f"WARNING:  the rollback failed ({e.message}); the locks go when the transaction expires")
            return
        self.out("ROLLBACK: the open transaction was rolled back (it had not been committed)")


_META_COMMANDS = {
    "\\?": Shell._help,
    "\\help": Shell._help,
    "\\q": Shell._quit,
    "\\quit": Shell._quit,
    "\\timing": Shell._timing,
    "\\x": Shell._expanded,
    "\\dt": Shell._list_tables,
    "\\d": Shell._describe,
    "\\i": Shell._include,
    "\\include": Shell._include,
}


def _toggle(current: bool, argument: str, command: str) -> bool:
    word = argument.lower()
    if word == "":
        return not current
    if word in ("on", "true", "1"):
        return True
    if word in ("off", "false", "0"):
        return False
    raise MetaCommandError(f'unrecognized value "{argument}" for "{command}": Boolean expected '
                           f"({command} on, {command} off, or {command} alone to toggle)")


def _identifier(text: str) -> str:
    """A table name as PostgreSQL folds it: "Quoted" kept, unquoted lower-cased."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text.lower()


def describe_table(table: TableDescriptor) -> str:
    """psql's `\\d TABLE`: a title, the columns (type, nullability, default), the indexes."""
    rows = [(c.name, _type_name(c), "not null" if c.not_null else "", c.default_sql or "")
            for c in table.visible_columns()]
    text = render_table(["Column", "Type", "Nullable", "Default"], rows, title=f'Table "{table.name}"',
                        footer=False)
    key = ", ".join(table.primary_key)
    indexes = [f'    "{table.name}_pkey" PRIMARY KEY ({key})'
               + (" (a hidden rowid: no PRIMARY KEY was declared)" if key == catalog.ROWID_COLUMN else "")]
    indexes += [f'    "{i.name}"{" UNIQUE" if i.unique else ""} ({", ".join(i.columns)})' for i in table.indexes]
    return "\n".join([text, "Indexes:"] + indexes)


def _type_name(column) -> str:
    name = column.type.value.lower()
    return f"varchar({column.max_length})" if column.max_length is not None else name


def _opening_position(piece: Piece) -> int | None:
    """1-based position of the quote or comment the piece was left inside."""
    position = 0
    while position < len(piece.text):
        skipped = _skip_quoted_or_comment(piece.text, position)
        if skipped is not None and skipped[0] is None:
            return position + 1
        position = skipped[0] if skipped is not None else position + 1
    return None


def _unterminated_hint(what: str) -> str:
    closer = {"quoted string": "'", "quoted identifier": '"', "/* comment": "*/"}.get(what, "the closing $tag$")
    return f"close it with {closer}"


def _error_line(error: SqlError, piece: Piece) -> int:
    """The script line of the error: the statement's first line, or the line of its position."""
    position = getattr(error, "position", None)
    if position is not None and error.statement == piece.text:
        return piece.line + piece.text.count("\n", 0, max(position - 1, 0))
    return piece.line


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# prompt_toolkit


def history_path() -> str | None:
    """Where the history lives: $SPANLITE_HISTORY, else ~/.spanlite_history ("" keeps none)."""
    path = os.environ.get(HISTORY_ENV)
    if path is None:
        path = DEFAULT_HISTORY
    return os.path.expanduser(path) if path else None


def new_history():
    """A FileHistory if its file can be written, else an in-memory one: history must never be
    the reason the shell cannot start (read-only home, a directory in the way, ...)."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    class _ForgivingFileHistory(FileHistory):
        def store_string(self, string: str) -> None:
            try:
                super().store_string(string)
            except OSError:
                pass  # the disk filled up or the file went away: lose history, keep the shell

    path = history_path()
    if path is None:
        return InMemoryHistory()
    try:
        with open(path, "ab"):
            pass
    except OSError:
        return InMemoryHistory()
    return _ForgivingFileHistory(path)


def new_prompt_session(**kwargs):
    from prompt_toolkit import PromptSession

    return PromptSession(history=new_history(), **kwargs)


# ---------------------------------------------------------------------------------------
# Entry points


async def run_script(session: Session, text: str, fmt: str = "table", out: Output = print,
                     err: Output | None = None, timing: bool = False, source: str | None = None) -> int:
    """Run every statement of `text` (going on after errors); returns how many failed."""
    return await Shell(session, fmt, out, err, timing=timing).run_script(text, source)


async def interactive(session: Session, fmt: str = "table", *, prompt_session=None, out: Output = print,
                      err: Output | None = None) -> None:
    """The interactive shell (callers check that standard input is a terminal)."""
    await Shell(session, fmt, out, err).interact(prompt_session)


async def run_session(session: Session, *, execute: str | None, fmt: str = "table",
                      banner: Callable[[], None] | None = None) -> int:
    """What `spanlite sql` and `spanlite demo` do once connected: `-e` STATEMENTS, else standard
    input when it is not a terminal (a script), else the interactive shell after `banner()`.
    Returns the exit status: 1 if any statement failed, else 0."""
    if execute is not None:
        failed = await run_script(session, execute, fmt, source="<command line>" if "\n" in execute else None)
        return 1 if failed else 0
    if not sys.stdin.isatty():
        text = await trio.to_thread.run_sync(sys.stdin.read)  # not in trio: the cluster may live here
        return 1 if await run_script(session, text, fmt, source="<stdin>") else 0
    if banner is not None:
        banner()
    await interactive(session, fmt)
    return 0
