"""Execution names and the execution input the CLI builds: what makes a retried start find the first execution."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

import pytest

from deployflow.cli import build_input, execution_name, parser

# Step Functions: an execution name is 1..80 characters; this CLI keeps to the ASCII subset every console shows.
VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
NOW = datetime(2026, 11, 25, 14, 3, 9, tzinfo=UTC)

TRICKY_KEYS = [
    "pipeline-exec-123",
    "7d1f6c2e-5b4a-4f0e-9c1d-2a3b4c5d6e7f",
    "pipeline/exec:123",
    "01J9Z 4Q/ü",
    "k" * 72,
    "k" * 73,
    "k" * 80,
    "k" * 200,
    "日本語",
    "a.b.c",
    "-",
]


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_given_any_idempotency_key_then_the_name_is_a_valid_execution_name_and_the_same_on_every_call(key: str) -> None:
    name = execution_name("2026-11-25.1", key)

    assert VALID_NAME.match(name), f"{name!r} ({len(name)} chars) is not a valid execution name"
    assert execution_name("2026-11-25.1", key) == name, "the name of a key changed between two calls"
    assert execution_name("another-tag", key) == name, "the name of a key must not depend on the image tag"


def test_given_a_key_of_valid_characters_that_fits_then_the_name_is_the_key_itself() -> None:
    assert execution_name("t", "pipeline-exec-123") == "release-pipeline-exec-123"
    assert execution_name("t", "k" * 72) == "release-" + "k" * 72


def test_given_keys_that_sanitise_or_truncate_alike_then_their_names_differ() -> None:
    pairs = [
        ("pipeline/exec:123", "pipeline-exec-123"),
        ("pipeline/exec:123", "pipeline:exec/123"),
        ("k" * 80 + "a", "k" * 80 + "b"),
        ("k" * 73, "k" * 74),
    ]
    for first, second in pairs:
        assert execution_name("t", first) != execution_name("t", second), f"{first!r} and {second!r} collide"


def test_given_keys_that_need_a_digest_then_the_names_are_pinned_across_versions() -> None:
    """A pipeline retried after a CLI upgrade must find its first execution: the algorithm must not drift."""
    assert execution_name("t", "pipeline/exec:123") == "release-pipeline-exec-123-3abc46adf2a1ab2d"
    assert execution_name("t", "k" * 100) == "release-" + "k" * 50 + "-e37c7cb78ccb30f0"
    assert execution_name("t", "01J9Z 4Q/ü") == "release-01J9Z-4Q---485f79543dba47e4"


def test_given_no_key_then_the_name_has_the_tag_and_the_time_and_two_starts_in_one_second_do_not_collide() -> None:
    first = execution_name("2026-11-25.1", None, now=NOW)
    second = execution_name("2026-11-25.1", None, now=NOW)

    assert first.startswith("release-2026-11-25-1-20261125T140309Z-"), first
    assert first != second, "two starts in the same second got the same name (the second would attach to the first)"
    longest = execution_name("t" * 128, None, now=NOW)
    assert VALID_NAME.match(longest), f"{longest!r} ({len(longest)} chars)"


def _start_args(*options: str) -> argparse.Namespace:
    return parser().parse_args(["start", "--state-machine-arn", "arn:aws:states:us-east-1:1:stateMachine:m", *options])


def test_given_start_options_then_the_input_is_the_documented_execution_input() -> None:
    args = _start_args("--image-tag", "2026-11-25.1", "--services", " alert-ingest, alert-matcher ,", "--dry-run")

    assert build_input(args) == {
        "imageTag": "2026-11-25.1",
        "services": ["alert-ingest", "alert-matcher"],
        "dryRun": True,
    }


def test_given_only_a_tag_then_services_are_left_to_the_stacks_default() -> None:
    document = build_input(_start_args("--image-tag", "2026-11-25.1"))

    assert "services" not in document, document
    assert "idempotencyKey" not in document, document


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--image-tag", "bad tag!"], "imageTag"),
        (["--image-tag", "t", "--services", ""], "services"),
        (["--image-tag", "t", "--idempotency-key", ""], "idempotencyKey"),
        (["--image-tag", "t", "--idempotency-key", "   "], "idempotencyKey"),
    ],
)
def test_given_an_explicit_but_invalid_value_then_build_input_raises_naming_the_field(
    options: list[str], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"invalid release input: .*{field}:"):
        build_input(_start_args(*options))
