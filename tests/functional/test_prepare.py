"""Validate release request: input validation with the stack's defaults, and the one-release lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from release_steps import lock, prepare
from release_steps.errors import (
    AwsThrottlingError,
    ConfigurationError,
    DeploymentInProgressError,
    InvalidInputError,
    MigrationTaskDefinitionError,
    ServiceDeploymentFailedError,
    ServiceNotFoundError,
    UnsupportedDeploymentControllerError,
)
from release_steps.models import PrepareEvent, ReleaseState

from tests.functional.release_world import (
    CLUSTER,
    FAMILY,
    LOCK_TABLE,
    SERVICES,
    STATE_MACHINE_ARN,
    ReleaseWorld,
    load_event,
)

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def world(release_world: ReleaseWorld) -> ReleaseWorld:
    """A state machine, and what the preflight looks for: the services and the migration task definition."""
    release_world.create_state_machine()
    release_world.create_cluster()
    release_world.register_migration_task()
    for name in SERVICES:
        release_world.create_service(name)
    return release_world


def event_for(execution: dict[str, str], raw_input: dict[str, Any] | None = None) -> dict[str, Any]:
    event = load_event("prepare")
    event["execution"] = execution
    if raw_input is not None:
        event["input"] = raw_input
    return event


def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return prepare.lambda_handler(event, context)


# --- the happy paths ----------------------------------------------------------------------------------------------


def test_given_the_example_event_and_no_other_release_when_validated_then_the_state_holds_request_execution_poll(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = event_for(world.start_execution("release-2026-11-23-4"))

    state = ReleaseState.load(invoke(event, release_context))

    assert state.request.image_tag == "2026-11-23.4"
    assert state.request.services == ["alert-ingest"], "the services the operator asked for are kept"
    assert state.request.dry_run is False
    assert state.execution.id == event["execution"]["id"]
    assert (state.poll.migration_seconds, state.poll.services_seconds) == (10, 15), "poll intervals from settings"


def test_given_only_an_image_tag_when_validated_then_every_configured_service_and_no_dry_run_are_the_defaults(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = event_for(world.start_execution("release-defaults"), {"imageTag": "2026-11-23.4"})

    output = invoke(event, release_context)

    request = output["request"]
    assert {k: request[k] for k in ("imageTag", "services", "dryRun")} == {
        "imageTag": "2026-11-23.4",
        "services": SERVICES,
        "dryRun": False,
    }


def test_given_a_dry_run_request_when_validated_then_dry_run_is_carried_to_every_later_step(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = event_for(world.start_execution("release-dry"), {"imageTag": "2026-11-23.4", "dryRun": True})

    assert invoke(event, release_context)["request"]["dryRun"] is True


def test_given_the_events_file_when_parsed_then_it_is_a_prepare_event() -> None:
    event = PrepareEvent.load(load_event("prepare"))

    assert event.input["imageTag"] == "2026-11-23.4"
    assert event.execution.state_machine_arn == STATE_MACHINE_ARN


# --- bad input: InvalidInputError naming the field, before anything else ------------------------------------------


@pytest.mark.parametrize(
    ("raw_input", "field"),
    [
        ({"imageTag": "2026-11-23.4", "force": True}, "force"),
        ({"imagetag": "2026-11-23.4"}, "imagetag"),
        ({}, "imageTag"),
        ({"imageTag": "has a space"}, "imageTag"),
        ({"imageTag": "-leading-dash"}, "imageTag"),
        ({"imageTag": "x" * 129}, "imageTag"),
        ({"imageTag": "2026-11-23.4", "services": []}, "services"),
        ({"imageTag": "2026-11-23.4", "services": "alert-ingest"}, "services"),
        ({"imageTag": "2026-11-23.4", "dryRun": "maybe"}, "dryRun"),
        # Strict booleans: what lax parsing would have read as a real release or as a dry run.
        ({"imageTag": "2026-11-23.4", "dryRun": "off"}, "dryRun"),
        ({"imageTag": "2026-11-23.4", "dryRun": "0"}, "dryRun"),
        ({"imageTag": "2026-11-23.4", "dryRun": 0}, "dryRun"),
        ({"imageTag": "2026-11-23.4", "dryRun": "yes"}, "dryRun"),
        ({"imageTag": "2026-11-23.4", "dryRun": "true"}, "dryRun"),
        ({"imageTag": "2026-11-23.4", "dryRun": 1}, "dryRun"),
    ],
)
def test_given_malformed_input_when_validated_then_invalid_input_error_names_the_field(
    world: ReleaseWorld, release_context: Any, raw_input: dict[str, Any], field: str
) -> None:
    event = event_for(world.start_execution("release-bad"), raw_input)

    with pytest.raises(InvalidInputError) as raised:
        invoke(event, release_context)

    message = raised.value.message
    assert message.startswith("invalid execution input: "), message
    assert f"{field}:" in message, f"the message should name {field!r}: {message}"
    assert "\n" not in message, "messages are one line"


def test_given_an_unknown_service_when_validated_then_invalid_input_error_names_it_and_the_known_ones(
    world: ReleaseWorld, release_context: Any
) -> None:
    raw_input = {"imageTag": "2026-11-23.4", "services": ["alert-ingest", "alert-ingset"]}

    with pytest.raises(InvalidInputError) as raised:
        invoke(event_for(world.start_execution("release-typo"), raw_input), release_context)

    assert "'alert-ingset'" in raised.value.message
    assert "alert-matcher" in raised.value.message, "the message should list the services this stack releases"


def test_given_a_service_listed_twice_when_validated_then_invalid_input_error_names_the_duplicate(
    world: ReleaseWorld, release_context: Any
) -> None:
    raw_input = {"imageTag": "2026-11-23.4", "services": ["alert-matcher", "alert-ingest", "alert-matcher"]}

    with pytest.raises(InvalidInputError, match=r"services: listed more than once: .alert-matcher."):
        invoke(event_for(world.start_execution("release-dup"), raw_input), release_context)


def test_given_an_event_without_execution_context_when_invoked_then_invalid_input_error_names_it(
    world: ReleaseWorld, release_context: Any
) -> None:
    with pytest.raises(InvalidInputError, match=r"execution: field required"):
        invoke({"input": {"imageTag": "2026-11-23.4"}}, release_context)


# --- one release at a time: the lock --------------------------------------------------------------------------------


def held_by(world: ReleaseWorld, execution: dict[str, str], context: Any, tag: str = "2026-11-23.4") -> None:
    """``execution`` took the lock through the step itself."""
    invoke(event_for(execution, {"imageTag": tag}), context)


def test_given_no_release_holds_the_lock_when_validated_then_it_takes_it_naming_execution_tag_and_start(
    world: ReleaseWorld, release_context: Any
) -> None:
    mine = world.start_execution("release-mine", started=T0)

    invoke(event_for(mine, {"imageTag": "2026-11-23.4", "dryRun": True}), release_context)

    item = world.lock_items()["release"]
    assert item["executionArn"] == {"S": mine["id"]}
    assert item["executionName"] == {"S": "release-mine"}
    assert item["imageTag"] == {"S": "2026-11-23.4"}
    assert item["dryRun"] == {"BOOL": True}
    assert item["executionStartTime"] == {"S": mine["startTime"]}
    assert item["acquiredAt"]["S"].endswith("Z")
    assert item["acquisitions"] == {"N": "1"}


def test_given_another_release_holds_the_lock_when_validated_then_deployment_in_progress_names_it_and_the_ways_out(
    world: ReleaseWorld, release_context: Any
) -> None:
    holder = world.start_execution("release-holder", started=T0)
    held_by(world, holder, release_context, tag="2026-11-22.9")
    before = world.lock_items()
    mine = world.start_execution("release-refused", started=T0 + timedelta(minutes=5))

    with pytest.raises(DeploymentInProgressError) as raised:
        invoke(event_for(mine), release_context)

    message = raised.value.message
    assert "execution release-holder (" + holder["id"] + ")" in message, message
    assert "image tag 2026-11-22.9" in message, message
    assert f"started {holder['startTime']}" in message, message
    assert "now RUNNING" in message, "the holder's status, from DescribeExecution"
    assert f"aws stepfunctions redrive-execution --execution-arn {holder['id']} --region us-east-1" in message
    assert f'deployflow abandon {holder["id"]} --reason "<why>"' in message
    assert "\n" not in message
    assert world.lock_items() == before, "a refused release must not touch the holder's lock"


def test_given_this_execution_crashed_after_taking_the_lock_when_the_step_is_retried_then_it_takes_it_again(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the step took the lock and then died before its end (a bug, a Lambda timeout: the ASL retries or a
    # redrive reruns the step as the same execution)
    mine = world.start_execution("release-crashed", started=T0)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the Lambda died between the lock and the step's end")

    with monkeypatch.context() as patch:
        patch.setattr(prepare, "preflight", crash)
        with pytest.raises(RuntimeError):
            invoke(event_for(mine), release_context)
    first = world.lock_items()["release"]
    assert first["executionArn"] == {"S": mine["id"]}, "the crash happened after the lock was taken"

    # WHEN the same execution runs the step again THEN it proceeds (no deadlock on its own lock)
    state = invoke(event_for(mine), release_context)

    assert state["execution"]["id"] == mine["id"]
    again = world.lock_items()["release"]
    assert again["acquisitions"] == {"N": "2"}
    assert again["acquiredAt"] == first["acquiredAt"], "the first acquisition's time is kept"
    other = world.start_execution("release-other", started=T0 + timedelta(seconds=1))
    with pytest.raises(DeploymentInProgressError, match="release-crashed"):
        invoke(event_for(other), release_context)


@pytest.mark.parametrize("round_", range(5))
def test_given_two_releases_in_the_same_millisecond_when_both_validate_at_once_then_exactly_one_takes_the_lock(
    world: ReleaseWorld, release_context: Any, round_: int
) -> None:
    executions = [world.start_execution(f"release-{round_}-{side}", started=T0) for side in ("a", "b")]
    both_ready = threading.Barrier(2, timeout=30)
    outcomes: dict[str, str] = {}

    def validate(execution: dict[str, str]) -> None:
        both_ready.wait()
        try:
            invoke(event_for(execution), release_context)
            outcomes[execution["name"]] = "took the lock"
        except DeploymentInProgressError as e:
            outcomes[execution["name"]] = e.message

    threads = [threading.Thread(target=validate, args=(e,)) for e in executions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [name for name, outcome in outcomes.items() if outcome == "took the lock"]
    assert len(outcomes) == 2, outcomes
    assert len(winners) == 1, outcomes
    [loser] = set(outcomes) - set(winners)
    assert f"execution {winners[0]} (" in outcomes[loser], "the refused one names the winner"
    assert world.lock_items()["release"]["executionName"] == {"S": winners[0]}


def test_given_the_holder_gave_the_lock_back_when_a_new_release_validates_then_it_proceeds(
    world: ReleaseWorld, release_context: Any
) -> None:
    holder = world.start_execution("release-done", started=T0)
    held_by(world, holder, release_context)
    assert lock.release(world.dynamodb, LOCK_TABLE, holder["id"]) is True

    mine = world.start_execution("release-next", started=T0 + timedelta(hours=1))

    assert invoke(event_for(mine), release_context)["execution"]["name"] == "release-next"
    assert world.lock_items()["release"]["executionName"] == {"S": "release-next"}


def test_given_another_holder_when_a_release_that_does_not_hold_it_gives_it_back_then_nothing_changes(
    world: ReleaseWorld, release_context: Any
) -> None:
    holder = world.start_execution("release-holder", started=T0)
    held_by(world, holder, release_context)
    refused = world.start_execution("release-refused", started=T0)

    assert lock.release(world.dynamodb, LOCK_TABLE, refused["id"]) is False
    assert world.lock_items()["release"]["executionArn"] == {"S": holder["id"]}


def test_given_bad_input_while_another_release_holds_the_lock_when_validated_then_the_input_error_wins(
    world: ReleaseWorld, release_context: Any
) -> None:
    holder = world.start_execution("release-earlier", started=T0)
    held_by(world, holder, release_context)
    mine = world.start_execution("release-later", started=T0 + timedelta(minutes=1))

    with pytest.raises(InvalidInputError, match="imageTag"):
        invoke(event_for(mine, {"imageTag": ""}), release_context)


def test_given_bad_input_when_validated_then_the_lock_is_not_taken(world: ReleaseWorld, release_context: Any) -> None:
    mine = world.start_execution("release-bad", started=T0)

    with pytest.raises(InvalidInputError):
        invoke(event_for(mine, {"imageTag": "no spaces allowed"}), release_context)

    assert "release" not in world.lock_items()


def test_given_dynamodb_throttles_when_validated_then_aws_throttling_error(
    world: ReleaseWorld, release_context: Any, no_sdk_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    mine = world.start_execution("release-throttled", started=T0)

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("ProvisionedThroughputExceededException", "Rate exceeded")

    monkeypatch.setattr(DynamoDBBackend, "update_item", throttled)

    with pytest.raises(AwsThrottlingError, match=r"dynamodb:UpdateItem was throttled"):
        invoke(event_for(mine), release_context)
    assert AwsThrottlingError.transient, "the ASL retries it"


def test_given_the_lock_table_does_not_exist_when_validated_then_configuration_error_names_it(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    release_setting("LOCK_TABLE_NAME", "no-such-table")
    mine = world.start_execution("release-no-table", started=T0)

    with pytest.raises(ConfigurationError, match=r"'no-such-table' \(LOCK_TABLE_NAME\) cannot be written"):
        invoke(event_for(mine), release_context)


def test_given_a_service_gone_from_the_cluster_when_validated_then_service_not_found_before_anything_changes(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = event_for(world.start_execution("release-missing"), {"imageTag": "2026-11-23.4"})
    world.ecs.delete_service(cluster=CLUSTER, service=SERVICES[1], force=True)

    with pytest.raises(ServiceNotFoundError) as raised:
        invoke(event, release_context)

    assert f"{SERVICES[1]} (INACTIVE)" in raised.value.message, raised.value.message
    assert "nothing was restarted" in raised.value.message
    assert world.tasks() == [], "the preflight started a task"


def test_given_a_service_deployed_by_codedeploy_when_validated_then_its_controller_is_refused_before_anything(
    world: ReleaseWorld, release_context: Any
) -> None:
    # GIVEN a service of the release that CodeDeploy deploys (forceNewDeployment cannot roll it out)
    event = event_for(world.start_execution("release-codedeploy"), {"imageTag": "2026-11-23.4"})
    world.ecs.delete_service(cluster=CLUSTER, service=SERVICES[2], force=True)
    world.ecs_backend().services.pop(f"{CLUSTER}:{SERVICES[2]}")
    world.create_service(SERVICES[2], deploymentController={"type": "CODE_DEPLOY"})

    # WHEN the release is validated THEN it is refused by name, not as a failed deployment, and nothing ran
    with pytest.raises(UnsupportedDeploymentControllerError) as raised:
        invoke(event, release_context)

    assert f"{SERVICES[2]} (CODE_DEPLOY)" in raised.value.message, raised.value.message
    assert not isinstance(raised.value, ServiceDeploymentFailedError)
    assert world.tasks() == [], "the preflight started a task"


def test_given_no_migration_task_definition_when_validated_then_migration_task_definition_error(
    world: ReleaseWorld, release_context: Any
) -> None:
    execution = world.start_execution("release-no-taskdef")
    for arn in world.ecs.list_task_definitions(familyPrefix=FAMILY)["taskDefinitionArns"]:
        world.ecs.deregister_task_definition(taskDefinition=arn)

    with pytest.raises(MigrationTaskDefinitionError, match=FAMILY):
        invoke(event_for(execution), release_context)


def test_given_services_without_the_circuit_breaker_when_validated_then_the_request_carries_one_warning_each(
    world: ReleaseWorld, release_context: Any
) -> None:
    # moto keeps no deploymentConfiguration: its services read as having the circuit breaker off
    event = event_for(world.start_execution("release-no-breaker"), {"imageTag": "2026-11-23.4"})

    state = invoke(event, release_context)

    warnings = state["request"]["warnings"]
    assert [w.split(":")[0] for w in warnings] == [f"service {name}" for name in SERVICES], warnings
    assert all("circuit breaker is disabled" in w and "only at the deadline" in w for w in warnings), warnings


def test_given_an_input_that_is_not_an_object_when_validated_then_invalid_input_names_its_json_type(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = event_for(world.start_execution("release-array"))
    event["input"] = []

    with pytest.raises(InvalidInputError, match=r"expected a JSON object .* got an array"):
        invoke(event, release_context)
