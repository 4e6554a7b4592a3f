"""Static checks of statemachine/deploy.asl.json: its graph, its error contract with errors.py, its bounds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from release_steps import errors, lock
from release_steps.timeutil import next_poll_seconds

from tests.static import documents as docs

# The states of the contract table (docs/HELPERS.md) and the path a successful release takes.
CONTRACT_TASKS = [
    "Validate release request",
    "Check migration image",
    "Run migration task",
    "Check migration task",
    "Verify schema",
    "Create Kafka topics",
    "Restart services",
    "Check services",
    "Build deployment record",
]
SUCCESS_PATH = [
    "Receive release request",
    "Validate release request",
    "Check migration image",
    "Run migration task",
    "Check migration task",
    "Migration task finished?",
    "Verify schema",
    "Create Kafka topics",
    "Restart services",
    "Check services",
    "Services rolled out?",
    "Build deployment record",
    "Release lock",
    "Notify success",
    "Return deployment record",
    "Release succeeded",
]
RESULT_PATHS = {
    "Validate release request": "$",
    "Check migration image": "$.image",
    "Run migration task": "$.migration",
    "Check migration task": "$.migration",
    "Verify schema": "$.schema",
    "Create Kafka topics": "$.topics",
    "Restart services": "$.rollout",
    "Check services": "$.rollout",
    "Build deployment record": "$.record",
    "Summarize failure": "$.record",
}
# Transient errors a state must retry because its step raises them by design (the contract); the source scan below
# adds whatever else the code it runs can raise.
REQUIRED_RETRIES = {
    "Check migration image": {"ImageScanPendingError"},
    "Run migration task": {"EcsCapacityError"},
    "Verify schema": {"DatabaseUnreachableError"},
    "Create Kafka topics": {"KafkaUnreachableError"},
}
# The only Lambda tasks that make no AWS call of their own: everything else retries AwsThrottlingError.
NO_AWS_CALLS = {"Build deployment record", "Summarize failure"}
FAILURE_ENTRY = "Summarize failure"
LOCK_RELEASE_ON_SUCCESS = "Release lock"
LOCK_RELEASE_ON_FAILURE = "Release lock after failure"
HISTORY_EVENT_LIMIT = 25_000
EVENTS_PER_POLL = 10  # Choice (2) + Wait (2) + Lambda task (5) events per loop turn, rounded up


def test_given_the_definition_then_start_at_exists_and_every_state_is_reachable() -> None:
    definition = docs.asl()
    all_states = definition["States"]
    assert definition["StartAt"] in all_states, f"StartAt {definition['StartAt']!r} is not a state"
    for name, state in all_states.items():
        for target in docs.transitions(state):
            assert target in all_states, f"state {name!r} hands over to {target!r}, which does not exist"
    unreachable = set(all_states) - docs.reachable(definition["StartAt"])
    assert not unreachable, f"states no path reaches: {sorted(unreachable)}"


def test_given_the_contract_table_then_every_step_state_exists_with_its_result_path() -> None:
    all_states = docs.states()
    for name, result_path in RESULT_PATHS.items():
        assert name in all_states, f"the contract's state {name!r} is missing from the ASL"
        assert all_states[name]["Type"] == "Task", f"{name!r} must be a Task"
        assert all_states[name]["ResultPath"] == result_path, (
            f"{name!r} writes {all_states[name]['ResultPath']!r}; the contract says {result_path!r}"
        )
    assert set(docs.lambda_tasks()) == {*CONTRACT_TASKS, FAILURE_ENTRY}, (
        f"Lambda tasks {sorted(docs.lambda_tasks())} differ from the contract table"
    )


def test_given_the_definition_then_every_state_and_the_machine_have_a_comment() -> None:
    definition = docs.asl()
    assert definition.get("Comment"), "the state machine has no top-level Comment"
    missing = [name for name, state in definition["States"].items() if not state.get("Comment")]
    assert not missing, f"states without a Comment: {missing}"


def test_given_a_successful_release_then_the_states_follow_the_designed_order() -> None:
    all_states = docs.states()
    walked = [docs.asl()["StartAt"]]
    while all_states[walked[-1]]["Type"] != "Succeed":
        state = all_states[walked[-1]]
        if state["Type"] == "Choice":
            done = [c for c in state["Choices"] if c.get("BooleanEquals") is True]
            assert len(done) == 1, f"choice {walked[-1]!r} needs one done==true branch"
            walked.append(done[0]["Next"])
        else:
            walked.append(state["Next"])
        assert len(walked) < 50, f"the success path loops: {walked}"
    assert walked == SUCCESS_PATH


def test_given_the_first_state_then_it_receives_the_raw_input_and_the_execution_context() -> None:
    # Any JSON value is wrapped first, so the Catch of the first step can always add $.failure beside it.
    assert docs.asl()["StartAt"] == "Receive release request"
    wrap = docs.states()["Receive release request"]
    assert wrap["Type"] == "Pass"
    assert wrap["Parameters"] == {"rawInput.$": "$"}
    assert wrap["Next"] == "Validate release request"
    first = docs.states()["Validate release request"]
    assert first["Parameters"] == {
        "input.$": "$.rawInput",
        "execution": {
            "id.$": "$$.Execution.Id",
            "name.$": "$$.Execution.Name",
            "startTime.$": "$$.Execution.StartTime",
            "stateMachineArn.$": "$$.StateMachine.Id",
        },
    }


@pytest.mark.parametrize(
    ("starter", "choice", "done_target", "wait", "check", "result"),
    [
        (
            "Run migration task",
            "Migration task finished?",
            "Verify schema",
            "Wait for migration task",
            "Check migration task",
            "$.migration",
        ),
        (
            "Restart services",
            "Services rolled out?",
            "Build deployment record",
            "Wait for services",
            "Check services",
            "$.rollout",
        ),
    ],
)
def test_given_a_wait_loop_then_it_checks_at_once_waits_what_the_check_returned_and_checks_again(
    starter: str, choice: str, done_target: str, wait: str, check: str, result: str
) -> None:
    all_states = docs.states()
    seconds_path = f"{result}.nextWaitSeconds"
    assert all_states[starter]["Next"] == check, f"{starter!r} must hand over to {check!r} with no wait before it"
    assert all_states[choice]["Choices"] == [
        {"Variable": f"{result}.done", "BooleanEquals": True, "Next": done_target}
    ], f"{choice!r} must leave the loop on {result}.done == true"
    assert all_states[choice]["Default"] == wait
    assert all_states[wait]["Type"] == "Wait"
    assert all_states[wait]["SecondsPath"] == seconds_path, f"{wait!r} must wait the {seconds_path} its check returned"
    assert all_states[wait]["Next"] == check
    assert all_states[check]["Next"] == choice, f"{check!r} must go back to {choice!r}"
    assert all_states[check]["ResultPath"] == result


def test_given_every_wait_then_it_uses_seconds_path_not_a_constant() -> None:
    waits = {name: state for name, state in docs.states().items() if state["Type"] == "Wait"}
    assert waits, "the ASL has no Wait state"
    for name, state in waits.items():
        assert "SecondsPath" in state, f"Wait {name!r} must take its interval from the state (SecondsPath)"
        assert not {"Seconds", "Timestamp", "TimestampPath"} & set(state), f"Wait {name!r} mixes interval fields"


def test_given_every_lambda_task_then_its_resource_is_one_plain_arn_substitution() -> None:
    for name, state in docs.lambda_tasks().items():
        assert re.fullmatch(r"\$\{[A-Za-z]+FunctionArn\}", state["Resource"]), (
            f"{name!r}: Resource {state['Resource']!r} is not the plain ${{XFunctionArn}} form"
        )
        shaping = {"OutputPath", "ResultSelector"} & set(state)
        assert not shaping, f"{name!r}: the plain-ARN form returns the payload itself; drop {sorted(shaping)}"


def test_given_every_task_then_it_has_a_timeout() -> None:
    tasks = {name: state for name, state in docs.states().items() if state["Type"] == "Task"}
    for name, state in tasks.items():
        timeout = state.get("TimeoutSeconds")
        assert isinstance(timeout, int), f"Task {name!r} has no TimeoutSeconds"
        assert timeout > 0, f"Task {name!r} has TimeoutSeconds {timeout}"


def test_given_every_retrier_then_it_is_bounded_with_backoff_and_jitter_and_never_matches_all() -> None:
    for name, state in docs.states().items():
        for retrier in state.get("Retry", []):
            where = f"{name!r} retrier {retrier['ErrorEquals']}"
            assert "States.ALL" not in retrier["ErrorEquals"], f"{where}: never retry States.ALL"
            assert 1 <= retrier.get("MaxAttempts", 0) <= 12, f"{where}: MaxAttempts must be set, 1..12"
            assert retrier.get("BackoffRate", 0) >= 1, f"{where}: BackoffRate must be set (>= 1)"
            assert retrier.get("IntervalSeconds", 0) >= 1, f"{where}: IntervalSeconds must be set"
            assert retrier.get("JitterStrategy") == "FULL", f"{where}: JitterStrategy FULL"
            assert retrier.get("MaxDelaySeconds", 0) >= retrier["IntervalSeconds"], f"{where}: MaxDelaySeconds"


def test_given_every_lambda_task_then_it_retries_the_lambda_service_errors_first() -> None:
    for name, state in docs.lambda_tasks().items():
        first = state["Retry"][0]
        assert set(first["ErrorEquals"]) == docs.LAMBDA_ERRORS, (
            f"{name!r}: the first retrier must be the standard Lambda transient block, got {first['ErrorEquals']}"
        )
        assert 1 <= first["IntervalSeconds"] <= 2
        assert 3 <= first["MaxAttempts"] <= 6
        assert first["BackoffRate"] == 2


def test_given_every_error_name_in_the_asl_then_it_exists() -> None:
    known = {
        *errors.transient_error_names(),
        *errors.terminal_error_names(),
        *docs.STATES_ERRORS,
        *docs.DYNAMODB_ERRORS,
    }
    for name, state in docs.states().items():
        for error in [*docs.retry_names(state), *docs.catch_names(state)]:
            assert error in known or error in docs.LAMBDA_ERRORS, (
                f"state {name!r} names {error!r}, which is neither in errors.py nor a States.*/Lambda.* error"
            )


def test_given_the_error_contract_then_no_terminal_error_is_ever_retried() -> None:
    terminal = set(errors.terminal_error_names())
    assert "InvalidInputError" in terminal
    for name, state in docs.states().items():
        retried = set(docs.retry_names(state))
        assert not retried & terminal, f"state {name!r} retries terminal errors {sorted(retried & terminal)}"
        if name in docs.lambda_tasks():
            broad = retried & {"States.TaskFailed", "States.Timeout", "States.Runtime"}
            assert not broad, f"Lambda task {name!r} retries {sorted(broad)}: that would retry terminal errors"


# Every step can raise these: its event is parsed (InvalidInputError) and its settings read (ConfigurationError).
EVERY_STEP_RAISES = frozenset({"InvalidInputError", "ConfigurationError"})


@pytest.mark.parametrize("state_name", CONTRACT_TASKS)
def test_given_the_code_a_task_runs_then_it_catches_exactly_the_terminal_errors_that_code_can_raise(
    state_name: str,
) -> None:
    state = docs.states()[state_name]
    module = docs.handler_module(docs.functions()[docs.task_functions()[state_name]])
    reachable = docs.reachable_identifiers(module)
    assert "lambda_handler" not in reachable or reachable, f"{module} has no lambda_handler"
    can_raise = (set(errors.terminal_error_names()) & reachable) | EVERY_STEP_RAISES
    catchers = state.get("Catch", [])
    assert len(catchers) == 1, f"{state_name!r} must have one catcher (its terminal errors), has {len(catchers)}"
    [catcher] = catchers
    caught = catcher["ErrorEquals"]
    assert len(caught) == len(set(caught)), f"{state_name!r} catches {caught}: a name is listed twice"
    assert not can_raise - set(caught), (
        f"{state_name!r} runs code ({module}) that can raise {sorted(can_raise - set(caught))} but does not catch it"
    )
    assert not set(caught) - can_raise, (
        f"{state_name!r} catches {sorted(set(caught) - can_raise)}, which the code it runs ({module}) cannot raise"
    )


def test_given_every_terminal_error_then_some_state_catches_it() -> None:
    caught = {name for state in docs.lambda_tasks().values() for name in docs.catch_names(state)}
    missing = set(errors.terminal_error_names()) - caught
    assert not missing, f"terminal errors no state catches (dead, or a state forgot them): {sorted(missing)}"


def test_given_every_catch_then_a_pass_named_after_its_state_records_the_state_then_summarizes() -> None:
    all_states = docs.states()
    for name, state in docs.lambda_tasks().items():
        if name == FAILURE_ENTRY:
            continue
        [catcher] = state["Catch"]
        assert catcher["ResultPath"] == "$.failure", f"{name!r} must keep the state and put the error in $.failure"
        named = all_states[catcher["Next"]]
        assert catcher["Next"] == f"{name} failed", f"{name!r} must hand its error to the Pass {name + ' failed'!r}"
        assert named == {
            "Type": "Pass",
            "Comment": named.get("Comment"),
            "Result": {"state": name, "resultPath": state["ResultPath"]},
            "ResultPath": "$.failed",
            "Next": FAILURE_ENTRY,
        }, f"{catcher['Next']!r} must write {name!r} and its ResultPath to $.failed and go to {FAILURE_ENTRY!r}"
    summarize = all_states[FAILURE_ENTRY]
    assert summarize["Parameters"]["failed.$"] == "$.failed"
    assert summarize["Parameters"]["failure.$"] == "$.failure"


def test_given_every_lambda_task_then_no_retryable_or_unexpected_error_is_caught() -> None:
    # Step Functions redrives "from the unsuccessful step". A caught error leaves its step through the Catch and ends
    # in Release failed, which is what a redrive would re-run; an uncaught one fails the execution at its step.
    never_caught = {*errors.transient_error_names(), *docs.LAMBDA_ERRORS, *docs.STATES_ERRORS}
    for name, state in docs.lambda_tasks().items():
        if name == FAILURE_ENTRY:
            continue
        caught = set(docs.catch_names(state))
        assert not caught & never_caught, (
            f"{name!r} catches {sorted(caught & never_caught)}: after its retries (or a timeout, or a bug) the "
            "execution must fail at this step so that a redrive resumes here"
        )
        platform = sorted(c for c in caught if c.startswith(("Lambda.", "Sandbox.", "Runtime.", "States.")))
        assert not platform, f"{name!r} catches {platform}: Lambda and Step Functions errors must fail at the step"


def test_given_every_transient_error_then_some_task_retries_it() -> None:
    retried = {error for state in docs.states().values() for error in docs.retry_names(state)}
    missing = set(errors.transient_error_names()) - retried
    assert not missing, f"transient errors no Task retries: {sorted(missing)}"


@pytest.mark.parametrize("state_name", sorted(REQUIRED_RETRIES))
def test_given_a_step_with_a_named_transient_condition_then_its_task_retries_it(state_name: str) -> None:
    retried = set(docs.retry_names(docs.states()[state_name]))
    assert REQUIRED_RETRIES[state_name] <= retried, (
        f"{state_name!r} must retry {sorted(REQUIRED_RETRIES[state_name] - retried)}"
    )


def test_given_every_task_that_calls_aws_then_it_retries_throttling() -> None:
    for name, state in docs.lambda_tasks().items():
        if name not in NO_AWS_CALLS:
            assert "AwsThrottlingError" in docs.retry_names(state), f"{name!r} must retry AwsThrottlingError"


@pytest.mark.parametrize("state_name", CONTRACT_TASKS)
def test_given_the_code_a_task_runs_then_every_transient_error_it_can_raise_is_retried_there(state_name: str) -> None:
    function = docs.functions()[docs.task_functions()[state_name]]
    module = docs.handler_module(function)
    sources = docs.sources_of(module, exclude=frozenset({"release_steps.errors"}))
    if not any(source.module == module for source in sources):
        pytest.fail(f"{state_name!r} runs {module}, which does not exist yet ({docs.module_path(module)})")
    # Identifiers, not strings, in the functions reachable from the handler: a class the code names (raise, except,
    # a helper's return) is one it can raise.
    referenced = docs.reachable_identifiers(module)
    mentioned = set(errors.transient_error_names()) & referenced
    retried = set(docs.retry_names(docs.states()[state_name]))
    assert mentioned <= retried, (
        f"{state_name!r} runs code that raises {sorted(mentioned - retried)} "
        f"({', '.join(s.module for s in sources)}) but does not retry it"
    )


def test_given_the_failure_path_then_the_original_failure_survives_to_the_fail_state() -> None:
    all_states = docs.states()
    summarize = all_states[FAILURE_ENTRY]
    assert summarize["Resource"] == "${SummarizeFailureFunctionArn}", "Summarize failure runs its own function"
    assert summarize["Next"] == "Notify failure"
    [fallback] = summarize["Catch"]
    assert fallback["ErrorEquals"] == ["States.ALL"]
    assert fallback["Next"] == "Notify failure (raw)"
    for name in (FAILURE_ENTRY, "Notify failure", "Notify failure (raw)"):
        for catcher in all_states[name].get("Catch", []):
            assert catcher["ResultPath"] not in {"$", "$.failure"}, (
                f"{name!r} Catch writes {catcher['ResultPath']}: it would hide the original failure"
            )
    for name in ("Notify failure", "Notify failure (raw)"):
        assert all_states[name]["Next"] == LOCK_RELEASE_ON_FAILURE
        assert {c["Next"] for c in all_states[name]["Catch"]} == {LOCK_RELEASE_ON_FAILURE}
    release = all_states[LOCK_RELEASE_ON_FAILURE]
    assert release["Next"] == "Release failed"
    assert {c["Next"] for c in release["Catch"]} == {"Release failed"}
    assert {c["ResultPath"] for c in release["Catch"]}.isdisjoint({"$", "$.failure"})
    fail = all_states["Release failed"]
    assert fail["Type"] == "Fail"
    assert fail["ErrorPath"] == "$.failure.Error"
    assert fail["CausePath"] == "$.failure.Cause"


def test_given_the_failure_path_then_it_can_never_end_in_success() -> None:
    all_states = docs.states()
    after_failure = docs.reachable(FAILURE_ENTRY)
    assert "Release failed" in after_failure
    succeeded = [name for name in after_failure if all_states[name]["Type"] == "Succeed"]
    assert not succeeded, f"the failure path can reach {succeeded}"
    on_success_path = docs.reachable(docs.asl()["StartAt"], with_catch=False)
    assert "Release failed" not in on_success_path
    assert FAILURE_ENTRY not in on_success_path


def test_given_the_notifications_then_they_publish_to_the_topic_from_the_record() -> None:
    all_states = docs.states()
    for name in ("Notify success", "Notify failure"):
        assert all_states[name]["Resource"] == "arn:aws:states:::sns:publish"
        assert all_states[name]["Parameters"] == {
            "TopicArn": "${NotificationTopicArn}",
            "Subject.$": "$.record.subject",
            "Message.$": "$.record.summary",
        }, f"{name!r} must publish the record's subject and summary"
        assert all_states[name]["ResultPath"] is None, f"{name!r} must not replace the state with SNS's answer"
    raw = all_states["Notify failure (raw)"]["Parameters"]
    assert raw["TopicArn"] == "${NotificationTopicArn}"
    assert len(raw["Subject"]) < 100, "an SNS subject must be under 100 characters"
    assert "States.JsonToString($.failure)" in raw["Message.$"], "the raw notification must carry the failure"


def test_given_a_successful_release_then_the_output_is_the_deployment_record() -> None:
    all_states = docs.states()
    assert all_states["Notify success"]["Next"] == "Return deployment record"
    assert all_states["Return deployment record"] == {
        "Type": "Pass",
        "Comment": all_states["Return deployment record"]["Comment"],
        "OutputPath": "$.record.record",
        "Next": "Release succeeded",
    }


@pytest.mark.parametrize("state_name", [LOCK_RELEASE_ON_SUCCESS, LOCK_RELEASE_ON_FAILURE])
def test_given_a_lock_release_state_then_it_deletes_only_this_execution_s_lock_and_tolerates_not_holding_it(
    state_name: str,
) -> None:
    state = docs.states()[state_name]
    assert state["Resource"] == "arn:aws:states:::dynamodb:deleteItem"
    assert state["Parameters"] == {
        "TableName": "${ReleaseLockTableName}",
        "Key": lock.KEY,
        "ConditionExpression": lock.HELD_BY,
        "ExpressionAttributeValues": {":arn": {"S.$": "$$.Execution.Id"}},
    }, f"{state_name!r} must delete the lock item of lock.py only when this execution holds it"
    assert state["ResultPath"] is None
    [catcher] = state["Catch"]
    assert catcher["ErrorEquals"] == ["DynamoDB.ConditionalCheckFailedException"], (
        "only 'not held' is caught: a DynamoDB outage after the retries fails the execution here, lock held, and a "
        "redrive resumes here"
    )
    assert catcher["Next"] == state["Next"]
    retried = set(docs.retry_names(state))
    assert "DynamoDB.ConditionalCheckFailedException" not in retried
    assert retried <= docs.DYNAMODB_ERRORS


def test_given_every_path_that_ends_the_release_then_it_gives_the_lock_back_first() -> None:
    all_states = docs.states()
    # Every way to Release succeeded / Release failed passes a lock release state: walk back from each end.
    for end, release in (("Release succeeded", LOCK_RELEASE_ON_SUCCESS), ("Release failed", LOCK_RELEASE_ON_FAILURE)):
        into_end = {name for name, state in all_states.items() if end in docs.transitions(state)}
        assert into_end <= {release, "Return deployment record"}, f"{end!r} is reached past the lock: {into_end}"
    assert all_states["Return deployment record"]["Next"] == "Release succeeded"
    assert LOCK_RELEASE_ON_SUCCESS in docs.reachable("Validate release request", with_catch=False)
    assert LOCK_RELEASE_ON_FAILURE in docs.reachable(FAILURE_ENTRY)
    assert LOCK_RELEASE_ON_SUCCESS not in docs.reachable(FAILURE_ENTRY)


def _worst_case_retry_seconds(state: dict[str, Any]) -> float:
    """Longest time a task can spend: every attempt up to its timeout plus every backoff at its maximum."""
    attempts = 1
    delays = 0.0
    for retrier in state.get("Retry", []):
        attempts += retrier["MaxAttempts"]
        for attempt in range(retrier["MaxAttempts"]):
            delay = retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt
            delays += min(delay, retrier["MaxDelaySeconds"])
    return float(attempts * state["TimeoutSeconds"]) + delays


def test_given_the_deadlines_at_their_maximum_then_the_execution_timeout_still_covers_them() -> None:
    # What the backstop must never cut: both loops up to their deadline plus one poll, every task's single attempt,
    # and the worst retry episode of any one task. (Every retrier of every task exhausting at once is not covered:
    # that execution times out, which the ExecutionsTimedOut alarm reports.)
    parameters = docs.template()["Parameters"]
    deadlines = parameters["MigrationTimeoutSeconds"]["MaxValue"] + parameters["ServicesTimeoutSeconds"]["MaxValue"]
    polls = parameters["MigrationPollSeconds"]["MaxValue"] + parameters["ServicesPollSeconds"]["MaxValue"]
    tasks = {name: state for name, state in docs.states().items() if state["Type"] == "Task"}
    single_attempts = sum(state["TimeoutSeconds"] for state in tasks.values())
    worst_episode = max(_worst_case_retry_seconds(state) for state in tasks.values())
    needed = deadlines + polls + single_attempts + worst_episode
    timeout = docs.asl()["TimeoutSeconds"]
    assert timeout >= needed, f"TimeoutSeconds {timeout} < {needed:.0f} s that a legitimate release can take"
    assert timeout <= 1.5 * needed, f"TimeoutSeconds {timeout} is far above the {needed:.0f} s needed: not a bound"


def test_given_the_fastest_allowed_polling_then_an_execution_stays_under_the_history_limit() -> None:
    # Each loop's waits double from 1 s up to its ceiling: the ramp's turns (fewer than log2(ceiling) + 1 per loop)
    # come on top of a loop polling at the lowest ceiling the template allows for the whole execution.
    parameters = docs.template()["Parameters"]
    fastest = min(parameters["MigrationPollSeconds"]["MinValue"], parameters["ServicesPollSeconds"]["MinValue"])
    ceilings = [parameters[p]["MaxValue"] for p in ("MigrationPollSeconds", "ServicesPollSeconds")]
    ramp = sum(next(n for n in range(1, 64) if next_poll_seconds(n, c) == c) for c in ceilings)
    turns = docs.asl()["TimeoutSeconds"] / fastest + ramp
    assert turns * EVENTS_PER_POLL < HISTORY_EVENT_LIMIT * 0.8, (
        f"{turns:.0f} poll turns x {EVENTS_PER_POLL} events can reach Step Functions' {HISTORY_EVENT_LIMIT}-event limit"
    )


def test_given_cfn_lint_s_state_machine_schema_then_the_definition_is_valid() -> None:
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    substitutions = dict.fromkeys(docs.asl_substitutions(), "arn:aws:lambda:us-east-1:123456789012:function:x")
    cfn = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/deployflow",
                    "Definition": docs.asl(),
                    "DefinitionSubstitutions": substitutions,
                },
            }
        },
    }
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=["us-east-1"]))
    problems = [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E36")]
    assert not problems, "cfn-lint's ASL rule rejects the definition:\n" + "\n".join(problems)


def test_given_moto_s_interpreter_then_it_parses_the_substituted_definition() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    text = docs.ASL_PATH.read_text(encoding="utf-8")
    text = docs.SUBSTITUTION.sub(
        lambda m: (
            "arn:aws:sns:us-east-1:123456789012:deployflow"
            if m.group(1) == "NotificationTopicArn"
            else f"arn:aws:lambda:us-east-1:123456789012:function:{m.group(1)}"
        ),
        text,
    )
    program, _ = AmazonStateLanguageParser.parse(text)
    assert program is not None
