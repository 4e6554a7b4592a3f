"""Validate release request: input validation with the stack's defaults, and the one-release-at-a-time guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from release_steps import prepare
from release_steps.errors import (
    AwsThrottlingError,
    DeploymentInProgressError,
    InvalidInputError,
    MigrationTaskDefinitionError,
    ServiceDeploymentFailedError,
    ServiceNotFoundError,
    UnsupportedDeploymentControllerError,
)
from release_steps.models import PrepareEvent, ReleaseState

from tests.functional.release_world import CLUSTER, FAMILY, SERVICES, STATE_MACHINE_ARN, ReleaseWorld, load_event

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

    state = ReleaseState.model_validate(invoke(event, release_context))

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
    event = PrepareEvent.model_validate(load_event("prepare"))

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


def test_given_bad_input_while_another_release_runs_when_validated_then_the_input_error_wins(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.start_execution("release-earlier", started=T0)
    mine = world.start_execution("release-later", started=T0 + timedelta(minutes=1))

    with pytest.raises(InvalidInputError, match="imageTag"):
        invoke(event_for(mine, {"imageTag": ""}), release_context)


def test_given_an_event_without_execution_context_when_invoked_then_invalid_input_error_names_it(
    world: ReleaseWorld, release_context: Any
) -> None:
    with pytest.raises(InvalidInputError, match=r"execution: Field required"):
        invoke({"input": {"imageTag": "2026-11-23.4"}}, release_context)


# --- one release at a time -----------------------------------------------------------------------------------------


def test_given_an_earlier_running_release_when_validated_then_deployment_in_progress_names_it(
    world: ReleaseWorld, release_context: Any
) -> None:
    earlier = world.start_execution("release-earlier", started=T0)
    mine = world.start_execution("release-later", started=T0 + timedelta(seconds=30))

    with pytest.raises(DeploymentInProgressError) as raised:
        invoke(event_for(mine), release_context)

    assert "release-earlier" in raised.value.message
    assert earlier["id"] in raised.value.message, "the message should carry the ARN an operator can stop"


def test_given_a_later_running_release_when_validated_then_this_earlier_one_proceeds(
    world: ReleaseWorld, release_context: Any
) -> None:
    mine = world.start_execution("release-earlier", started=T0)
    world.start_execution("release-later", started=T0 + timedelta(seconds=30))

    assert invoke(event_for(mine), release_context)["execution"]["name"] == "release-earlier"


def test_given_two_releases_started_in_the_same_millisecond_when_both_validate_then_exactly_one_proceeds(
    world: ReleaseWorld, release_context: Any
) -> None:
    first = world.start_execution("release-a", started=T0)
    second = world.start_execution("release-b", started=T0)

    outcomes = {}
    for execution in (second, first):
        try:
            invoke(event_for(execution), release_context)
            outcomes[execution["name"]] = "proceeds"
        except DeploymentInProgressError as e:
            outcomes[execution["name"]] = e.message

    assert outcomes["release-a"] == "proceeds", "a tie goes to the lower name"
    assert "another release is running: execution release-a " in outcomes["release-b"], "the refused one names a"


def test_given_only_finished_releases_when_validated_then_it_proceeds(
    world: ReleaseWorld, release_context: Any
) -> None:
    for name in ("release-old-1", "release-old-2"):
        finished = world.start_execution(name, started=T0 - timedelta(days=1))
        world.sfn.stop_execution(executionArn=finished["id"], error="Aborted", cause="test")
    mine = world.start_execution("release-now", started=T0)

    assert invoke(event_for(mine), release_context)["request"]["imageTag"] == "2026-11-23.4"


def test_given_the_earlier_release_on_the_second_page_when_validated_then_it_is_still_found(
    world: ReleaseWorld, release_context: Any
) -> None:
    # moto returns RUNNING executions newest first, 100 a page: 120 later ones push the earlier one to page 2.
    earlier = world.start_execution("release-000-earliest", started=T0)
    mine = world.start_execution("release-001-mine", started=T0 + timedelta(seconds=1))
    for i in range(120):
        world.start_execution(f"release-later-{i:03d}", started=T0 + timedelta(seconds=2 + i))

    with pytest.raises(DeploymentInProgressError) as raised:
        invoke(event_for(mine), release_context)

    assert earlier["id"] in raised.value.message


def test_given_my_execution_missing_from_the_listing_when_validated_then_the_context_start_time_is_used(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.start_execution("release-running", started=T0 + timedelta(minutes=5))
    not_yet_listed = {
        "id": f"{STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:release-fresh",
        "name": "release-fresh",
        "startTime": "2026-11-23T10:00:00.000Z",
        "stateMachineArn": STATE_MACHINE_ARN,
    }

    assert invoke(event_for(not_yet_listed), release_context)["execution"]["name"] == "release-fresh"


def test_given_stepfunctions_throttles_when_validated_then_aws_throttling_error(
    world: ReleaseWorld, release_context: Any, no_sdk_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = world.start_execution("release-throttled", started=T0)

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    monkeypatch.setattr(type(world.sfn_backend()), "list_executions", throttled)

    with pytest.raises(AwsThrottlingError, match=r"states:ListExecutions was throttled"):
        invoke(event_for(mine), release_context)
    assert AwsThrottlingError.transient, "the ASL retries it"


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
