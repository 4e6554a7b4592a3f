"""Canary: the ASL features the release state machine relies on, as moto 5.2.5's interpreter runs them."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from release_steps.execution_history import read_last_visit

from deployflow.local.aws import LocalAws
from tests.canary.conftest import Deploy, Execute

LAMBDA_RETRY = {
    "ErrorEquals": [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.ClientExecutionTimeoutException",
    ],
    "IntervalSeconds": 1,
    "MaxAttempts": 3,
    "BackoffRate": 2,
    "JitterStrategy": "FULL",
}


def invoke(function_arn: str, **extra: Any) -> dict[str, Any]:
    """A Task state in the form the release ASL uses (lambda:invoke, OutputPath $.Payload)."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
        "OutputPath": "$.Payload",
        **extra,
    }


def entered(run: Any) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in run.events if e["type"].endswith("StateEntered")]


def test_given_a_retry_on_a_custom_error_name_with_backoff_when_the_step_recovers_then_it_succeeds(
    any_local_aws: LocalAws, deploy: Deploy, execute: Execute
) -> None:
    arn = deploy("flaky")
    retry = [
        LAMBDA_RETRY,
        {"ErrorEquals": ["DatabaseNotReadyError"], "IntervalSeconds": 3, "MaxAttempts": 4, "BackoffRate": 2.0},
    ]
    definition = {"StartAt": "Flaky", "States": {"Flaky": invoke(arn, Retry=retry, End=True)}}

    run = execute(definition, {"key": f"retry-{any_local_aws.mode}", "failures": 2})

    assert run.status == "SUCCEEDED", run.explain()
    assert run.output == {"attempts": 3}
    assert [e["taskFailedEventDetails"]["error"] for e in run.of_type("TaskFailed")] == ["DatabaseNotReadyError"] * 2
    retries = [d.requested_seconds for d in any_local_aws.time.delays if d.kind == "retry"]
    assert retries == [3.0, 6.0], f"IntervalSeconds 3 with BackoffRate 2 should wait 3 then 6 s, got {retries}"


def test_given_retries_exhausted_when_caught_with_a_result_path_then_the_handler_gets_error_and_cause(
    any_local_aws: LocalAws, deploy: Deploy, execute: Execute
) -> None:
    flaky, echo = deploy("flaky"), deploy("echo")
    definition = {
        "StartAt": "Flaky",
        "States": {
            "Flaky": invoke(
                flaky,
                Retry=[{"ErrorEquals": ["DatabaseNotReadyError"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                Catch=[{"ErrorEquals": ["DatabaseNotReadyError"], "ResultPath": "$.failure", "Next": "Notify"}],
                End=True,
            ),
            "Notify": invoke(echo, End=True),
        },
    }

    run = execute(definition, {"key": f"exhausted-{any_local_aws.mode}", "failures": 99})

    assert run.status == "SUCCEEDED", run.explain()
    failure = run.output["event"]["failure"]
    assert failure["Error"] == "DatabaseNotReadyError"
    cause = json.loads(failure["Cause"])
    assert cause["errorType"] == "DatabaseNotReadyError"
    assert cause["errorMessage"] == "attempt 2: database not ready"
    assert run.output["event"]["key"] == f"exhausted-{any_local_aws.mode}", (
        "ResultPath $.failure should keep the original input"
    )
    assert entered(run) == ["Flaky", "Notify"]


def test_given_a_terminal_error_not_in_the_retrier_when_raised_then_it_is_caught_without_retry(
    any_local_aws: LocalAws, deploy: Deploy, execute: Execute
) -> None:
    fail = deploy("fail")
    definition = {
        "StartAt": "Check",
        "States": {
            "Check": invoke(
                fail,
                Retry=[LAMBDA_RETRY, {"ErrorEquals": ["DatabaseNotReadyError"], "MaxAttempts": 3}],
                Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
                End=True,
            ),
            "Failed": {"Type": "Fail", "Error": "ReleaseFailedError", "Cause": "the release failed"},
        },
    }

    run = execute(definition, {"error": "ImageMissingError"})

    assert run.status == "FAILED", run.explain()
    assert len(any_local_aws.lambdas.invocations) == 1, "ImageMissingError must not be retried"
    assert run.description["error"] == "ReleaseFailedError"
    assert run.description["cause"] == "the release failed"


def test_given_a_fail_state_with_error_path_and_cause_path_when_reached_then_the_execution_fails_with_them(
    execute: Execute,
) -> None:
    definition = {
        "StartAt": "Failed",
        "States": {"Failed": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}},
    }

    run = execute(definition, {"failure": {"Error": "MigrationFailedError", "Cause": "exit code 3"}})

    assert run.status == "FAILED", run.explain()
    assert run.description["error"] == "MigrationFailedError"
    assert run.description["cause"] == "exit code 3"
    failed = run.of_type("ExecutionFailed")[0]["executionFailedEventDetails"]
    assert (failed["error"], failed["cause"]) == ("MigrationFailedError", "exit code 3")


def test_given_a_wait_and_choice_loop_when_polling_then_it_loops_until_done(
    any_local_aws: LocalAws, deploy: Deploy, execute: Execute
) -> None:
    countdown = deploy("countdown")
    definition = {
        "StartAt": "Poll",
        "States": {
            "Poll": invoke(countdown, Next="Done?"),
            "Done?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.done", "BooleanEquals": True, "Next": "Finished"}],
                "Default": "Wait",
            },
            "Wait": {"Type": "Wait", "SecondsPath": "$.remaining", "Next": "Poll"},
            "Finished": {"Type": "Succeed"},
        },
    }

    run = execute(definition, {"remaining": 3})

    assert run.status == "SUCCEEDED", run.explain()
    assert entered(run) == ["Poll", "Done?", "Wait", "Poll", "Done?", "Wait", "Poll", "Done?", "Finished"]
    waits = [d.requested_seconds for d in any_local_aws.time.delays if d.kind == "wait"]
    assert waits == [2.0, 1.0], f"SecondsPath should wait 2 then 1 s, got {waits}"


def test_given_sns_publish_integration_when_executed_then_the_message_is_delivered(
    any_local_aws: LocalAws, execute: Execute
) -> None:
    sns, sqs = any_local_aws.client("sns"), any_local_aws.client("sqs")
    topic = sns.create_topic(Name="release-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="release-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    definition = {
        "StartAt": "Notify",
        "States": {
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {
                    "TopicArn": topic,
                    "Subject": "deployflow",
                    "Message.$": "States.JsonToString($.record)",
                },
                "ResultPath": "$.published",
                "End": True,
            }
        },
    }

    run = execute(definition, {"record": {"imageTag": "2026-11-23.4", "status": "FAILED"}})

    assert run.status == "SUCCEEDED", run.explain()
    assert run.output["published"]["MessageId"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"imageTag": "2026-11-23.4", "status": "FAILED"}]


def test_given_a_pass_with_intrinsics_and_the_context_object_when_executed_then_they_evaluate(execute: Execute) -> None:
    definition = {
        "StartAt": "Shape",
        "States": {
            "Shape": {
                "Type": "Pass",
                "Parameters": {
                    "summary.$": "States.Format('release {} of {}', $.imageTag, $.services[0])",
                    "asString.$": "States.JsonToString($.services)",
                    "parsed.$": "States.StringToJson($.encoded)",
                    "executionId.$": "$$.Execution.Id",
                    "executionName.$": "$$.Execution.Name",
                    "startTime.$": "$$.Execution.StartTime",
                    "enteredTime.$": "$$.State.EnteredTime",
                    "stateName.$": "$$.State.Name",
                    "machineName.$": "$$.StateMachine.Name",
                    "input.$": "$$.Execution.Input",
                },
                "End": True,
            }
        },
    }
    execution_input = {"imageTag": "2026-11-23.4", "services": ["alert-ingest"], "encoded": '{"a": [1, 2]}'}

    run = execute(definition, execution_input, name="release-42")

    assert run.status == "SUCCEEDED", run.explain()
    out = run.output
    assert out["summary"] == "release 2026-11-23.4 of alert-ingest"
    assert json.loads(out["asString"]) == ["alert-ingest"]
    assert out["parsed"] == {"a": [1, 2]}
    assert out["executionId"] == run.description["executionArn"]
    assert out["executionName"] == "release-42"
    assert out["stateName"] == "Shape"
    assert out["machineName"].startswith("canary-")
    assert out["input"] == execution_input
    iso = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$"
    assert re.match(iso, out["enteredTime"]), f"$$.State.EnteredTime is not ISO-8601 UTC: {out['enteredTime']}"
    assert re.match(iso, out["startTime"]), f"$$.Execution.StartTime is not ISO-8601 UTC: {out['startTime']}"


def test_given_timestamp_less_than_path_when_the_deadline_passed_or_not_then_choice_branches(execute: Execute) -> None:
    definition = {
        "StartAt": "Now",
        "States": {
            "Now": {
                "Type": "Pass",
                "Parameters": {"deadline.$": "$.deadline", "now.$": "$$.State.EnteredTime"},
                "Next": "Expired?",
            },
            "Expired?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.deadline", "TimestampLessThanPath": "$.now", "Next": "TimedOut"}],
                "Default": "InTime",
            },
            "TimedOut": {"Type": "Fail", "Error": "MigrationTimeoutError", "Cause": "deadline passed"},
            "InTime": {"Type": "Succeed"},
        },
    }
    now = datetime.datetime.now(datetime.UTC)
    past = (now - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (now + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    expired = execute(definition, {"deadline": past})
    in_time = execute(definition, {"deadline": future})

    assert expired.status == "FAILED", expired.explain()
    assert expired.description["error"] == "MigrationTimeoutError", expired.explain()
    assert in_time.status == "SUCCEEDED", in_time.explain()


def test_given_parallel_lambda_branches_when_executed_then_both_results_arrive_in_order(
    deploy: Deploy, execute: Execute
) -> None:
    echo, countdown = deploy("echo"), deploy("countdown")
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "A", "States": {"A": invoke(echo, End=True)}},
                    {"StartAt": "B", "States": {"B": invoke(countdown, End=True)}},
                ],
                "End": True,
            }
        },
    }

    run = execute(definition, {"remaining": 2})

    assert run.status == "SUCCEEDED", run.explain()
    assert run.output[0]["event"] == {"remaining": 2}
    assert run.output[1] == {"remaining": 1, "done": False}


def test_given_a_map_over_services_when_executed_then_each_item_runs(deploy: Deploy, execute: Execute) -> None:
    countdown = deploy("countdown")
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "One",
                    "States": {"One": invoke(countdown, End=True)},
                },
                "End": True,
            }
        },
    }

    run = execute(definition, {"items": [{"remaining": 1}, {"remaining": 5}]})

    assert run.status == "SUCCEEDED", run.explain()
    assert run.output == [{"remaining": 0, "done": True}, {"remaining": 4, "done": False}]


def test_given_no_execution_name_when_started_twice_then_each_gets_a_unique_uuid_name(
    any_local_aws: LocalAws,
) -> None:
    sfn = any_local_aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="nameless",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]

    first = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    second = sfn.start_execution(stateMachineArn=machine)["executionArn"]

    names = [arn.rsplit(":", 1)[-1] for arn in (first, second)]
    assert names[0] != names[1]
    for name in names:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", name), name


def test_given_a_history_when_read_backwards_in_pages_then_it_is_newest_first_bounded_and_complete(
    any_local_aws: LocalAws, execute: Execute
) -> None:
    # AWS pages GetExecutionHistory (maxResults, nextToken) and lists newest first with reverseOrder; notify_stopped
    # reads an execution's end that way. moto answers everything oldest first (test_moto_native); the seam pages.
    states: dict[str, dict[str, Any]] = {f"P{n}": {"Type": "Pass", "Next": f"P{n + 1}"} for n in range(5)}
    states["P5"] = {"Type": "Pass", "End": True}
    run = execute({"StartAt": "P0", "States": states})
    assert run.status == "SUCCEEDED", run.explain()
    sfn = any_local_aws.client("stepfunctions")
    arn = run.description["executionArn"]

    first = sfn.get_execution_history(executionArn=arn, maxResults=3, reverseOrder=True)
    pages = [first["events"]]
    token = first.get("nextToken")
    while token:
        page = sfn.get_execution_history(executionArn=arn, maxResults=3, reverseOrder=True, nextToken=token)
        pages.append(page["events"])
        token = page.get("nextToken")

    assert all(len(page) <= 3 for page in pages), [len(p) for p in pages]
    ids = [e["id"] for page in pages for e in page]
    assert ids == sorted((e["id"] for e in run.events), reverse=True), "backwards, every event once"
    assert pages[0][0]["type"] == "ExecutionSucceeded"
    forward = sfn.get_execution_history(executionArn=arn)
    assert [e["id"] for e in forward["events"]] == sorted(ids)[:100], "no maxResults: the first 100, oldest first"

    # What notify_stopped reads: from the last state entered to the end, oldest first; bounded.
    tail, complete = read_last_visit(sfn, arn, page_events=2)
    assert complete
    assert [e["type"] for e in tail] == ["PassStateEntered", "PassStateExited", "ExecutionSucceeded"], tail
    assert tail[0]["stateEnteredEventDetails"]["name"] == "P5"
    cut, complete = read_last_visit(sfn, arn, page_events=1, max_pages=2)
    assert not complete, "two pages of one event cannot reach the last state's entry (three events back)"
    assert [e["type"] for e in cut] == ["PassStateExited", "ExecutionSucceeded"]


def test_given_an_execution_past_its_timeout_then_describe_execution_gives_its_stop_date(
    any_local_aws: LocalAws, execute: Execute
) -> None:
    # AWS: stopDate for every ended execution; moto leaves it out for TIMED_OUT (test_moto_native), the seam adds it.
    run = execute(
        {"StartAt": "W", "TimeoutSeconds": 1, "States": {"W": {"Type": "Wait", "Seconds": 36000, "End": True}}}
    )

    assert run.status == "TIMED_OUT", run.explain()
    assert run.description["stopDate"] >= run.description["startDate"]
    assert run.of_type("ExecutionTimedOut"), run.explain()
