"""Restart services: every service checked before any is restarted; new PRIMARY deployments recorded (moto ECS).

moto 5.2.5's ForceNewDeployment gives the service's one deployment a new id and ``createdAt`` (in place, still
PRIMARY, rolloutState unchanged): a changed id is how these tests see that a service was restarted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from release_steps import restart_services
from release_steps.errors import (
    ConfigurationError,
    ServiceNotFoundError,
    UnsupportedDeploymentControllerError,
)
from release_steps.models import ReleaseState, RolloutResult
from release_steps.timeutil import parse_iso

from tests.functional.release_world import CLUSTER, SERVICES, ReleaseWorld, load_event


@pytest.fixture
def world(release_world: ReleaseWorld) -> ReleaseWorld:
    release_world.create_cluster()
    for name in SERVICES:
        release_world.create_service(name)
    return release_world


def make_event(services: list[str], dry_run: bool = False) -> dict[str, Any]:
    event = load_event("restart_services")
    event["request"]["services"] = services
    event["request"]["dryRun"] = dry_run
    return event


def invoke(event: dict[str, Any], context: Any) -> RolloutResult:
    return RolloutResult.load(restart_services.lambda_handler(event, context))


def deployment_ids(world: ReleaseWorld) -> dict[str, str]:
    return {name: world.primary_deployment_id(name) for name in SERVICES}


def test_given_the_events_file_when_parsed_then_it_is_a_release_state() -> None:
    assert ReleaseState.load(load_event("restart_services")).request.services == ["alert-ingest"]


def test_given_every_service_when_restarted_then_each_gets_a_new_primary_deployment_that_is_recorded(
    world: ReleaseWorld, release_context: Any
) -> None:
    before = deployment_ids(world)
    started = datetime.now(UTC)

    result = invoke(make_event(SERVICES), release_context)

    after = deployment_ids(world)
    assert [r.name for r in result.services] == SERVICES
    for rollout in result.services:
        assert after[rollout.name] != before[rollout.name], f"{rollout.name} was not restarted"
        assert rollout.deployment_id == after[rollout.name], "the new PRIMARY deployment is recorded"
        assert rollout.service_arn == f"arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{rollout.name}"
        assert rollout.task_definition is not None
        assert rollout.task_definition.endswith(f"task-definition/{rollout.name}:1")
        assert rollout.rollout_state == "IN_PROGRESS"
        assert rollout.desired_count == 2
    assert result.done is False
    assert result.dry_run is False
    assert result.checks == 0
    deadline = parse_iso(result.deadline, "deadline")
    assert started + timedelta(seconds=1200) - timedelta(milliseconds=1) <= deadline, "SERVICES_TIMEOUT_SECONDS"
    assert deadline <= datetime.now(UTC) + timedelta(seconds=1200)


def test_given_a_subset_when_restarted_then_only_those_services_change(
    world: ReleaseWorld, release_context: Any
) -> None:
    before = deployment_ids(world)

    invoke(make_event(["alert-matcher"]), release_context)

    after = deployment_ids(world)
    assert after["alert-matcher"] != before["alert-matcher"]
    assert {n: after[n] for n in ("alert-ingest", "alert-notifier")} == {
        n: before[n] for n in ("alert-ingest", "alert-notifier")
    }


def test_given_a_missing_service_when_restarted_then_service_not_found_and_nothing_is_restarted(
    world: ReleaseWorld, release_context: Any
) -> None:
    before = deployment_ids(world)

    with pytest.raises(ServiceNotFoundError) as raised:
        invoke(make_event(["alert-ingest", "alert-archiver", "alert-notifier"]), release_context)

    assert "alert-archiver (MISSING)" in raised.value.message
    assert f"cluster {CLUSTER}" in raised.value.message
    assert "nothing was restarted" in raised.value.message
    assert deployment_ids(world) == before, "bad input changes nothing, not even the services listed before it"


def test_given_an_inactive_service_when_restarted_then_service_not_found_and_nothing_is_restarted(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.ecs.delete_service(cluster=CLUSTER, service="alert-notifier", force=True)
    before = {n: world.primary_deployment_id(n) for n in ("alert-ingest", "alert-matcher")}

    with pytest.raises(ServiceNotFoundError, match=r"alert-notifier \(INACTIVE\)"):
        invoke(make_event(SERVICES), release_context)

    assert {n: world.primary_deployment_id(n) for n in ("alert-ingest", "alert-matcher")} == before


def test_given_a_code_deploy_service_when_restarted_then_its_controller_is_refused_and_nothing_is_restarted(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.ecs.delete_service(cluster=CLUSTER, service="alert-notifier", force=True)
    world.ecs_backend().services.pop(f"{CLUSTER}:alert-notifier")
    world.create_service("alert-notifier", deploymentController={"type": "CODE_DEPLOY"})
    before = {n: world.primary_deployment_id(n) for n in ("alert-ingest", "alert-matcher")}

    with pytest.raises(UnsupportedDeploymentControllerError, match=r"alert-notifier \(CODE_DEPLOY\)"):
        invoke(make_event(SERVICES), release_context)

    assert {n: world.primary_deployment_id(n) for n in ("alert-ingest", "alert-matcher")} == before


def test_given_a_dry_run_when_restarted_then_nothing_changes_and_what_would_restart_is_reported(
    world: ReleaseWorld, release_context: Any
) -> None:
    before = deployment_ids(world)

    result = invoke(make_event(SERVICES, dry_run=True), release_context)

    assert deployment_ids(world) == before, "a dry run restarts nothing"
    assert result.done is True
    assert result.dry_run is True
    assert [r.rollout_state for r in result.services] == ["SKIPPED"] * 3
    assert [r.deployment_id for r in result.services] == [before[n] for n in SERVICES]
    reason = result.services[0].rollout_state_reason
    assert reason is not None
    assert reason.startswith("dry run: would force a new deployment of arn:aws:ecs:")


def test_given_the_cluster_does_not_exist_when_restarted_then_configuration_error(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    release_setting("ECS_CLUSTER", "alerting-typo")

    with pytest.raises(ConfigurationError, match=r"'alerting-typo' \(ECS_CLUSTER\)"):
        invoke(make_event(SERVICES), release_context)


def test_given_the_events_file_when_run_against_moto_then_alert_ingest_is_restarted(
    world: ReleaseWorld, release_context: Any
) -> None:
    before = deployment_ids(world)

    result = invoke(load_event("restart_services"), release_context)

    assert [r.name for r in result.services] == ["alert-ingest"]
    assert world.primary_deployment_id("alert-ingest") != before["alert-ingest"]
