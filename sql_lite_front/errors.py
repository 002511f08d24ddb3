"""Errors of the SQL layer: a message plus a PostgreSQL SQLSTATE code, shown like psql shows them.

    try:
        statements = parse(sql)
    except SqlError as err:
        print(err.format())

    ERROR:  syntax error at or near "t"
    LINE 1: SELECT * FORM t
                          ^
    HINT:  "FORM" is not a keyword; did you mean FROM?
    SQLSTATE: 42601

Every error the SQL layer reports to a client is a `SqlError`. Each SQLSTATE the layer uses has a
subclass (so callers can `except UniqueViolation`), and the common messages have factory
functions worded as PostgreSQL words them (`undefined_table("t")` -> 'relation "t" does not
exist'), since clients and ORMs sometimes match on them. `error_for_sqlstate` rebuilds the right
subclass from a code received over the wire.

`position` is 1-based and counts characters (not bytes) of `statement`, the whole text the client
sent (as PostgreSQL's ErrorResponse Position field does), so a wire server can send it as is.

HAZARD: `statement` holds the client's text (up to MAX_STATEMENT_BYTES); do not log errors'
`format()` where statements may carry secrets.
"""

from __future__ import annotations

MAX_STATEMENT_BYTES = 64 * 1024  # one parse() call's text, in UTF-8 bytes (54000 above it)

_DISPLAY_WIDTH = 60  # psql (libpq) shows at most this much of the error line...
_MIN_RIGHT_CUT = 10  # ...keeping the caret at least this far from the right edge.


class SqlError(Exception):
    """A SQL error for the client: `message`, `sqlstate`, optional `hint`, `detail`, `position`."""

    sqlstate: str = "XX000"  # internal_error, for errors that did not say better

    def __init__(
        self,
        message: str,
        sqlstate: str | None = None,
        *,
        hint: str | None = None,
        detail: str | None = None,
        position: int | None = None,
        statement: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if sqlstate is not None:
            self.sqlstate = sqlstate
        self.hint = hint
        self.detail = detail
        self.position = position
        self.statement = statement

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, sqlstate={self.sqlstate!r}, position={self.position!r})"

    def format(self) -> str:
        """The psql-style text: ERROR, LINE + caret (when positioned), DETAIL, HINT, SQLSTATE."""
        lines = [f"ERROR:  {self.message}"]
        if self.position is not None and self.statement is not None:
            lines += caret_lines(self.statement, self.position)
        if self.detail:
            lines.append(f"DETAIL:  {self.detail}")
        if self.hint:
            lines.append(f"HINT:  {self.hint}")
        lines.append(f"SQLSTATE: {self.sqlstate}")
        return "\n".join(lines)


def caret_lines(statement: str, position: int) -> list[str]:
    """`LINE n: <the line>` and a caret under character `position` (1-based), as psql draws them."""
    offset = min(max(position - 1, 0), len(statement))
    line_start = statement.rfind("\n", 0, offset) + 1
    line_end = statement.find("\n", offset)
    text = statement[line_start : line_end if line_end >= 0 else len(statement)]
    # One display column per character, so the caret stays aligned (psql expands tabs too).
    text = text.replace("\t", " ").replace("\r", " ")
    text, column = _window(text, offset - line_start)
    prefix = f"LINE {statement.count(chr(10), 0, offset) + 1}: "
    return [prefix + text, " " * (len(prefix) + column) + "^"]


def _window(text: str, column: int) -> tuple[str, int]:
    """Cut a long line around the caret with '...' marks, as libpq does."""
    if len(text) <= _DISPLAY_WIDTH:
        return text, column
    start = max(0, column - (_DISPLAY_WIDTH - _MIN_RIGHT_CUT))
    end = start + _DISPLAY_WIDTH
    shown = text[start:end]
    if start:
        shown, column = "..." + shown, column - start + 3
    if end < len(text):
        shown += "..."
    return shown, column


class SqlSyntaxError(SqlError):
    sqlstate = "42601"


class UndefinedTable(SqlError):
    sqlstate = "42P01"


class UndefinedColumn(SqlError):
    sqlstate = "42703"


class DuplicateTable(SqlError):
    sqlstate = "42P07"


class DuplicateObject(SqlError):
    sqlstate = "42710"


class DuplicateColumn(SqlError):
    sqlstate = "42701"


class InvalidTableDefinition(SqlError):
    sqlstate = "42P16"


class DatatypeMismatch(SqlError):
    sqlstate = "42804"


class UniqueViolation(SqlError):
    sqlstate = "23505"


class NotNullViolation(SqlError):
    sqlstate = "23502"


class InvalidTextRepresentation(SqlError):
    sqlstate = "22P02"


class InvalidParameterValue(SqlError):
    sqlstate = "22023"


class DivisionByZero(SqlError):
    sqlstate = "22012"


class NumericValueOutOfRange(SqlError):
    sqlstate = "22003"


class StringDataRightTruncation(SqlError):
    sqlstate = "22001"


class CharacterNotInRepertoire(SqlError):
    """22021: text that is not valid in the database encoding (UTF-8)."""

    sqlstate = "22021"


class FeatureNotSupported(SqlError):
    sqlstate = "0A000"


class SerializationFailure(SqlError):
    """40001: the client should retry the whole transaction (PostgreSQL and CockroachDB drivers do)."""

    sqlstate = "40001"


class StatementCompletionUnknown(SqlError):
    """40003: the commit may or may not have happened (CockroachDB's "result is ambiguous");
    retrying blindly could apply the transaction twice."""

    sqlstate = "40003"


class InFailedSqlTransaction(SqlError):
    sqlstate = "25P02"


class NoActiveSqlTransaction(SqlError):
    sqlstate = "25P01"


class ActiveSqlTransaction(SqlError):
    sqlstate = "25001"


class ProgramLimitExceeded(SqlError):
    sqlstate = "54000"


_CLASS_BY_SQLSTATE: dict[str, type[SqlError]] = {cls.sqlstate: cls for cls in SqlError.__subclasses__()}


def error_for_sqlstate(sqlstate: str, message: str, **fields: object) -> SqlError:
    """The subclass for `sqlstate` (SqlError itself for a code without one), e.g. for a wire client."""
    cls = _CLASS_BY_SQLSTATE.get(sqlstate)
    if cls is None:
        return SqlError(message, sqlstate, **fields)  # type: ignore[arg-type]
    return cls(message, **fields)  # type: ignore[arg-type]


def syntax_error(message: str, position: int | None = None, hint: str | None = None) -> SqlSyntaxError:
    return SqlSyntaxError(message, position=position, hint=hint)


def undefined_table(name: str) -> UndefinedTable:
    return UndefinedTable(f'relation "{name}" does not exist')


def undefined_column(name: str, position: int | None = None) -> UndefinedColumn:
    return UndefinedColumn(f'column "{name}" does not exist', position=position)


def duplicate_table(name: str) -> DuplicateTable:
    return DuplicateTable(f'relation "{name}" already exists')


def duplicate_object(name: str, kind: str = "index") -> DuplicateObject:
    return DuplicateObject(f'{kind} "{name}" already exists')


def unique_violation(constraint: str, columns: list[str] | None = None, values: list[str] | None = None) -> UniqueViolation:
    detail = None
    if columns and values is not None:
        detail = f"Key ({', '.join(columns)})=({', '.join(values)}) already exists."
    return UniqueViolation(f'duplicate key value violates unique constraint "{constraint}"', detail=detail)


def not_null_violation(column: str, table: str) -> NotNullViolation:
    return NotNullViolation(f'null value in column "{column}" of relation "{table}" violates not-null constraint')


def datatype_mismatch(column: str, expected: str, actual: str) -> DatatypeMismatch:
    return DatatypeMismatch(
        f'column "{column}" is of type {expected} but expression is of type {actual}',
        hint="You will need to rewrite or cast the expression.",
    )


def invalid_text_representation(type_name: str, text: str) -> InvalidTextRepresentation:
    return InvalidTextRepresentation(f'invalid input syntax for type {type_name}: "{text}"')


def division_by_zero() -> DivisionByZero:
    return DivisionByZero("division by zero")


def numeric_value_out_of_range(type_name: str = "integer") -> NumericValueOutOfRange:
    return NumericValueOutOfRange(f"{type_name} out of range")


def string_data_right_truncation(type_name: str) -> StringDataRightTruncation:
    """`type_name` as PostgreSQL prints it, e.g. 'character varying(10)'."""
    return StringDataRightTruncation(f"value too long for type {type_name}")


def feature_not_supported(what: str, hint: str | None = None) -> FeatureNotSupported:
    return FeatureNotSupported(f"{what} is not supported", hint=hint)


def serialization_failure(reason: str) -> SerializationFailure:
    return SerializationFailure(
        f"restart transaction: {reason}",
        hint="The transaction conflicted with another one; retry it from its start.",
    )


def in_failed_sql_transaction() -> InFailedSqlTransaction:
    return InFailedSqlTransaction("current transaction is aborted, commands ignored until end of transaction block")


def no_active_sql_transaction() -> NoActiveSqlTransaction:
    return NoActiveSqlTransaction("there is no transaction in progress")


def active_sql_transaction() -> ActiveSqlTransaction:
    return ActiveSqlTransaction("there is already a transaction in progress")


def row_too_big(limit_bytes: int, detail: str) -> ProgramLimitExceeded:
    """A row whose encoded value is over the KV store's value limit (PostgreSQL: "row is too big")."""
    return ProgramLimitExceeded(f"row is too big: its stored value is over the limit of {limit_bytes} bytes",
                                detail=detail,
                                hint="Store large values in several rows (chunks), or outside the database.")


def index_row_too_big(limit_bytes: int, detail: str) -> ProgramLimitExceeded:
    """A primary key or index entry over the KV store's key limit (PostgreSQL: "index row size
    ... exceeds maximum")."""
    return ProgramLimitExceeded(f"index row is too big: its key is over the limit of {limit_bytes} bytes",
                                detail=detail,
                                hint="Keep primary key and indexed values short, e.g. index a hash of a long text.")


def statement_too_long(size_bytes: int) -> ProgramLimitExceeded:
    return ProgramLimitExceeded(
        f"statement is too long: {size_bytes} bytes, the limit is {MAX_STATEMENT_BYTES} bytes",
        hint="Split it into several statements.",
    )
