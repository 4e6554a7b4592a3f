"""Throttling responses become the transient AwsThrottlingError; every other AWS error is left to the step."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from release_steps.aws_errors import (
    THROTTLING_ERROR_CODES,
    error_code,
    error_message,
    is_throttling,
    translate_throttling,
)
from release_steps.errors import AwsThrottlingError


def client_error(code: str, message: str = "Rate exceeded", operation: str = "RunTask") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"]
)
def test_given_one_of_the_four_throttling_codes_when_translated_then_aws_throttling_error(code: str) -> None:
    original = client_error(code)

    with pytest.raises(AwsThrottlingError) as raised, translate_throttling("ecs:RunTask"):
        raise original

    assert raised.value.message == f"ecs:RunTask was throttled by AWS ({code}: Rate exceeded)"
    assert raised.value.__cause__ is original
    assert AwsThrottlingError.transient


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ClusterNotFoundException", "LimitExceededException", "ServerException"]
)
def test_given_another_aws_error_when_translated_then_it_propagates_unchanged(code: str) -> None:
    original = client_error(code)

    with pytest.raises(ClientError) as raised, translate_throttling("ecs:RunTask"):
        raise original

    assert raised.value is original
    assert not is_throttling(original)


def test_given_an_exception_that_is_not_from_aws_when_checked_then_it_is_not_throttling() -> None:
    assert not is_throttling(ValueError("ThrottlingException"))


def test_given_the_throttling_codes_then_the_four_of_the_contract_are_included() -> None:
    assert {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}.issubset(
        THROTTLING_ERROR_CODES
    )


def test_given_a_multi_line_aws_message_when_read_then_it_is_one_line() -> None:
    error = client_error("InvalidParameterException", "Task definition\n  does not support\tFARGATE.")

    assert error_code(error) == "InvalidParameterException"
    assert error_message(error) == "Task definition does not support FARGATE."


def test_given_a_response_without_error_details_when_read_then_code_is_empty() -> None:
    error = ClientError({}, "DescribeTasks")

    assert error_code(error) == ""
    assert error_message(error) != ""
