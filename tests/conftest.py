"""Test-suite wiring: the fixtures live in tests/fixtures/, one plugin per area."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.aws",
]
