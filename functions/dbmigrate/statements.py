"""Split a migration file into statements with PostgreSQL's own parser (pglast, built on libpg_query), so a failure
names its statement and a no-transaction file runs each statement on its own (PostgreSQL runs a multi-statement
query string as one implicit transaction).

The parser, not a hand-written scanner, decides where a statement ends: dollar quotes, nested comments, E'' strings
and ``BEGIN ATOMIC`` bodies are PostgreSQL's grammar. The whole file must parse: a syntax error is refused before
anything connects, with its line. pglast is imported on first use, so importing dbmigrate (the Lambda's verify step,
the CLI's other commands) does not load the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})


class StatementSplitError(ValueError):
    """The text does not parse (unterminated quote or comment, a syntax error); the message names the line."""


@dataclass(frozen=True)
class Statement:
    """One SQL statement without its terminating semicolon; line is 1-based in the file.

    ``node`` is pglast's parse tree of the statement (``pglast.ast.Node``), None for a statement made by hand.
    """

    number: int
    line: int
    text: str
    node: Any = field(default=None, compare=False, repr=False)

    @property
    def first_word(self) -> str:
        match = _WORD.match(strip_comments(self.text).lstrip())
        return match.group(0).upper() if match else ""

    @property
    def kind(self) -> str:
        """The parse tree's node name, e.g. ``AlterTableStmt`` ("" without a tree)."""
        return type(self.node).__name__ if self.node is not None else ""

    def excerpt(self, limit: int = 100) -> str:
        """The statement on one line, comments dropped, cut to limit characters."""
        flat = " ".join(strip_comments(self.text).split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."

    @property
    def is_transaction_control(self) -> bool:
        # BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, PREPARE TRANSACTION ... are one node.
        return self.kind == "TransactionStmt"


def _line(sql: str, index: int) -> int:
    return sql.count("\n", 0, index) + 1


def _parse_error(sql: str, error: Exception) -> StatementSplitError:
    message = str(error.args[0]) if error.args else str(error)
    location = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], int) else None
    where = f" at line {_line(sql, location)}" if location is not None else ""
    return StatementSplitError(f"{message}{where}")


def split_statements(sql: str) -> list[Statement]:
    """The statements of the text, split where PostgreSQL's parser ends them; each with its parse tree."""
    from pglast import parse_sql
    from pglast.parser import ParseError, split

    try:
        slices = split(sql, with_parser=True, only_slices=True)
    except ParseError as e:
        raise _parse_error(sql, e) from None
    statements: list[Statement] = []
    for piece in slices:
        text = sql[piece]
        try:
            (raw,) = parse_sql(text)
        except ParseError as e:  # cannot happen after a clean split; kept so a libpg_query change stays named
            raise StatementSplitError(f"statement at line {_line(sql, piece.start)}: {e.args[0]}") from None
        statements.append(Statement(number=len(statements) + 1, line=_line(sql, piece.start), text=text, node=raw.stmt))
    return statements


def strip_comments(sql: str) -> str:
    """The text with -- and /* */ comments replaced by a space (PostgreSQL's scanner finds them; quotes untouched)."""
    from pglast.parser import ParseError, scan

    try:
        tokens = scan(sql)
    except ParseError:
        return sql
    out: list[str] = []
    position = 0
    for token in tokens:
        if token.name in _COMMENT_TOKENS:
            out.append(sql[position : token.start])
            out.append(" ")
            position = token.end + 1
    out.append(sql[position:])
    return "".join(out)
