"""Canary: the time scale - Wait seconds and Retry intervals sleep factor times as long; the ASL's values stay."""

from __future__ import annotations

import datetime

from deployflow.local.aws import LocalAws
from tests.canary.conftest import Deploy, Execute


def test_given_a_tiny_factor_when_a_day_long_wait_and_retries_run_then_they_are_scaled_and_their_values_kept(
    any_local_aws: LocalAws, deploy: Deploy, execute: Execute
) -> None:
    any_local_aws.time.factor = 0.00001
    flaky = deploy("flaky")
    definition = {
        "StartAt": "Wait a day",
        "States": {
            "Wait a day": {"Type": "Wait", "Seconds": 86_400, "Next": "Retry with backoff"},
            "Retry with backoff": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": flaky, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Retry": [
                    {
                        "ErrorEquals": ["DatabaseNotReadyError"],
                        "IntervalSeconds": 600,
                        "BackoffRate": 3,
                        "MaxDelaySeconds": 3000,
                        "MaxAttempts": 3,
                    }
                ],
                "End": True,
            },
        },
    }

    run = execute(definition, {"key": f"timescale-{any_local_aws.mode}", "failures": 3}, timeout=60)

    assert run.status == "SUCCEEDED", run.explain()
    delays = any_local_aws.time.delays
    assert [(d.kind, d.requested_seconds) for d in delays] == [
        ("wait", 86_400.0),
        ("retry", 600.0),
        ("retry", 1800.0),
        ("retry", 3000.0),  # 5400 capped by MaxDelaySeconds: the ASL's arithmetic is untouched
    ]
    assert [d.slept_seconds for d in delays] == [d.requested_seconds * 0.00001 for d in delays]


def test_given_a_timestamp_wait_when_run_then_it_is_not_scaled(any_local_aws: LocalAws, execute: Execute) -> None:
    any_local_aws.time.factor = 0.00001
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    definition = {"StartAt": "Until", "States": {"Until": {"Type": "Wait", "TimestampPath": "$.at", "End": True}}}

    run = execute(definition, {"at": past})

    assert run.status == "SUCCEEDED", run.explain()
    (delay,) = any_local_aws.time.delays
    assert delay.kind == "wait-timestamp"
    assert -3601 <= delay.requested_seconds <= -3599, "the wait was not measured against UTC"
    assert delay.slept_seconds == 0.0
