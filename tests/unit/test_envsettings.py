"""The settings layer of functions/ (dbmigrate.envsettings): each parser once, unset and empty values, the error hook.

The models' own variables are tested where they are declared: tests/unit/test_config.py (the steps) and
tests/dbmigrate/test_settings.py (the runner and the DB_* variables both read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import pytest
from dbmigrate.envsettings import (
    EnvModel,
    SettingError,
    Variable,
    boolean,
    choice,
    integer,
    json_object,
    names,
    number,
    pattern,
    setting,
    text,
)

SHARED = Variable("SHARED_PORT", integer(1, 65535))


class Sample(EnvModel):
    required: str = setting("SAMPLE_REQUIRED", text())
    count: int = setting("SAMPLE_COUNT", integer(1, 10), default=3)
    port: int | None = setting(SHARED, default=None)
    mode: Literal["a", "b"] = setting("SAMPLE_MODE", choice("a", "b"), default="a")
    items: list[str] = setting("SAMPLE_ITEMS", names(), default_factory=list)
    token: str | None = setting("SAMPLE_TOKEN", text(), default=None, repr=False)


class LoudError(Exception):
    pass


class Loud(EnvModel):
    value: int = setting("LOUD_VALUE", integer())

    @classmethod
    def configuration_error(cls, error: SettingError) -> Exception:
        return LoudError(f"{cls.__name__}: {error}")

    def check(self) -> None:
        if self.value == 13:
            raise SettingError("LOUD_VALUE", "is unlucky")


@pytest.mark.parametrize(
    ("parse", "raw", "expected"),
    [
        (text(), "x", "x"),
        (text(min_length=2), "ab", "ab"),
        (integer(0, 5), " 5 ", 5),
        (number(minimum=0), "2.5", 2.5),
        (number(above=0), "0.001", 0.001),
        (boolean, "TRUE", True),
        (boolean, "1", True),
        (boolean, "yes", True),
        (boolean, "off", False),
        (boolean, "0", False),
        (choice("FARGATE", "EC2"), "EC2", "EC2"),
        (pattern(r"arn:aws:sns:.+", "an SNS topic ARN"), "arn:aws:sns:x", "arn:aws:sns:x"),
        (names(), " a, b ,, c ", ["a", "b", "c"]),
        (
            json_object,
            '{"retention.ms": 604800000, "cleanup.policy": "delete"}',
            {"retention.ms": "604800000", "cleanup.policy": "delete"},
        ),
    ],
)
def test_given_a_valid_value_when_parsed_then_the_typed_value(
    parse: Callable[[str], Any], raw: str, expected: Any
) -> None:
    assert parse(raw) == expected


@pytest.mark.parametrize(
    ("parse", "raw", "problem"),
    [
        (text(min_length=2), "a", "must have at least 2 characters"),
        (integer(), "1.5", "must be an integer"),
        (integer(), "ten", "must be an integer"),
        (integer(1, 65535), "70000", "must be between 1 and 65535"),
        (integer(minimum=0), "-5", "must be >= 0"),
        (integer(maximum=9), "10", "must be <= 9"),
        (number(), "soon", "must be a number of seconds"),
        (number(), "nan", "must be a number of seconds"),
        (number(minimum=0), "-1", "must be >= 0"),
        (number(above=0), "0", "must be > 0"),
        (boolean, "maybe", "must be a boolean"),
        (choice("HIGH", "LOW"), "high", "must be one of HIGH, LOW"),
        (pattern(r"arn:aws:sns:.+", "an SNS topic ARN"), "topic", "must be an SNS topic ARN"),
        (pattern(r"arn:aws:sns:.+", "an SNS topic ARN"), "xarn:aws:sns:x", "must be an SNS topic ARN"),
        (names(min_items=1), " , ", "must list at least 1"),
        (json_object, '["retention.ms"]', "must be a JSON object"),
        (json_object, "{not json", "must be a JSON object"),
        (json_object, "42", "must be a JSON object"),
    ],
)
def test_given_a_bad_value_when_parsed_then_value_error_says_what_is_wrong(
    parse: Callable[[str], Any], raw: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        parse(raw)


def test_given_only_the_required_variable_when_read_then_defaults_and_typed_fields() -> None:
    sample = Sample.from_environ({"SAMPLE_REQUIRED": "r", "PATH": "/usr/bin"})

    assert sample == Sample(required="r", count=3, port=None, mode="a", items=[], token=None)


def test_given_a_declared_variable_when_two_models_read_it_then_one_parser_serves_both() -> None:
    class Other(EnvModel):
        port: int = setting(SHARED)

    assert Sample.from_environ({"SAMPLE_REQUIRED": "r", "SHARED_PORT": "6543"}).port == 6543
    assert Other.from_environ({"SHARED_PORT": "6543"}).port == 6543
    with pytest.raises(SettingError, match="SHARED_PORT must be between 1 and 65535"):
        Other.from_environ({"SHARED_PORT": "0"})


@pytest.mark.parametrize("environ", [{}, {"SAMPLE_REQUIRED": ""}])
def test_given_a_required_variable_unset_or_empty_when_read_then_the_error_names_it(environ: dict[str, str]) -> None:
    with pytest.raises(SettingError) as raised:
        Sample.from_environ(environ)

    assert (raised.value.variable, str(raised.value)) == ("SAMPLE_REQUIRED", "SAMPLE_REQUIRED is not set")


def test_given_an_empty_optional_variable_when_read_then_its_default() -> None:
    assert Sample.from_environ({"SAMPLE_REQUIRED": "r", "SAMPLE_COUNT": ""}).count == 3


def test_given_a_bad_value_when_read_then_the_error_names_the_variable_and_the_value() -> None:
    with pytest.raises(SettingError, match=r"^SAMPLE_COUNT must be between 1 and 10 \(got 11\)$"):
        Sample.from_environ({"SAMPLE_REQUIRED": "r", "SAMPLE_COUNT": "11"})


def test_given_a_model_with_its_own_error_when_a_variable_is_bad_then_that_error_names_it() -> None:
    with pytest.raises(LoudError, match=r"^Loud: LOUD_VALUE must be an integer"):
        Loud.from_environ({"LOUD_VALUE": "x"})
    with pytest.raises(LoudError, match=r"^Loud: LOUD_VALUE is unlucky$"):
        Loud.from_environ({"LOUD_VALUE": "13"})


def test_given_a_model_when_read_then_it_is_frozen_and_hides_what_is_not_for_logs() -> None:
    sample = Sample.from_environ({"SAMPLE_REQUIRED": "r", "SAMPLE_TOKEN": "s3cret"})

    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(sample, "count", 4)  # noqa: B010 - assignment is what is tested
    assert "s3cret" not in repr(sample)


def test_given_a_model_when_asked_then_it_lists_its_variables_and_which_are_required() -> None:
    assert Sample.variables() == {
        "SAMPLE_REQUIRED": True,
        "SAMPLE_COUNT": False,
        "SHARED_PORT": False,
        "SAMPLE_MODE": False,
        "SAMPLE_ITEMS": False,
        "SAMPLE_TOKEN": False,
    }


def test_given_no_mapping_when_read_then_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_REQUIRED", "from-os-environ")

    assert Sample.from_environ().required == "from-os-environ"
