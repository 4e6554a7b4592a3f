"""Split a migration file into statements, so a failure names its statement and a no-transaction file runs each
statement on its own (PostgreSQL runs a multi-statement query string as one implicit transaction)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


class StatementSplitError(ValueError):
    """The text cannot be split safely (unterminated quote or comment, BEGIN ATOMIC body)."""


@dataclass(frozen=True)
class Statement:
    """One SQL statement without its terminating semicolon; line is 1-based in the file."""

    number: int
    line: int
    text: str

    @property
    def first_word(self) -> str:
        match = _WORD.match(_strip_leading_comments(self.text))
        return match.group(0).upper() if match else ""

    def excerpt(self, limit: int = 100) -> str:
        """The statement on one line, comments dropped, cut to limit characters."""
        flat = " ".join(strip_comments(self.text).split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."

    @property
    def is_transaction_control(self) -> bool:
        return self.first_word in _TRANSACTION_CONTROL


def _strip_leading_comments(text: str) -> str:
    while True:
        text = text.lstrip()
        if text.startswith("--"):
            newline = text.find("\n")
            text = "" if newline < 0 else text[newline + 1 :]
        elif text.startswith("/*"):
            end = text.find("*/")
            text = "" if end < 0 else text[end + 2 :]
        else:
            return text


def split_statements(sql: str) -> list[Statement]:
    """Statements separated by top-level semicolons; quotes, identifiers, dollar quotes and comments respected."""
    statements: list[Statement] = []
    length = len(sql)
    i = 0
    start: int | None = None  # index of the first significant character of the current statement
    previous_word = ""

    def finish(end: int) -> None:
        nonlocal start
        if start is not None:
            text = sql[start:end].rstrip()
            statements.append(Statement(number=len(statements) + 1, line=sql.count("\n", 0, start) + 1, text=text))
        start = None

    while i < length:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < length else ""
        if ch == "-" and nxt == "-":
            newline = sql.find("\n", i)
            i = length if newline < 0 else newline + 1
            continue
        if ch == "/" and nxt == "*":
            i = _skip_block_comment(sql, i)
            continue
        if ch.isspace():
            i += 1
            continue
        if ch == ";":
            finish(i)
            previous_word = ""
            i += 1
            continue
        if start is None:
            start = i
        if ch == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word_char(sql[i - 2]))
            i = _skip_quoted(sql, i, "'", backslash_escapes=escapes)
        elif ch == '"':
            i = _skip_quoted(sql, i, '"', backslash_escapes=False)
        elif ch == "$" and (i == 0 or not _is_word_char(sql[i - 1])) and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(0), tag.end())
            if close < 0:
                raise StatementSplitError(f"unterminated dollar-quoted string {tag.group(0)} at line {_line(sql, i)}")
            i = close + len(tag.group(0))
        elif _is_word_char(ch) and not ch.isdigit() and ch != "$":
            word_match = _WORD.match(sql, i)
            assert word_match is not None
            word = word_match.group(0).upper()
            if previous_word == "BEGIN" and word == "ATOMIC":
                raise StatementSplitError(
                    f"BEGIN ATOMIC function body at line {_line(sql, i)} is not supported; use a dollar-quoted body"
                )
            previous_word = word
            i = word_match.end()
        else:
            i += 1
    finish(length)
    return statements


def strip_comments(sql: str) -> str:
    """The text with -- and /* */ comments replaced by a space; quoted text untouched."""
    out: list[str] = []
    i = 0
    length = len(sql)
    while i < length:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < length else ""
        if ch == "-" and nxt == "-":
            newline = sql.find("\n", i)
            i = length if newline < 0 else newline
            out.append(" ")
        elif ch == "/" and nxt == "*":
            i = _skip_block_comment(sql, i)
            out.append(" ")
        elif ch in "'\"":
            escapes = ch == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word_char(sql[i - 2]))
            end = _skip_quoted(sql, i, ch, backslash_escapes=escapes)
            out.append(sql[i:end])
            i = end
        elif ch == "$" and (i == 0 or not _is_word_char(sql[i - 1])) and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(0), tag.end())
            end = length if close < 0 else close + len(tag.group(0))
            out.append(sql[i:end])
            i = end
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _line(sql: str, index: int) -> int:
    return sql.count("\n", 0, index) + 1


def _skip_block_comment(sql: str, i: int) -> int:
    depth = 0
    length = len(sql)
    start = i
    while i < length:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise StatementSplitError(f"unterminated /* comment at line {_line(sql, start)}")


def _skip_quoted(sql: str, i: int, quote: str, *, backslash_escapes: bool) -> int:
    start = i
    i += 1
    length = len(sql)
    while i < length:
        ch = sql[i]
        if backslash_escapes and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < length and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    kind = "identifier" if quote == '"' else "string"
    raise StatementSplitError(f"unterminated quoted {kind} at line {_line(sql, start)}")
