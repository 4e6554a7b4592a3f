"""Layering: the Lambda/migration product (functions/) never imports the tooling (deployflow/, tests/); the CLI never
imports a Lambda handler or Powertools; what the CLI shares with the handlers is pure and is what its wheel ships."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO_ROOT / "functions"
# The CLI proper: what `deployflow start / watch` run (deployflow/local is the local stack, run from a checkout).
CLI_MODULES = sorted(p for p in (REPO_ROOT / "deployflow").glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module an import statement in ``path`` names (anywhere in the file, lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(FUNCTIONS).with_suffix("").parts)


def _handler_modules() -> set[str]:
    """The modules of functions/ that define a ``lambda_handler``."""
    found = set()
    for path in FUNCTIONS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "lambda_handler" for n in tree.body):
            found.add(_module_name(path))
    return found


def _shared_modules() -> list[str]:
    """The modules of functions/ the CLI's wheel ships (pyproject.toml's py-modules)."""
    document = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [m.removesuffix(".__init__") for m in document["tool"]["setuptools"]["py-modules"]]


def test_given_functions_when_its_imports_are_read_then_none_reaches_the_tooling() -> None:
    offending = [
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {name}"
        for path in sorted(FUNCTIONS.rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] in ("deployflow", "tests", "benchmarks")
    ]
    assert not offending, "functions/ ships in the Lambda asset and the migration image:\n" + "\n".join(offending)


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: p.name)
def test_given_the_cli_when_its_imports_are_read_then_no_handler_and_no_powertools(path: Path) -> None:
    handlers = _handler_modules()
    shared = set(_shared_modules())
    offending = []
    for line, name in _imports(path):
        top = name.split(".")[0]
        if top == "aws_lambda_powertools":
            offending.append(f"{line}: {name} (Powertools)")
        elif top in ("release_steps", "dbmigrate") and name in handlers:
            offending.append(f"{line}: {name} (a Lambda handler module)")
        elif top in ("release_steps", "dbmigrate") and name not in shared and name.rsplit(".", 1)[0] not in shared:
            offending.append(f"{line}: {name} (not shipped in the CLI's wheel: pyproject.toml py-modules)")
    assert not offending, f"{path.name}:\n" + "\n".join(offending)


def test_given_the_modules_the_cli_shares_when_read_then_they_are_pure() -> None:
    handlers = _handler_modules()
    shared = _shared_modules()
    # botocore: the CLI's wheel depends on boto3 (the lock record's conditional writes read its ClientError).
    allowed = set(sys.stdlib_module_names) | {"msgspec", "release_steps", "botocore"}
    for module in shared:
        path = FUNCTIONS.joinpath(*module.split(".")) / "__init__.py"
        if not path.is_file():
            path = FUNCTIONS.joinpath(*module.split(".")).with_suffix(".py")
        assert path.is_file(), f"pyproject.toml ships {module}, which does not exist"
        assert module not in handlers, f"{module} is a Lambda handler: it has no place in the CLI's wheel"
        for line, name in _runtime_imports(path):  # the stubs under TYPE_CHECKING never run
            assert name.split(".")[0] in allowed, f"{module}:{line} imports {name}: the CLI's share must stay pure"
            if name.startswith("release_steps."):
                assert name in shared or name.rsplit(".", 1)[0] in shared, f"{module}:{line} imports {name}"


def _runtime_imports(path: Path) -> Iterator[tuple[int, str]]:
    """The imports of ``path`` that run: all but those inside an ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("package", [FUNCTIONS, REPO_ROOT / "deployflow"], ids=lambda p: p.name)
def test_given_the_shipped_code_when_its_imports_are_read_then_the_boto3_stubs_are_for_the_type_checker_only(
    package: Path,
) -> None:
    # The stubs are deployflow[dev]: neither the Lambda asset (functions/requirements.txt) nor the CLI's wheel has them.
    offending = [
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {name} outside `if TYPE_CHECKING:`"
        for path in sorted(package.rglob("*.py"))
        for line, name in _runtime_imports(path)
        if name.split(".")[0].startswith(("mypy_boto3_", "types_boto3_", "botocore_stubs", "boto3_stubs"))
    ]
    assert not offending, "\n".join(offending)
