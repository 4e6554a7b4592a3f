"""The one settings system of functions/: typed, frozen models declared field by field from environment variables.

A model is a frozen dataclass whose fields are ``setting(variable, parse, ...)``: the variable's name is written
once, with its parser; ``Model.from_environ()`` reads ``os.environ`` (or a mapping), treats an empty value as unset,
parses every field and raises the package's configuration error naming the variable (``SERVICES is not set``,
``DB_PORT must be an integer (got 'five')``). The step package (``release_steps.config``) and the migration runner
(``dbmigrate.settings``) both declare their settings here; a variable both read (the ``DB_*`` connection settings)
is declared once, in ``dbmigrate.settings``, and reused.

Why not pydantic-settings (or Powertools' env modelling, which is pydantic too): the migration runner's whole
process at head has a 0.15 s budget and its image ships without pydantic; every step's cold start is held to 1.5x
a bare ``import boto3``. Measured here (Python 3.11, bytecode cached; the sum of ``python -X importtime`` over the
process, best of 9; the bare interpreter's own imports are 17 ms): this module 32 ms (``dataclasses`` and ``json``
are most of it; ``dbmigrate.settings`` built on it 40 ms, as before it), ``from pydantic import BaseModel`` 78 ms,
``import pydantic_settings`` 157 ms (it imports asyncio and dotenv; as much as ``import boto3``, 158 ms).
``python -m dbmigrate`` at head, interleaved with the runner before this layer (21 runs each, load 6 on 2 cores):
median 175 ms against 192 ms, best 126 ms against 130 ms: no cost. The steps' models were pydantic then (msgspec
since, for the same reason): a step's cold start now loads dbmigrate's settings modules (about 9 ms of their own)
and release_steps.config costs 4.5 ms less (5.5 ms against 10 ms), about +5 ms a step; Verify schema no longer
loads Powertools parameters (26 ms less). The parsers below are the few the settings need; a rule across fields
is a model's ``check``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Self, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_VARIABLE = "deployflow.variable"


class SettingError(ValueError):
    """One variable is missing or unparsable; the model turns it into its package's configuration error."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


# --- parsers: text -> value, ValueError with the problem (the variable's name is added by the model) -----------------


def text(min_length: int = 1) -> Callable[[str], str]:
    """The value as given (at least ``min_length`` characters)."""

    def parse(raw: str) -> str:
        if len(raw) < min_length:
            raise ValueError(f"must have at least {min_length} characters (got {raw!r})")
        return raw

    return parse


def pattern(regex: str, what: str) -> Callable[[str], str]:
    """The value as given, matching ``regex`` (``what`` names the expected form in the error)."""
    import re

    compiled = re.compile(regex)

    def parse(raw: str) -> str:
        if compiled.fullmatch(raw) is None:
            raise ValueError(f"must be {what} (got {raw!r})")
        return raw

    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number within the bounds."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be an integer (got {raw!r})") from None
        _check_bounds(value, minimum, maximum)
        return value

    return parse


def number(
    minimum: float | None = None, maximum: float | None = None, *, above: float | None = None
) -> Callable[[str], float]:
    """A number of seconds (or any real number) within the bounds; ``above``: strictly greater."""

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number of seconds (got {raw!r})") from None
        if value != value:  # NaN passes no bound
            raise ValueError(f"must be a number of seconds (got {raw!r})")
        if above is not None and not value > above:
            raise ValueError(f"must be > {above:g} (got {raw})")
        _check_bounds(value, minimum, maximum)
        return value

    return parse


def _check_bounds(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"must be between {minimum:g} and {maximum:g} (got {value:g})")
    if minimum is not None and value < minimum:
        raise ValueError(f"must be >= {minimum:g} (got {value:g})")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be <= {maximum:g} (got {value:g})")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def boolean(raw: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case)."""
    value = raw.strip().lower()
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise ValueError(f"must be a boolean: true or false (got {raw!r})")


def choice(*allowed: str) -> Callable[[str], Any]:
    """One of the allowed values, exactly (the field's annotation is their ``Literal``)."""

    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} (got {raw!r})")
        return raw

    return parse


def names(min_items: int = 0) -> Callable[[str], list[str]]:
    """A comma-separated list, each item trimmed, blanks dropped."""

    def parse(raw: str) -> list[str]:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if len(items) < min_items:
            raise ValueError(f"must list at least {min_items} comma-separated name(s) (got {raw!r})")
        return items

    return parse


def json_object(raw: str) -> dict[str, str]:
    """A JSON object; its values as strings (``{"retention.ms": 604800000}`` -> ``{"retention.ms": "604800000"}``)."""
    try:
        parsed = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"must be a JSON object ({e})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object (got a JSON {type(parsed).__name__})")
    return {str(k): str(v) for k, v in parsed.items()}


# --- models ------------------------------------------------------------------------------------------------------


class Variable(Generic[T]):
    """An environment variable and its parser, declared once where two models read it (the ``DB_*`` settings)."""

    __slots__ = ("name", "parse")

    def __init__(self, name: str, parse: Callable[[str], T]) -> None:
        self.name = name
        self.parse = parse

    def __repr__(self) -> str:
        return f"Variable({self.name!r})"


@overload
def setting(variable: Variable[T], *, repr: bool = True) -> T: ...
@overload
def setting(variable: Variable[T], *, default: T, repr: bool = True) -> T: ...
@overload
def setting(variable: Variable[T], *, default: None, repr: bool = True) -> T | None: ...
@overload
def setting(variable: str, parse: Callable[[str], T], *, repr: bool = True) -> T: ...
@overload
def setting(variable: str, parse: Callable[[str], T], *, default: T, repr: bool = True) -> T: ...
@overload
def setting(variable: str, parse: Callable[[str], T], *, default_factory: Callable[[], T], repr: bool = True) -> T: ...
def setting(
    variable: str | Variable[Any],
    parse: Callable[[str], Any] | None = None,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    repr: bool = True,
) -> Any:
    """A field read from ``variable`` (by ``parse``); without a default the variable is required."""
    declared = variable if isinstance(variable, Variable) else Variable(variable, parse or text())
    metadata = {_VARIABLE: declared}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata, repr=repr)
    return dataclasses.field(default=default, metadata=metadata, repr=repr)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(setting, dataclasses.field))
class EnvModel:
    """Base of a settings model: subclasses are frozen, keyword-only dataclasses of ``setting`` fields."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)

    @classmethod
    def configuration_error(cls, error: SettingError) -> Exception:
        """The package's error for a bad variable (ConfigurationError, DbConfigurationError); this base's: itself."""
        return error

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Parse the environment (``os.environ`` by default); the first bad variable raises ``configuration_error``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        try:
            for field, variable, required in cls._settings():
                raw = env.get(variable.name)
                if raw is None or raw == "":
                    if required:
                        raise SettingError(variable.name, "is not set")
                    continue
                try:
                    values[field] = variable.parse(raw)
                except ValueError as e:
                    raise SettingError(variable.name, str(e)) from None
            model = cls(**values)
            model.check()
        except SettingError as e:
            raise cls.configuration_error(e) from None
        return model

    def check(self) -> None:
        """Rules across fields; raise SettingError naming the variable at fault."""

    @classmethod
    def variables(cls) -> dict[str, bool]:
        """Each variable the model reads -> whether it is required."""
        return {variable.name: required for _, variable, required in cls._settings()}

    @classmethod
    def _settings(cls) -> Iterator[tuple[str, Variable[Any], bool]]:
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]  # every subclass is made a dataclass
            variable = field.metadata.get(_VARIABLE)
            if isinstance(variable, Variable):
                required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
                yield field.name, variable, required
