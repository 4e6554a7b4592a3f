"""Check services: follow the recorded deployments to COMPLETED, or name the failure / rollback / timeout.

moto 5.2.5 gives each service one deployment whose rolloutState is fixed at CreateService (COMPLETED only when
MOTO_ECS_SERVICE_RUNNING reaches desiredCount, else IN_PROGRESS forever); ForceNewDeployment only renames it.
So the tests play ECS's part by editing moto's deployment dicts (``ReleaseWorld.set_rollout`` / ``roll_back``),
its service events (``add_service_event``) and stopped tasks (``stop_service_task``): see release_world.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from release_steps import check_services, restart_services
from release_steps.errors import InvalidInputError, ServiceDeploymentFailedError, ServiceRolloutTimeoutError
from release_steps.models import RolloutResult, RolloutStepInput
from release_steps.timeutil import to_iso

from tests.functional.release_world import CLUSTER, SERVICES, ReleaseWorld, load_event

PAST = to_iso(datetime.now(UTC) - timedelta(minutes=1))


@pytest.fixture
def world(release_world: ReleaseWorld) -> ReleaseWorld:
    release_world.create_cluster()
    for name in SERVICES:
        release_world.create_service(name, desired_count=2)
    return release_world


@pytest.fixture
def restarted(world: ReleaseWorld, release_context: Any) -> dict[str, Any]:
    """The state after Restart services restarted every service: the Check services event."""
    event = load_event("check_services")
    event["request"]["services"] = SERVICES
    event["rollout"] = restart_services.lambda_handler(event, release_context)
    return event


def deployment_of(event: dict[str, Any], name: str) -> str:
    return str(next(s["deploymentId"] for s in event["rollout"]["services"] if s["name"] == name))


def invoke(event: dict[str, Any], context: Any) -> RolloutResult:
    return RolloutResult.load(check_services.lambda_handler(event, context))


def complete(world: ReleaseWorld, event: dict[str, Any], *names: str) -> None:
    for name in names:
        world.set_rollout(name, deployment_of(event, name), "COMPLETED", f"ECS deployment {name} completed.")


def failure_of(event: dict[str, Any], context: Any) -> str:
    with pytest.raises(ServiceDeploymentFailedError) as raised:
        invoke(event, context)
    message = raised.value.message
    assert message.startswith(f"service deployment failed in cluster {CLUSTER}: ")
    assert "\n" not in message, "messages are one line"
    return message


def test_given_the_events_file_when_parsed_then_it_is_a_rollout_step_input() -> None:
    state = RolloutStepInput.load(load_event("check_services"))

    assert state.rollout.services[0].deployment_id is not None


def test_given_every_deployment_completed_when_checked_then_done(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, *SERVICES)

    result = invoke(restarted, release_context)

    assert result.done is True
    assert result.checks == 1
    assert [s.rollout_state for s in result.services] == ["COMPLETED"] * 3
    assert [s.deployment_id for s in result.services] == [deployment_of(restarted, n) for n in SERVICES]


def test_given_one_deployment_in_progress_before_the_deadline_when_checked_then_not_done(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, "alert-ingest", "alert-notifier")

    result = invoke(restarted, release_context)

    assert result.done is False
    assert {s.name: s.rollout_state for s in result.services} == {
        "alert-ingest": "COMPLETED",
        "alert-matcher": "IN_PROGRESS",
        "alert-notifier": "COMPLETED",
    }
    assert result.checks == 1
    assert result.next_wait_seconds == 1, "the first check (right after the restart) asks for a one-second wait"


def test_given_a_deployment_still_in_progress_past_the_deadline_when_checked_then_timeout_names_it(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, "alert-ingest", "alert-notifier")
    restarted["rollout"]["deadline"] = PAST

    with pytest.raises(ServiceRolloutTimeoutError) as raised:
        invoke(restarted, release_context)

    message = raised.value.message
    assert f"alert-matcher (deployment {deployment_of(restarted, 'alert-matcher')}, IN_PROGRESS" in message
    assert "alert-ingest" not in message, "completed services are not named"
    assert PAST in message


def test_given_all_completed_past_the_deadline_when_checked_then_done_not_timed_out(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, *SERVICES)
    restarted["rollout"]["deadline"] = PAST

    assert invoke(restarted, release_context).done is True


def test_given_a_failed_deployment_when_checked_then_deployment_failed_with_events_and_stopped_tasks(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, "alert-ingest", "alert-notifier")
    deployment = deployment_of(restarted, "alert-matcher")
    world.set_rollout("alert-matcher", deployment, "FAILED", "ECS deployment circuit breaker: tasks failed to start.")
    t0 = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    for minute, text in enumerate(["has started 2 tasks", "is unable to consistently start tasks", "rolling back"]):
        world.add_service_event("alert-matcher", f"(service alert-matcher) {text}.", t0 + timedelta(minutes=minute))
    world.add_service_event("alert-matcher", "(service alert-matcher) has reached a steady state.", t0 - timedelta(1))
    world.stop_service_task("alert-matcher", deployment, "Essential container in task exited", exit_code=78)

    message = failure_of(restarted, release_context)

    assert f"alert-matcher: deployment {deployment} FAILED: ECS deployment circuit breaker" in message
    assert "rolling back. | (service alert-matcher) is unable to consistently start tasks." in message, "newest first"
    assert "steady state" not in message, "only the last 3 events"
    assert "Essential container in task exited" in message
    assert "container alert-matcher exit code 78" in message
    assert "alert-ingest" not in message


def test_given_many_stopped_tasks_when_a_deployment_failed_then_only_three_of_that_deployment_are_listed(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, "alert-ingest", "alert-notifier")
    deployment = deployment_of(restarted, "alert-matcher")
    world.set_rollout("alert-matcher", deployment, "FAILED", "tasks failed")
    for i in range(5):
        world.stop_service_task("alert-matcher", deployment, f"OutOfMemoryError: container killed #{i}", exit_code=137)
    world.stop_service_task("alert-matcher", "ecs-svc/1111", "an older deployment's task", exit_code=1)

    message = failure_of(restarted, release_context)

    assert message.count("OutOfMemoryError") == 3, "bounded"
    assert "an older deployment's task" not in message, "only the failed deployment's tasks"


def test_given_a_rolled_back_deployment_when_checked_then_deployment_failed_names_the_new_primary(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, *SERVICES)
    deployment = deployment_of(restarted, "alert-notifier")
    rollback = world.roll_back("alert-notifier", deployment)
    primary = world.deployments("alert-notifier")[0]
    primary.update(
        runningCount=1, desiredCount=2, taskDefinition="arn:aws:ecs:us-east-1:123456789012:task-definition/n:4"
    )

    message = failure_of(restarted, release_context)

    assert f"alert-notifier: deployment {deployment}" in message
    # Whether the previous revision serves again, not only its name: on-call's first question after a rollback.
    serving = "arn:aws:ecs:us-east-1:123456789012:task-definition/n:4, rollout IN_PROGRESS, 1/2 running"
    expected = f"PRIMARY is now {rollback} ({serving})"
    assert expected in message


def test_given_a_deployment_that_is_no_longer_primary_but_completed_when_checked_then_it_is_a_rollback(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, *SERVICES)
    deployment = deployment_of(restarted, "alert-ingest")
    for d in world.deployments("alert-ingest"):
        d["status"] = "ACTIVE"
    world.deployments("alert-ingest").insert(0, {"id": "ecs-svc/42", "status": "PRIMARY", "rolloutState": "COMPLETED"})

    message = failure_of(restarted, release_context)

    assert f"deployment {deployment} is no longer PRIMARY (status ACTIVE)" in message


def test_given_the_recorded_deployment_is_gone_when_checked_then_deployment_failed(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, *SERVICES)
    deployment = deployment_of(restarted, "alert-ingest")
    world.deployments("alert-ingest")[0]["id"] = "ecs-svc/7777"  # someone forced yet another deployment

    message = failure_of(restarted, release_context)

    assert f"alert-ingest: deployment {deployment} is gone; PRIMARY is now ecs-svc/7777" in message


def test_given_a_deleted_service_when_checked_then_deployment_failed_names_it(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    complete(world, restarted, *SERVICES)
    world.ecs.delete_service(cluster=CLUSTER, service="alert-matcher", force=True)

    assert "alert-matcher: the service is INACTIVE" in failure_of(restarted, release_context)


def test_given_a_failure_past_the_deadline_when_checked_then_the_failure_is_reported_not_the_timeout(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    world.set_rollout("alert-ingest", deployment_of(restarted, "alert-ingest"), "FAILED", "tasks failed")
    restarted["rollout"]["deadline"] = PAST

    assert "alert-ingest" in failure_of(restarted, release_context)


def test_given_no_rollout_state_reported_when_at_desired_count_and_alone_then_completed(
    world: ReleaseWorld, restarted: dict[str, Any], release_context: Any
) -> None:
    for name in SERVICES:
        world.set_rollout(name, deployment_of(restarted, name), None)
    [ingest] = world.deployments("alert-ingest")
    ingest["runningCount"] = ingest["desiredCount"]

    result = invoke(restarted, release_context)

    assert {s.name: s.rollout_state for s in result.services}["alert-ingest"] == "COMPLETED"
    assert {s.name: s.rollout_state for s in result.services}["alert-matcher"] == "IN_PROGRESS", "0 of 2 running"
    assert result.done is False


def test_given_a_dry_run_rollout_when_checked_then_it_is_passed_through(
    release_world: ReleaseWorld, release_context: Any
) -> None:
    event = load_event("check_services")
    event["rollout"].update({"dryRun": True, "done": True})

    result = invoke(event, release_context)

    assert result.dry_run is True
    assert result.checks == 0, "nothing was checked"


def test_given_a_rollout_without_deployment_id_when_checked_then_invalid_input(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = load_event("check_services")
    event["rollout"]["services"][0]["deploymentId"] = None

    with pytest.raises(InvalidInputError, match=r"rollout.services.0.deploymentId"):
        invoke(event, release_context)


def test_given_the_events_file_with_moto_deployment_when_checked_then_alert_ingest_is_done(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = load_event("check_services")
    deployment = world.primary_deployment_id("alert-ingest")
    event["rollout"]["services"][0]["deploymentId"] = deployment
    world.set_rollout("alert-ingest", deployment, "COMPLETED")

    result = invoke(event, release_context)

    assert result.done is True
    assert result.services[0].rollout_state == "COMPLETED"
