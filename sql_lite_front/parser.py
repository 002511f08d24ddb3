"""The parsing front of the SQL layer: SQL text -> a small typed statement model for the planner.

    parse("BEGIN; UPSERT INTO kv VALUES (1, 'a'); COMMIT")
    # [Begin(), Insert(table='kv', columns=None, rows=((1, 'a'),), select=None,
    #                  on_conflict='upsert', returning=None), Commit()]   (row values: sqlglot trees)

sqlglot (dialect "postgres") tokenizes and parses; this module
1. splits a script into statements on sqlglot's `;` tokens (so `;` inside strings is safe);
2. handles at token level what sqlglot cannot parse (PostgreSQL has no such syntax, or sqlglot
   returns a generic Command): UPSERT (its token becomes INSERT, positions unchanged),
   AS OF SYSTEM TIME (cut out of the tokens, its expression parsed by sqlglot), SHOW, EXPLAIN,
   ALTER TABLE .. SPLIT AT VALUES (the name and the VALUES parsed by sqlglot), and transaction
   control, for which sqlglot returns a Command, a Transaction or an alias expression
   (START TRANSACTION) depending on the words, so a fixed list of accepted forms is clearer;
3. converts sqlglot's trees into the model below, rejecting what the SQL layer does not support
   with FeatureNotSupported (0A000) naming the construct, and turns sqlglot's errors into
   SqlSyntaxError (42601) with the 1-based character position in the text given to parse().

Statement model (frozen dataclasses; sequences are tuples since parsed statements are cached and
shared; names are str):
    CreateTable(name, columns: (ColumnDef, ...), primary_key: (str, ...) | None, if_not_exists)
      ColumnDef(name, type: SqlType, not_null, default_expr, primary_key, max_length)
    DropTable(name, if_exists)     CreateIndex(name | None, table, columns, unique, if_not_exists)
    DropIndex(name, if_exists)
    Insert(table, columns | None, rows | None, select: Select | None,
           on_conflict: None | "nothing" | "upsert", returning | None)
    Select(tree, from_table: TableRef | None, joins: (JoinClause, ...), projections, where,
           group_by, having, order_by: (OrderItem, ...), limit, offset, distinct, as_of_system_time)
    Update(table, assignments: (Assignment(column, expr), ...), where)     Delete(table, where)
    Begin()  Commit()  Rollback()  ShowTables()  ShowRanges(table | None)
    AlterTableSplitAt(table, rows)  Explain(statement)

Types: INT/INTEGER/BIGINT/SMALLINT -> INT; FLOAT/REAL/DOUBLE PRECISION -> FLOAT; TEXT/STRING/
VARCHAR[(n)]/CHAR[(n)] -> TEXT with max_length n (CHAR alone is CHAR(1); no blank padding);
BOOL/BOOLEAN -> BOOL; BYTES/BYTEA -> BYTES; DECIMAL/NUMERIC and all others: 0A000. The columns of
the primary key get not_null=True and primary_key=True, whether declared on a column or on the table.

Names: unquoted identifiers are folded to lower case and quoted ones kept, PostgreSQL's rule, in the
model and inside the expression trees (sqlglot's normalize_identifiers), so `Foo` and `foo` are one
column everywhere.

Expressions (select list, WHERE, SET values, VALUES rows, DEFAULT, LIMIT, AS OF SYSTEM TIME) are
kept as sqlglot trees (`sqlglot.exp.Expression`): the evaluator walks them, and a second expression
model would be a copy of sqlglot's with its own bugs. DDL carries no sqlglot object except DEFAULT.
This module rejects what a planner could silently get wrong: subqueries, window functions, CTEs,
set operations, outer/cross/NATURAL/USING joins, join conditions other than ANDed column equalities,
DISTINCT ON, locking clauses, and any clause of a statement it does not convert. An expression node
the evaluator does not know (a function, an operator) is the evaluator's to reject.

Text that is not Unicode (a lone surrogate, as a client decoding invalid UTF-8 with
surrogateescape passes on) is 22021 with its position, before tokenizing.

HAZARD: parsed statements are cached (an LRU keyed by the text) and shared between callers: treat
them and their sqlglot trees as immutable, and `.copy()` a tree before transforming it.
HAZARD: sqlglot's trees, token types and error fields change between versions (BEGIN, ON CONFLICT,
index parameters, COMMAND tokens did); this is written and tested against sqlglot 26.33: pin
`sqlglot>=26.33,<27` and rerun tests/sql_lite_front/test_parser.py before moving the pin. Do not
install sqlglot[rs]: with the Rust tokenizer, tokenizer errors (unterminated strings) lose their
position.
HAZARD: sqlglot is more lenient than PostgreSQL (it accepts e.g. a trailing comma in a column or
select list), and its syntax error points at the token where it gave up, sometimes one later than
PostgreSQL (`SELECT * FORM t` points at "t"; a hint then names FORM). Tests must not rely on
sqlglot rejecting exactly what PostgreSQL rejects.
HAZARD: parsing is synchronous CPU work on the caller's trio event loop: about 0.15-0.4 ms for a
short statement, but about 3 ms per KiB of a multi-row INSERT, so up to ~200 ms at the
MAX_STATEMENT_BYTES limit (64 KiB, the whole text of one call). A server should parse texts above a
few KiB with trio.to_thread.run_sync, so that other sessions keep being served (GIL switches).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Union

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.tokens import Token, TokenType

from sql_lite_front import errors
from sql_lite_front.encoding import SqlType
from sql_lite_front.errors import MAX_STATEMENT_BYTES, SqlError

__all__ = [
    "MAX_STATEMENT_BYTES", "PARSE_CACHE_SIZE", "parse", "parse_one", "clear_parse_cache",
    "parse_cache_info", "Statement", "ColumnDef", "CreateTable", "DropTable", "CreateIndex",
    "DropIndex", "Insert", "TableRef", "JoinClause", "OrderItem", "Select", "Assignment", "Update",
    "Delete", "Begin", "Commit", "Rollback", "ShowTables", "ShowRanges", "AlterTableSplitAt",
    "Explain",
]

PARSE_CACHE_SIZE = 1024  # scripts; at most 64 KiB each, most far smaller

Expr = exp.Expression


# ---------------------------------------------------------------------------------------------
# The statement model.


@dataclass(frozen=True)
class ColumnDef:
    name: str
    type: SqlType
    not_null: bool = False
    default_expr: Expr | None = None
    primary_key: bool = False
    max_length: int | None = None  # TEXT only: VARCHAR(n) / CHAR(n); None is unlimited


@dataclass(frozen=True)
class CreateTable:
    name: str
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...] | None  # None: no PRIMARY KEY declared
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropTable:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class CreateIndex:
    name: str | None  # None for `CREATE INDEX ON t (a)`: the catalog picks one
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropIndex:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class TableRef:
    name: str
    alias: str | None = None

    @property
    def ref_name(self) -> str:
        """The name columns qualify it by: the alias if any."""
        return self.alias or self.name


@dataclass(frozen=True)
class JoinClause:
    """An INNER JOIN whose ON is an AND of `column = column` (the pairs in `equalities`)."""

    table: TableRef
    on: Expr
    equalities: tuple[tuple[exp.Column, exp.Column], ...]


@dataclass(frozen=True)
class OrderItem:
    expr: Expr
    descending: bool = False
    nulls_first: bool = False  # resolved to PostgreSQL's default when not written


@dataclass(frozen=True)
class Select:
    tree: exp.Select  # the whole sqlglot tree, identifiers normalized
    from_table: TableRef | None  # None for `SELECT 1`
    joins: tuple[JoinClause, ...]
    projections: tuple[Expr, ...]  # exp.Star for *, exp.Alias for `expr AS name`
    where: Expr | None = None
    group_by: tuple[Expr, ...] = ()
    having: Expr | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: Expr | None = None
    offset: Expr | None = None
    distinct: bool = False
    as_of_system_time: Expr | None = None


@dataclass(frozen=True)
class Insert:
    table: str
    columns: tuple[str, ...] | None  # None: all columns, in table order
    rows: tuple[tuple[Expr, ...], ...] | None  # VALUES rows; None when `select` is set
    select: Select | None = None  # INSERT ... SELECT
    on_conflict: str | None = None  # None, "nothing" (ON CONFLICT DO NOTHING) or "upsert" (UPSERT)
    returning: tuple[Expr, ...] | None = None


@dataclass(frozen=True)
class Assignment:
    column: str
    expr: Expr


@dataclass(frozen=True)
class Update:
    table: str
    assignments: tuple[Assignment, ...]
    where: Expr | None = None


@dataclass(frozen=True)
class Delete:
    table: str
    where: Expr | None = None


@dataclass(frozen=True)
class Begin:
    pass


@dataclass(frozen=True)
class Commit:
    pass


@dataclass(frozen=True)
class Rollback:
    pass


@dataclass(frozen=True)
class ShowTables:
    pass


@dataclass(frozen=True)
class ShowRanges:
    table: str | None = None  # None: every range of the cluster


@dataclass(frozen=True)
class AlterTableSplitAt:
    table: str
    rows: tuple[tuple[Expr, ...], ...]  # primary key prefixes to split at


@dataclass(frozen=True)
class Explain:
    statement: Union[Select, Insert, Update, Delete]


Statement = Union[
    CreateTable, DropTable, CreateIndex, DropIndex, Insert, Select, Update, Delete, Begin, Commit,
    Rollback, ShowTables, ShowRanges, AlterTableSplitAt, Explain,
]


# ---------------------------------------------------------------------------------------------
# Public API.


def parse(sql: str) -> list[Statement]:
    """The statements of `sql` (`;`-separated; empty ones skipped). Raises SqlError."""
    try:
        _check_size(sql)
        return list(_parse_script(sql))  # a new list, so a caller cannot change the cached tuple
    except SqlError as err:
        if err.statement is None:
            err.statement = sql  # lets format() draw the caret
        raise


def parse_one(sql: str) -> Statement:
    """The single statement of `sql` (e.g. for a prepared statement); 42601 for none or several."""
    statements = parse(sql)
    if len(statements) != 1:
        what = "no statement" if not statements else "several statements"
        raise SqlError(f"expected one statement, got {what}", "42601", statement=sql)
    return statements[0]


def clear_parse_cache() -> None:
    _parse_script.cache_clear()


def parse_cache_info() -> functools._CacheInfo:
    return _parse_script.cache_info()


def _check_size(sql: str) -> None:
    # A str of n characters has between n and 4n UTF-8 bytes: encode only when it matters.
    if len(sql) > MAX_STATEMENT_BYTES // 4:
        size = len(sql.encode("utf-8", "surrogatepass"))
        if size > MAX_STATEMENT_BYTES:
            raise errors.statement_too_long(size)
    _check_encoding(sql)


def _check_encoding(sql: str) -> None:
    """22021 for text that is not Unicode: a lone surrogate, as a client that decoded invalid
    UTF-8 bytes with errors="surrogateescape" passes them on. (Stored, it could never be read.)"""
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as err:
        char = sql[err.start]
        raise errors.CharacterNotInRepertoire(
            f'invalid byte sequence for encoding "UTF8": {_surrogate_bytes(char)}', position=err.start + 1,
            hint="The text is not valid UTF-8; send it as UTF-8 (bytes belong in a BYTEA column).",
        ) from None


def _surrogate_bytes(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the undecodable byte code - 0xDC00
        return f"0x{code - 0xDC00:02x}"
    return " ".join(f"0x{b:02x}" for b in char.encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_script(sql: str) -> tuple[Statement, ...]:
    tokens = _tokenize(sql, 0, len(sql))
    return tuple(_statement(sql, chunk) for chunk in _split_statements(tokens))


# ---------------------------------------------------------------------------------------------
# Tokens: sqlglot's, with positions relative to the whole text given to parse().

_DIALECT = Dialect.get_or_raise("postgres")
# Token types after which sqlglot's tokenizer swallows the rest of the statement as one STRING.
_SWALLOWING = frozenset(_DIALECT.tokenizer_class.COMMANDS)
_QUOTED = frozenset(
    getattr(TokenType, name)
    for name in (
        "STRING", "IDENTIFIER", "NATIONAL_STRING", "HEREDOC_STRING", "BIT_STRING", "HEX_STRING",
        "BYTE_STRING", "RAW_STRING", "UNICODE_STRING",
    )
    if hasattr(TokenType, name)
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\s+[A-Za-z_][A-Za-z0-9_$]*)*\Z")


def _tokenize(sql: str, start: int, end: int) -> list[Token]:
    """Tokens of sql[start:end], their start/end shifted to be offsets into `sql`."""
    tokenizer = _DIALECT.tokenizer()
    try:
        tokens = tokenizer.tokenize(sql[start:end])
    except TokenError as err:
        raise _token_error(sql, start, tokenizer.tokens) from err
    if start:
        for token in tokens:
            token.start += start
            token.end += start
    return tokens


def _token_error(sql: str, base: int, done: list[Token]) -> SqlError:
    """The error for text sqlglot could not tokenize: it starts after the last complete token."""
    offset = base + (done[-1].end + 1 if done else 0)
    while offset < len(sql) and sql[offset].isspace():
        offset += 1
    rest = sql[offset:]
    near = rest if len(rest) <= 40 else rest[:40] + "..."
    return errors.syntax_error(f'{_unterminated_what(rest)} at or near "{near}"', position=offset + 1)


def _unterminated_what(rest: str) -> str:
    if rest.startswith("/*"):
        return "unterminated /* comment"
    if rest.startswith("$"):
        return "unterminated dollar-quoted string"
    if re.match(r"(?i)(u&)?\"", rest):
        return "unterminated quoted identifier"
    if re.match(r"(?i)(u&|[ebxn])?'", rest):
        return "unterminated quoted string"
    return "syntax error"


def _split_statements(tokens: list[Token]) -> Iterator[list[Token]]:
    chunk: list[Token] = []
    for token in tokens:
        if token.token_type is TokenType.SEMICOLON:
            if chunk:
                yield chunk
            chunk = []
        else:
            chunk.append(token)
    if chunk:
        yield chunk


def _word(token: Token) -> str | None:
    """The upper-cased text of a keyword or unquoted name token; None for anything else."""
    if token.token_type in _QUOTED or not _WORD.match(token.text):
        return None
    return " ".join(token.text.upper().split())


def _words(tokens: Sequence[Token]) -> tuple[str | None, ...]:
    """Words one by one (sqlglot makes one token of e.g. "GROUP BY"); None for a non-word token."""
    words: list[str | None] = []
    for token in tokens:
        word = _word(token)
        words.extend(word.split() if word else [None])
    return tuple(words)


def _tail(sql: str, tokens: list[Token]) -> list[Token]:
    """The tokens after the first one, re-tokenized if sqlglot swallowed them into one string."""
    if tokens[0].token_type in _SWALLOWING:
        return _tokenize(sql, tokens[0].end + 1, tokens[-1].end + 1)
    return tokens[1:]


def _text(sql: str, tokens: Sequence[Token]) -> str:
    return sql[tokens[0].start : tokens[-1].end + 1]


# ---------------------------------------------------------------------------------------------
# One statement: the forms sqlglot cannot parse first, then sqlglot.


def _statement(sql: str, tokens: list[Token]) -> Statement:
    first = _words(tokens[:1])[0]  # sqlglot makes one token of e.g. "BEGIN TRANSACTION"
    if first in _TRANSACTION_WORDS:
        return _transaction_control(sql, tokens)
    if first == "EXPLAIN":
        return _explain(sql, tokens)
    if first == "SHOW":
        return _show(sql, tokens)
    split_at = _split_at_index(tokens) if first == "ALTER" else None
    if split_at is not None:
        return _alter_table_split_at(sql, tokens, split_at)
    upsert = first == "UPSERT"
    if upsert:
        tokens = [_insert_token(tokens[0]), *tokens[1:]]
    tokens, as_of = _cut_as_of_system_time(sql, tokens)
    statement = _convert(sql, tokens, _parse_tokens(sql, tokens), upsert)
    if as_of is None:
        return statement
    if not isinstance(statement, Select):
        raise errors.feature_not_supported("AS OF SYSTEM TIME outside a SELECT")
    return dataclasses.replace(statement, as_of_system_time=as_of)


def _parse_tokens(sql: str, tokens: list[Token], into: type[Expr] | None = None) -> Expr:
    """sqlglot's tree for `tokens` (one statement, or one `into` expression), names normalized."""
    parser = _DIALECT.parser()
    try:
        trees = parser.parse_into(into, tokens, sql) if into else parser.parse(tokens, sql)
    except ParseError as err:
        raise _syntax_error(sql, tokens, err) from err
    tree = trees[0]
    if tree is None:
        raise _end_of_input(sql, tokens)
    return normalize_identifiers(tree, dialect=_DIALECT)


def _syntax_error(sql: str, tokens: list[Token], err: ParseError) -> SqlError:
    info = err.errors[0] if err.errors else {}
    token = next((t for t in tokens if (t.line, t.col) == (info.get("line"), info.get("col"))), None)
    if token is None:
        return errors.syntax_error("syntax error")
    # sqlglot reports a missing piece at the last token. If that token cannot end a statement
    # (WHERE, a comma, an operator), the text stops short: PostgreSQL says "at end of input".
    unexpected = str(info.get("description", "")).startswith("Invalid expression / Unexpected token")
    if token is tokens[-1] and not unexpected and token.token_type not in _CAN_END:
        return _end_of_input(sql, tokens)
    return _error_at(sql, tokens, token, hint=_typo_hint(tokens, token))


def _error_at(sql: str, tokens: list[Token], token: Token, hint: str | None = None) -> SqlError:
    near = sql[token.start : token.end + 1]
    return errors.syntax_error(f'syntax error at or near "{near}"', token.start + 1, hint)


def _end_of_input(sql: str, tokens: list[Token]) -> SqlError:
    """The statement stops short: at the end of the text, or at the `;` that ends it."""
    end = tokens[-1].end + 1
    rest = sql[end:].lstrip()
    if rest.startswith(";"):
        return errors.syntax_error('syntax error at or near ";"', position=len(sql) - len(rest) + 1)
    return errors.syntax_error("syntax error at end of input", position=end + 1)


_CAN_END = frozenset(
    getattr(TokenType, name)
    for name in ("NUMBER", "VAR", "R_PAREN", "STAR", "NULL", "TRUE", "FALSE", *(t.name for t in _QUOTED))
    if hasattr(TokenType, name)
)

_HINT_KEYWORDS = (
    "SELECT", "FROM", "WHERE", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "CREATE",
    "TABLE", "INDEX", "ORDER", "GROUP", "LIMIT", "OFFSET", "JOIN", "HAVING", "PRIMARY", "UPSERT",
)


def _typo_hint(tokens: list[Token], token: Token) -> str | None:
    """A misspelled keyword is read as a name, so the error comes at or just after it: name it."""
    index = tokens.index(token)
    for candidate in tokens[max(index - 1, 0) : index + 1]:
        if candidate.token_type is not TokenType.VAR or len(candidate.text) < 3:
            continue
        match = difflib.get_close_matches(candidate.text.upper(), _HINT_KEYWORDS, n=1, cutoff=0.75)
        if match:
            return f'"{candidate.text}" is not a keyword; did you mean {match[0]}?'
    return None


# Transaction control: the accepted word sequences. sqlglot returns these as a Command, a
# Transaction or an alias expression depending on the words, so a list is the clear way.
_TRANSACTION_WORDS = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})
_ISOLATION = ("ISOLATION", "LEVEL", "SERIALIZABLE")  # the only level there is, so accepted
_BEGIN_FORMS = [("BEGIN",), ("BEGIN", "WORK"), ("BEGIN", "TRANSACTION"), ("START", "TRANSACTION")]
_TRANSACTION_FORMS: dict[tuple[str | None, ...], type] = {
    **{form: Begin for form in _BEGIN_FORMS},
    **{form + _ISOLATION: Begin for form in _BEGIN_FORMS},
    **{(w, *s): Commit for w in ("COMMIT", "END") for s in ((), ("WORK",), ("TRANSACTION",))},
    **{(w, *s): Rollback for w in ("ROLLBACK", "ABORT") for s in ((), ("WORK",), ("TRANSACTION",))},
}


def _transaction_control(sql: str, tokens: list[Token]) -> Statement:
    words = _words(tokens[:1]) + _words(_tail(sql, tokens))
    form = _TRANSACTION_FORMS.get(words)
    if form is not None:
        return form()
    hint = "Transactions are always SERIALIZABLE." if "ISOLATION" in words else None
    raise errors.feature_not_supported(_text(sql, tokens), hint=hint)


def _explain(sql: str, tokens: list[Token]) -> Explain:
    inner = _tail(sql, tokens)
    if not inner:
        raise _end_of_input(sql, tokens)
    option = _word(inner[0]) if inner[0].token_type is not TokenType.L_PAREN else "(...)"
    if option in ("ANALYZE", "ANALYSE", "VERBOSE", "(...)"):
        raise errors.feature_not_supported(f"EXPLAIN {option}")
    statement = _statement(sql, inner)
    if not isinstance(statement, (Select, Insert, Update, Delete)):
        raise errors.feature_not_supported(f"EXPLAIN {_statement_name(inner)}")
    return Explain(statement)


def _show(sql: str, tokens: list[Token]) -> Statement:
    tail = _tail(sql, tokens)
    first = _word(tail[0]) if tail else None
    if first == "TABLES":
        _expect_end(sql, tail, 1)
        return ShowTables()
    if first != "RANGES":
        raise _end_of_input(sql, tokens) if not tail else errors.feature_not_supported(_text(sql, tokens))
    if len(tail) == 1:
        return ShowRanges(None)
    for index, expected in ((1, "FROM"), (2, "TABLE")):  # SHOW RANGES FROM TABLE <name>
        if _word(tail[index]) != expected:
            raise _error_at(sql, tail, tail[index])
        if index + 1 == len(tail):
            raise _end_of_input(sql, tail)
    return ShowRanges(_table_name(_parse_tokens(sql, tail[3:], into=exp.Table), "SHOW RANGES"))


def _expect_end(sql: str, tokens: list[Token], length: int) -> None:
    if len(tokens) > length:
        raise _error_at(sql, tokens, tokens[length])


def _split_at_index(tokens: list[Token]) -> int | None:
    """For `ALTER TABLE <name> SPLIT AT ...`, the index of SPLIT; None for other ALTERs."""
    if len(tokens) < 4 or _word(tokens[1]) != "TABLE":
        return None
    for index in range(2, len(tokens) - 1):
        if _word(tokens[index]) == "SPLIT" and _word(tokens[index + 1]) == "AT":
            return index
    return None


def _alter_table_split_at(sql: str, tokens: list[Token], split: int) -> AlterTableSplitAt:
    if split == 2:
        raise _error_at(sql, tokens, tokens[split])
    table = _table_name(_parse_tokens(sql, tokens[2:split], into=exp.Table), "ALTER TABLE")
    values = tokens[split + 2 :]
    if not values:
        raise _end_of_input(sql, tokens)
    if _word(values[0]) != "VALUES":
        raise errors.feature_not_supported("SPLIT AT a query", hint="Use SPLIT AT VALUES (...), (...).")
    tree = _parse_tokens(sql, values)
    if not isinstance(tree, exp.Values):
        raise errors.syntax_error("SPLIT AT expects VALUES (...), (...)", values[0].start + 1)
    _reject_unsupported(tree)
    return AlterTableSplitAt(table, _values_rows(tree))


def _insert_token(upsert: Token) -> Token:
    """UPSERT and INSERT have the same length, so the statement's positions do not move."""
    return Token(TokenType.INSERT, "INSERT", upsert.line, upsert.col, upsert.start, upsert.end, upsert.comments)


_AS_OF = ("AS", "OF", "SYSTEM", "TIME")  # AS is sqlglot's ALIAS token
_PAREN_DEPTH = {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}
# Where the AS OF SYSTEM TIME expression ends: the next clause of the SELECT, or the end.
_AS_OF_END = frozenset(
    getattr(TokenType, name)
    for name in (
        "WHERE", "GROUP_BY", "HAVING", "ORDER_BY", "LIMIT", "OFFSET", "FETCH", "FOR", "UNION",
        "EXCEPT", "INTERSECT", "WINDOW", "R_PAREN",
    )
    if hasattr(TokenType, name)
)


def _cut_as_of_system_time(sql: str, tokens: list[Token]) -> tuple[list[Token], Expr | None]:
    """CockroachDB's `FROM t AS OF SYSTEM TIME <expr>`: the tokens without it, and <expr>."""
    start = _find_as_of(tokens)
    if start is None:
        return tokens, None
    end = start + 4
    depth = 0
    while end < len(tokens) and not (depth == 0 and tokens[end].token_type in _AS_OF_END):
        depth += _PAREN_DEPTH.get(tokens[end].token_type, 0)
        end += 1
    expr_tokens = tokens[start + 4 : end]
    if not expr_tokens:
        raise _end_of_input(sql, tokens) if end == len(tokens) else _error_at(sql, tokens, tokens[end])
    as_of = _parse_tokens(sql, expr_tokens, into=exp.Condition)
    _reject_unsupported(as_of)
    return tokens[:start] + tokens[end:], as_of


def _find_as_of(tokens: list[Token]) -> int | None:
    # Runs on every statement: compare the cheap token type before the words.
    for index in range(len(tokens) - 3):
        if tokens[index].token_type is TokenType.ALIAS and _words(tokens[index + 1 : index + 4]) == _AS_OF[1:]:
            return index
    return None


# ---------------------------------------------------------------------------------------------
# sqlglot trees -> the model.


def _convert(sql: str, tokens: list[Token], tree: Expr, upsert: bool) -> Statement:
    if isinstance(tree, exp.Insert):
        return _insert(tree, upsert)
    converter = _CONVERTERS.get(type(tree))
    if converter is not None:
        return converter(tree)
    if isinstance(tree, exp.SetOperation):
        raise errors.feature_not_supported(tree.key.upper())
    first = tokens[0]
    if isinstance(tree, exp.Command) or (_word(first) and first.token_type is not TokenType.VAR):
        raise _statement_not_supported(tokens)
    # Not a statement at all (sqlglot read `FOO BAR` as an aliased column): as PostgreSQL says it.
    raise _error_at(sql, tokens, first)


def _statement_name(tokens: list[Token]) -> str:
    words = _words(tokens[:2])
    if words[0] in ("ALTER", "CREATE", "DROP") and len(words) > 1 and words[1]:
        return f"{words[0]} {words[1]}"
    return words[0] or tokens[0].text


def _statement_not_supported(tokens: list[Token]) -> SqlError:
    name = _statement_name(tokens)
    hint = "Of ALTER TABLE, only ALTER TABLE ... SPLIT AT VALUES (...) is supported." if name == "ALTER TABLE" else None
    return errors.feature_not_supported(name, hint=hint)


# Names of the clauses (sqlglot arg keys) a statement may not carry, for messages.
_ARG_NAMES = {
    "with": "WITH (common table expression)",
    "locks": "FOR UPDATE / FOR SHARE",
    "returning": "RETURNING",
    "db": "schema-qualified name",
    "catalog": "schema-qualified name",
    "alias": "table alias",
    "expression": "AS query",
    "properties": "table option",
    "replace": "OR REPLACE",
    "cascade": "CASCADE",
    "conflict_keys": "ON CONFLICT target",
    "constraint": "ON CONFLICT ON CONSTRAINT",
    "include": "INCLUDE",
    "where": "WHERE (partial index)",
    "using": "USING",
    "from": "FROM",
    "rollup": "ROLLUP",
    "cube": "CUBE",
    "grouping_sets": "GROUPING SETS",
    "windows": "WINDOW clause",
    "sample": "TABLESAMPLE",
    "laterals": "LATERAL",
    "order": "ORDER BY",
    "limit": "LIMIT",
}


def _reject_extra_args(node: Expr, allowed: frozenset[str], where: str) -> None:
    """Reject every clause of `node` that is set and not `allowed`: unknown ones included."""
    for key, value in node.args.items():
        if key not in allowed and _is_set(value):
            name = _ARG_NAMES.get(key, key.upper().replace("_", " "))
            raise errors.feature_not_supported(f"{name} in {where}")


def _is_set(value: object) -> bool:
    if value is None or value is False:
        return False
    return bool(value) if isinstance(value, (list, str)) else True


# Constructs rejected wherever they appear in an expression tree.
_UNSUPPORTED_NODES: tuple[tuple[type[Expr], str], ...] = (
    (exp.Subquery, "subquery"),
    (exp.Exists, "subquery (EXISTS)"),
    (exp.Window, "window function (OVER)"),
    (exp.With, "WITH (common table expression)"),
    (exp.SetOperation, "UNION / INTERSECT / EXCEPT"),
    (exp.Lateral, "LATERAL"),
)
_UNSUPPORTED_TYPES = tuple(cls for cls, _ in _UNSUPPORTED_NODES)


def _reject_unsupported(tree: Expr) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Select) and node is not tree:
            raise errors.feature_not_supported("subquery")
        if isinstance(node, _UNSUPPORTED_TYPES):
            raise errors.feature_not_supported(next(name for cls, name in _UNSUPPORTED_NODES if isinstance(node, cls)))


def _position(node: Expr) -> int | None:
    """The 1-based position of the first identifier in `node`, if sqlglot recorded it."""
    for sub in node.walk():
        if isinstance(sub, exp.Identifier) and "start" in sub.meta:
            return sub.meta["start"] + 1
    return None


def _table_name(node: Expr, where: str, allow_alias: bool = False) -> str:
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise errors.feature_not_supported(f"{node.sql(dialect='postgres')} as a table in {where}")
    _reject_extra_args(node, _TABLE_ARGS_WITH_ALIAS if allow_alias else _TABLE_ARGS, where)
    return node.name


_TABLE_ARGS = frozenset({"this"})
_TABLE_ARGS_WITH_ALIAS = frozenset({"this", "alias"})


def _identifier_name(node: Expr) -> str:
    if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier):
        node = node.this
    if not isinstance(node, exp.Identifier):
        raise errors.syntax_error(f'expected a column name, got "{node.sql(dialect="postgres")}"', _position(node))
    return node.name


def _reject_duplicates(names: Sequence[str], message: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise errors.DuplicateColumn(message.format(name=name))
        seen.add(name)


def _where(tree: Expr) -> Expr | None:
    where = tree.args.get("where")
    return where.this if where is not None else None


def _values_rows(values: exp.Values) -> tuple[tuple[Expr, ...], ...]:
    rows = []
    for row in values.expressions:
        if not isinstance(row, exp.Tuple):
            raise errors.syntax_error("a VALUES row must be a parenthesized list", _position(row))
        if not row.expressions:  # sqlglot reads `VALUES ()`; PostgreSQL does not
            raise errors.syntax_error('syntax error at or near ")": an empty VALUES row')
        rows.append(tuple(row.expressions))
    if len({len(row) for row in rows}) > 1:
        raise errors.syntax_error("VALUES lists must all be the same length")
    return tuple(rows)


# --- CREATE / DROP


def _create(tree: exp.Create) -> Statement:
    kind = str(tree.args.get("kind") or "").upper()
    if kind == "TABLE":
        return _create_table(tree)
    if kind == "INDEX":
        return _create_index(tree)
    raise errors.feature_not_supported(f"CREATE {kind}".strip())


def _create_table(tree: exp.Create) -> CreateTable:
    _reject_extra_args(tree, frozenset({"this", "kind", "exists"}), "CREATE TABLE")
    schema = tree.this
    if not isinstance(schema, exp.Schema):
        raise errors.syntax_error("CREATE TABLE needs a column list")
    name = _table_name(schema.this, "CREATE TABLE")
    columns: list[ColumnDef] = []
    table_keys: list[tuple[str, ...]] = []
    for item in schema.expressions:
        if isinstance(item, exp.ColumnDef):
            columns.append(_column_def(name, item))
        else:
            table_keys.append(_table_primary_key(item))
    _reject_duplicates([c.name for c in columns], 'column "{name}" specified more than once')
    primary_key = _primary_key(name, columns, table_keys)
    if primary_key:
        columns = [dataclasses.replace(c, not_null=True, primary_key=True) if c.name in primary_key else c for c in columns]
    return CreateTable(name, tuple(columns), primary_key, bool(tree.args.get("exists")))


def _primary_key(table: str, columns: list[ColumnDef], table_keys: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    keys = table_keys + [(c.name,) for c in columns if c.primary_key]
    if len(keys) > 1:
        raise errors.InvalidTableDefinition(f'multiple primary keys for table "{table}" are not allowed')
    if not keys:
        return None
    names = {c.name for c in columns}
    for column in keys[0]:
        if column not in names:
            raise errors.UndefinedColumn(f'column "{column}" named in key does not exist')
    _reject_duplicates(keys[0], 'column "{name}" appears twice in primary key constraint')
    return keys[0]


def _table_primary_key(item: Expr) -> tuple[str, ...]:
    """PRIMARY KEY (a, b), possibly named (CONSTRAINT pk PRIMARY KEY ...); other constraints: 0A000."""
    if isinstance(item, exp.Identifier):  # sqlglot reads `CREATE TABLE t (a)` so
        raise errors.syntax_error(f'column "{item.name}" has no type', _position(item))
    if isinstance(item, exp.Constraint) and len(item.expressions) == 1:
        item = item.expressions[0]
    if not isinstance(item, exp.PrimaryKey):
        raise errors.feature_not_supported(_constraint_name(item), hint=_constraint_hint(item))
    _reject_extra_args(item, frozenset({"expressions"}), "PRIMARY KEY")
    return tuple(_key_column(part) for part in item.expressions)


def _key_column(part: Expr) -> str:
    if isinstance(part, exp.Ordered):
        if part.args.get("desc"):
            raise errors.feature_not_supported("descending key column")
        part = part.this
    return _identifier_name(part)


_CONSTRAINT_NAMES = {
    exp.UniqueColumnConstraint: "UNIQUE constraint",
    exp.ForeignKey: "FOREIGN KEY constraint",
    exp.Reference: "REFERENCES constraint",
    exp.CheckColumnConstraint: "CHECK constraint",
    exp.CollateColumnConstraint: "COLLATE",
}


def _constraint_name(node: Expr) -> str:
    name = _CONSTRAINT_NAMES.get(type(node))
    return name or f'constraint "{node.sql(dialect="postgres")}"'


def _constraint_hint(node: Expr) -> str | None:
    if isinstance(node, exp.UniqueColumnConstraint):
        return "Use CREATE UNIQUE INDEX."
    return None


def _column_def(table: str, node: exp.ColumnDef) -> ColumnDef:
    kind = node.args.get("kind")
    if not isinstance(kind, exp.DataType):
        raise errors.syntax_error(f'column "{node.name}" has no type', _position(node))
    sql_type, max_length = _column_type(kind)
    not_null: bool | None = None  # None: neither NULL nor NOT NULL written
    default: Expr | None = None
    primary_key = False
    for constraint in node.args.get("constraints") or ():
        rule = constraint.args.get("kind")
        if isinstance(rule, exp.NotNullColumnConstraint):
            wants_not_null = not rule.args.get("allow_null")
            if not_null is not None and not_null != wants_not_null:
                raise errors.syntax_error(f'conflicting NULL/NOT NULL declarations for column "{node.name}" of table "{table}"')
            not_null = wants_not_null
        elif isinstance(rule, exp.DefaultColumnConstraint):
            if default is not None:
                raise errors.syntax_error(f'multiple default values specified for column "{node.name}" of table "{table}"')
            default = rule.this
            _reject_unsupported(default)
        elif isinstance(rule, exp.PrimaryKeyColumnConstraint):
            if rule.args.get("desc"):
                raise errors.feature_not_supported("descending key column")
            primary_key = True
        else:
            raise errors.feature_not_supported(_constraint_name(rule), hint=_constraint_hint(rule))
    if primary_key and not_null is False:
        raise errors.syntax_error(f'conflicting NULL/NOT NULL declarations for column "{node.name}" of table "{table}"')
    return ColumnDef(node.name, sql_type, bool(not_null), default, primary_key, max_length)


_T = exp.DataType.Type
_TYPE_KINDS = {
    _T.INT: SqlType.INT, _T.BIGINT: SqlType.INT, _T.SMALLINT: SqlType.INT,
    _T.DOUBLE: SqlType.FLOAT, _T.FLOAT: SqlType.FLOAT,
    _T.TEXT: SqlType.TEXT, _T.VARCHAR: SqlType.TEXT, _T.CHAR: SqlType.TEXT,
    _T.NVARCHAR: SqlType.TEXT, _T.NCHAR: SqlType.TEXT,
    _T.BOOLEAN: SqlType.BOOL,
    _T.VARBINARY: SqlType.BYTES,  # BYTEA
}  # fmt: skip
_FIXED_LENGTH_TEXT = {_T.CHAR, _T.NCHAR}
_DECIMAL_TYPES = {getattr(_T, name) for name in ("DECIMAL", "BIGDECIMAL", "MONEY", "SMALLMONEY") if hasattr(_T, name)}


def _column_type(data_type: exp.DataType) -> tuple[SqlType, int | None]:
    """The SqlType and the TEXT length limit of a declared column type."""
    if data_type.this in _DECIMAL_TYPES:
        raise errors.feature_not_supported("type DECIMAL", hint="Use INT (e.g. of cents) or FLOAT.")
    kind = data_type.args.get("kind")
    if data_type.this is _T.USERDEFINED and kind is not None and kind.name.upper() == "BYTES":
        return SqlType.BYTES, None  # CockroachDB's name; sqlglot does not know it
    sql_type = _TYPE_KINDS.get(data_type.this)
    if sql_type is None:
        raise errors.feature_not_supported(f"type {data_type.sql(dialect='postgres')}")
    if sql_type is not SqlType.TEXT:
        return sql_type, None  # FLOAT(p) and the like: the precision does not change our type
    return sql_type, _text_length(data_type)


def _text_length(data_type: exp.DataType) -> int | None:
    params = data_type.expressions
    if not params:
        return 1 if data_type.this in _FIXED_LENGTH_TEXT else None  # CHAR is CHAR(1)
    length = params[0].this if isinstance(params[0], exp.DataTypeParam) else params[0]
    if len(params) > 1 or not (isinstance(length, exp.Literal) and length.is_int):
        raise errors.syntax_error(f"invalid length for type {data_type.sql(dialect='postgres')}")
    if int(length.name) < 1:
        raise errors.InvalidParameterValue(f"length for type {data_type.this.value.lower()} must be at least 1")
    return int(length.name)


def _create_index(tree: exp.Create) -> CreateIndex:
    _reject_extra_args(tree, frozenset({"this", "kind", "exists", "unique"}), "CREATE INDEX")
    index = tree.this
    _reject_extra_args(index, frozenset({"this", "table", "params"}), "CREATE INDEX")
    params = index.args.get("params")
    if params is not None:
        _reject_extra_args(params, frozenset({"columns"}), "CREATE INDEX")
    parts = (params.args.get("columns") or []) if params is not None else []
    columns = tuple(_index_column(part) for part in parts)
    if not columns:
        raise errors.syntax_error("CREATE INDEX needs a column list")
    _reject_duplicates(columns, 'column "{name}" appears twice in index')
    name = index.this.name if index.this else None
    table = _table_name(index.args["table"], "CREATE INDEX")
    return CreateIndex(name, table, columns, bool(tree.args.get("unique")), bool(tree.args.get("exists")))


def _index_column(part: Expr) -> str:
    if isinstance(part, exp.Ordered):
        if part.args.get("desc"):
            raise errors.feature_not_supported("descending index column")
        part = part.this
    if not isinstance(part, exp.Column) or part.table:
        raise errors.feature_not_supported(f"index on expression {part.sql(dialect='postgres')}")
    return part.name


def _drop(tree: exp.Drop) -> Statement:
    kind = str(tree.args.get("kind") or "").upper()
    _reject_extra_args(tree, frozenset({"this", "kind", "exists"}), f"DROP {kind}")
    if kind == "TABLE":
        return DropTable(_table_name(tree.this, "DROP TABLE"), bool(tree.args.get("exists")))
    if kind == "INDEX":
        return DropIndex(_table_name(tree.this, "DROP INDEX"), bool(tree.args.get("exists")))
    raise errors.feature_not_supported(f"DROP {kind}".strip())


# --- DML


def _insert(tree: exp.Insert, upsert: bool) -> Insert:
    verb = "UPSERT" if upsert else "INSERT"
    _reject_extra_args(tree, frozenset({"this", "expression", "conflict", "returning"}), verb)
    target, columns = tree.this, None
    if isinstance(target, exp.Schema):
        if not target.expressions:  # sqlglot reads `INSERT INTO t () ...`; PostgreSQL does not
            raise errors.syntax_error('syntax error at or near ")": an empty column list',
                                      hint="Name the columns, or leave the list out for all of them.")
        columns = tuple(_identifier_name(c) for c in target.expressions)
        _reject_duplicates(columns, 'column "{name}" specified more than once')
        target = target.this
    table = _table_name(target, verb)
    rows, select = _insert_source(tree.args.get("expression"), columns)
    returning = tree.args.get("returning")
    if returning is not None:
        _reject_extra_args(returning, frozenset({"expressions"}), "RETURNING")
        _reject_unsupported(returning)
        returning = tuple(returning.expressions)
    on_conflict = _on_conflict(tree.args.get("conflict"), upsert)
    return Insert(table, columns, rows, select, on_conflict, returning)


def _insert_source(source: Expr | None, columns: tuple[str, ...] | None) -> tuple[tuple | None, Select | None]:
    if isinstance(source, exp.Select):
        return None, _select(source)
    if not isinstance(source, exp.Values):
        raise errors.feature_not_supported("INSERT without VALUES or SELECT")
    _reject_unsupported(source)
    rows = _values_rows(source)
    if columns is not None and rows and len(rows[0]) != len(columns):
        more = "expressions than target columns" if len(rows[0]) > len(columns) else "target columns than expressions"
        raise errors.syntax_error(f"INSERT has more {more}")
    return rows, None


def _on_conflict(conflict: Expr | None, upsert: bool) -> str | None:
    if conflict is None:
        return "upsert" if upsert else None
    if upsert:
        raise errors.syntax_error("UPSERT does not take ON CONFLICT")
    action = conflict.args.get("action")
    does_nothing = conflict.args.get("nothing") or (action is not None and action.name.upper() == "DO NOTHING")
    if not does_nothing:
        raise errors.feature_not_supported("ON CONFLICT DO UPDATE", hint="Use UPSERT INTO ..., which replaces the row.")
    if conflict.args.get("conflict_keys") or conflict.args.get("constraint"):
        raise errors.feature_not_supported("ON CONFLICT with a target", hint="Use ON CONFLICT DO NOTHING, without one.")
    _reject_extra_args(conflict, frozenset({"action", "nothing"}), "INSERT")
    return "nothing"


def _update(tree: exp.Update) -> Update:
    _reject_extra_args(tree, frozenset({"this", "expressions", "where"}), "UPDATE")
    _reject_unsupported(tree)
    table = _table_name(tree.this, "UPDATE")
    assignments = tuple(_assignment(node) for node in tree.expressions)
    seen: set[str] = set()
    for assignment in assignments:
        if assignment.column in seen:
            raise errors.syntax_error(f'multiple assignments to same column "{assignment.column}"')
        seen.add(assignment.column)
    return Update(table, assignments, _where(tree))


def _assignment(node: Expr) -> Assignment:
    if isinstance(node, exp.EQ) and isinstance(node.this, exp.Tuple):
        raise errors.feature_not_supported("multiple-column assignment SET (a, b) = ...")
    if not isinstance(node, exp.EQ):
        raise errors.syntax_error('SET expects "column = expression"', _position(node))
    return Assignment(_identifier_name(node.this), node.expression)


def _delete(tree: exp.Delete) -> Delete:
    _reject_extra_args(tree, frozenset({"this", "where"}), "DELETE")
    _reject_unsupported(tree)
    if tree.this is None:
        raise errors.syntax_error("DELETE needs FROM <table>")
    return Delete(_table_name(tree.this, "DELETE"), _where(tree))


# --- SELECT

_SELECT_ARGS = frozenset(
    {"expressions", "from", "joins", "where", "group", "having", "order", "limit", "offset", "distinct"}
)


def _select(tree: exp.Select) -> Select:
    _reject_extra_args(tree, _SELECT_ARGS, "SELECT")
    _reject_unsupported(tree)
    from_clause = tree.args.get("from")
    from_table = _table_ref(from_clause.this) if from_clause is not None else None
    return Select(
        tree=tree,
        from_table=from_table,
        joins=tuple(_join(join) for join in tree.args.get("joins") or ()),
        projections=tuple(tree.expressions),
        where=_where(tree),
        group_by=_group_by(tree.args.get("group")),
        having=tree.args["having"].this if tree.args.get("having") else None,
        order_by=_order_by(tree.args.get("order")),
        limit=_limit(tree.args.get("limit")),
        offset=tree.args["offset"].expression if tree.args.get("offset") else None,
        distinct=_distinct(tree.args.get("distinct")),
    )


def _table_ref(node: Expr) -> TableRef:
    name = _table_name(node, "FROM", allow_alias=True)
    alias = node.args.get("alias")
    if alias is not None and alias.columns:
        raise errors.feature_not_supported("column aliases in FROM")
    return TableRef(name, node.alias or None)


def _join(join: exp.Join) -> JoinClause:
    side, kind, method = (str(join.args.get(k) or "").upper() for k in ("side", "kind", "method"))
    if side:
        raise errors.feature_not_supported(f"{side} JOIN (outer join)")
    if method:
        raise errors.feature_not_supported(f"{method} JOIN")
    if join.args.get("using"):
        raise errors.feature_not_supported("JOIN ... USING", hint="Use JOIN ... ON a.x = b.x.")
    if kind not in ("", "INNER") or join.args.get("on") is None:
        raise errors.feature_not_supported("cross join", hint="Use JOIN ... ON a.x = b.x.")
    _reject_extra_args(join, frozenset({"this", "on", "kind"}), "JOIN")
    on = join.args["on"]
    return JoinClause(_table_ref(join.this), on, _join_equalities(on))


def _join_equalities(on: Expr) -> tuple[tuple[exp.Column, exp.Column], ...]:
    pairs = []
    for term in _conjuncts(on):
        if not (isinstance(term, exp.EQ) and isinstance(term.this, exp.Column) and isinstance(term.expression, exp.Column)):
            raise errors.feature_not_supported(
                f"join condition {term.sql(dialect='postgres')}", hint="A join condition is an AND of column = column."
            )
        pairs.append((term.this, term.expression))
    return tuple(pairs)


def _conjuncts(node: Expr) -> list[Expr]:
    node = node.unnest()  # drop parentheses
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _group_by(group: Expr | None) -> tuple[Expr, ...]:
    if group is None:
        return ()
    _reject_extra_args(group, frozenset({"expressions"}), "GROUP BY")
    return tuple(group.expressions)


def _order_by(order: Expr | None) -> tuple[OrderItem, ...]:
    if order is None:
        return ()
    _reject_extra_args(order, frozenset({"expressions"}), "ORDER BY")
    return tuple(
        OrderItem(item.this, bool(item.args.get("desc")), bool(item.args.get("nulls_first")))
        for item in order.expressions
    )


def _limit(limit: Expr | None) -> Expr | None:
    if limit is None:
        return None
    if not isinstance(limit, exp.Limit):
        raise errors.feature_not_supported("FETCH FIRST", hint="Use LIMIT.")
    _reject_extra_args(limit, frozenset({"expression"}), "LIMIT")
    return limit.expression


def _distinct(distinct: Expr | None) -> bool:
    if distinct is None:
        return False
    if distinct.args.get("on") is not None:
        raise errors.feature_not_supported("DISTINCT ON")
    return True


_CONVERTERS = {
    exp.Create: _create,
    exp.Drop: _drop,
    exp.Select: _select,
    exp.Update: _update,
    exp.Delete: _delete,
}
