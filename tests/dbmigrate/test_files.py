"""Migration files: names, marker, checksums and statement splitting (no database needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dbmigrate.errors import DbConfigurationError, MigrationFileError
from dbmigrate.files import checksum, discover_migrations, normalize, parse_migration
from dbmigrate.statements import StatementSplitError, split_statements

from tests.dbmigrate.conftest import SQL_DIR


def texts(sql: str) -> list[str]:
    return [statement.text for statement in split_statements(sql)]


# -- splitting -------------------------------------------------------------------------------------


def test_given_semicolons_inside_quotes_comments_and_dollar_bodies_when_split_then_only_top_level_ones_count():
    sql = """
    -- a comment; with a semicolon
    CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END; $body$;
    SELECT 'a;b', "odd;name", E'it\\'s; fine' FROM t; /* block; /* nested; */ still comment; */
    SELECT $$x;y$$;
    """
    assert texts(sql) == [
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END; $body$",
        "SELECT 'a;b', \"odd;name\", E'it\\'s; fine' FROM t",
        "SELECT $$x;y$$",
    ]


def test_given_statements_on_several_lines_when_split_then_each_knows_its_first_line():
    statements = split_statements(
        "-- header\n\nCREATE TABLE a (id int);\n\nALTER TABLE a\n  ADD COLUMN b int;\nSELECT 1"
    )
    assert [(s.number, s.line) for s in statements] == [(1, 3), (2, 5), (3, 7)]


def test_given_statement_with_comments_when_excerpt_then_one_line_without_comments():
    (statement,) = split_statements("CREATE TABLE a ( -- the id\n  id int /* pk */\n)")
    assert statement.excerpt() == "CREATE TABLE a ( id int )"
    assert len(split_statements("SELECT " + "x, " * 100 + "1")[0].excerpt(40)) == 40


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT 'unterminated", "unterminated quoted string"),
        ('SELECT "unterminated', "unterminated quoted identifier"),
        ("SELECT 1 /* open", "unterminated /* comment"),
        ("SELECT $x$ open", "unterminated dollar-quoted string"),
        ("SELECT 1;\n\nSELEC 2;", 'syntax error at or near "SELEC" at line 3'),
    ],
)
def test_given_text_that_cannot_be_split_safely_when_split_then_error_says_why(sql, problem):
    with pytest.raises(StatementSplitError, match=re.escape(problem)):
        split_statements(sql)


def test_given_begin_atomic_body_when_split_then_postgresql_parser_keeps_it_one_statement():
    sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; SELECT 2; END;\nSELECT f();"
    assert texts(sql) == [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; SELECT 2; END",
        "SELECT f()",
    ]
    assert [s.kind for s in split_statements(sql)] == ["CreateFunctionStmt", "SelectStmt"]


# -- parsing files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["V1__x.sql", "V0001_x.sql", "V0001__Add_X.sql", "v0001__x.sql", "V0001__x-y.sql", "0001__x.sql"]
)
def test_given_badly_named_sql_file_when_parsed_then_refused_naming_it(name):
    with pytest.raises(MigrationFileError, match=rf"invalid migration file {name}: name must match"):
        parse_migration(name, b"SELECT 1;")


def test_given_version_zero_when_parsed_then_refused():
    with pytest.raises(MigrationFileError, match="versions start at V0001"):
        parse_migration("V0000__x.sql", b"SELECT 1;")


def test_given_marker_on_first_line_when_parsed_then_file_is_not_transactional():
    migration = parse_migration(
        "V0002__idx.sql", b"-- deployflow:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n"
    )
    assert migration.transactional is False
    assert (migration.version, migration.name, len(migration.statements)) == (2, "idx", 1)
    assert parse_migration("V0002__idx.sql", b"CREATE INDEX i ON t (c);").transactional is True


def test_given_marker_below_the_first_line_when_parsed_then_refused():
    with pytest.raises(MigrationFileError, match="must be the first line"):
        parse_migration("V0002__idx.sql", b"-- index\n-- deployflow:no-transaction\nCREATE INDEX i ON t (c);\n")


@pytest.mark.parametrize("control", ["BEGIN", "COMMIT", "START TRANSACTION", "ROLLBACK", "END", "SAVEPOINT s"])
def test_given_transaction_control_statement_when_parsed_then_refused(control):
    with pytest.raises(MigrationFileError, match="transaction control"):
        parse_migration("V0002__x.sql", f"{control};\nCREATE TABLE t (id int);\n".encode())


@pytest.mark.parametrize(("raw", "problem"), [(b"-- only a comment\n", "no SQL statement"), (b"\xff\xfe", "not UTF-8")])
def test_given_empty_or_undecodable_file_when_parsed_then_refused(raw, problem):
    with pytest.raises(MigrationFileError, match=problem):
        parse_migration("V0002__x.sql", raw)


def test_given_same_file_with_crlf_or_bom_when_checksummed_then_checksum_is_unchanged():
    lf = b"CREATE TABLE t (id int);\nSELECT 1;\n"
    crlf = lf.replace(b"\n", b"\r\n")
    bom = b"\xef\xbb\xbf" + lf
    sums = {parse_migration("V0001__t.sql", raw).checksum for raw in (lf, crlf, bom)}
    assert sums == {checksum(normalize(lf, "V0001__t.sql"))}
    assert parse_migration("V0001__t.sql", lf + b"-- edit\n").checksum not in sums


# -- discovery -------------------------------------------------------------------------------------


def test_given_directory_when_discovered_then_sql_files_in_version_order_and_other_files_ignored(tmp_path: Path):
    (tmp_path / "V0010__ten.sql").write_text("SELECT 10;")
    (tmp_path / "V0002__two.sql").write_text("SELECT 2;")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / ".#V0003__lock.sql").write_text("editor lock file")

    assert [m.filename for m in discover_migrations(tmp_path)] == ["V0002__two.sql", "V0010__ten.sql"]


def test_given_two_files_with_one_version_when_discovered_then_refused_naming_both(tmp_path: Path):
    (tmp_path / "V0002__one.sql").write_text("SELECT 1;")
    (tmp_path / "V0002__two.sql").write_text("SELECT 2;")

    with pytest.raises(MigrationFileError, match=r"V0002__two\.sql: version 2 is also used by V0002__one\.sql"):
        discover_migrations(tmp_path)


def test_given_missing_directory_when_discovered_then_configuration_error_names_the_setting(tmp_path: Path):
    with pytest.raises(DbConfigurationError, match="MIGRATIONS_DIR is not a directory"):
        discover_migrations(tmp_path / "nope")


def test_given_the_repository_sql_dir_when_discovered_then_every_file_parses():
    migrations = discover_migrations(SQL_DIR)
    assert migrations, "sql/ holds at least the initial migration"
    assert migrations[0].filename == "V0001__initial_schema.sql"
    assert migrations[0].transactional
