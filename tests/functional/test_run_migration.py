"""Run migration task: revision reuse or registration, RunTask parameters, idempotency and ECS failures (moto ECS)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.ecs.responses import EC2ContainerServiceResponse
from release_steps import clients, run_migration
from release_steps.errors import (
    ConfigurationError,
    EcsCapacityError,
    MigrationTaskDefinitionError,
    MigrationTaskStartError,
)
from release_steps.models import ImageStepInput, MigrationTask
from release_steps.timeutil import parse_iso

from tests.functional.release_world import (
    CLUSTER,
    CONTAINER,
    FAMILY,
    OLD_IMAGE,
    REGION,
    SIDECAR,
    ReleaseWorld,
    load_event,
)

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import DescribeTaskDefinitionResponseTypeDef

# Fields ECS fills in on registration; everything else of a copied revision must be identical.
READ_ONLY_FIELDS = {"taskDefinitionArn", "revision", "status", "registeredAt", "registeredBy", "requiresAttributes"}


@pytest.fixture
def world(release_world: ReleaseWorld) -> ReleaseWorld:
    release_world.create_cluster()
    return release_world


def make_event(dry_run: bool = False, execution_name: str | None = None) -> dict[str, Any]:
    event = load_event("run_migration")
    event["request"]["dryRun"] = dry_run
    if execution_name is not None:
        event["execution"]["name"] = execution_name
        event["execution"]["id"] = event["execution"]["id"].rsplit(":", 1)[0] + f":{execution_name}"
    return event


def new_image(event: dict[str, Any]) -> str:
    return str(event["image"]["imageUri"])


def invoke(event: dict[str, Any], context: Any) -> MigrationTask:
    return MigrationTask.load(run_migration.lambda_handler(event, context))


def describe(world: ReleaseWorld, arn: str) -> DescribeTaskDefinitionResponseTypeDef:
    return world.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])


def capture_run_task() -> list[dict[str, Any]]:
    """The parameters the step sends to RunTask, as botocore serialises them (moto drops ``clientToken``)."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append(json.loads(json.dumps(params)))

    clients.ecs().meta.events.register("provide-client-params.ecs.RunTask", record)
    return sent


def respond_to_run_task(monkeypatch: pytest.MonkeyPatch, failures: list[dict[str, str]]) -> list[int]:
    """Make moto's RunTask answer with ECS ``failures`` and no task (moto 5.2.5 always answers ``failures: []``)."""
    calls: list[int] = []

    def run_task(self: EC2ContainerServiceResponse) -> ActionResult:
        calls.append(1)
        return ActionResult({"tasks": [], "failures": failures})

    monkeypatch.setattr(EC2ContainerServiceResponse, "run_task", run_task)
    return calls


def test_given_the_events_file_when_parsed_then_it_is_an_image_step_input() -> None:
    state = ImageStepInput.load(load_event("run_migration"))

    assert state.image.image_uri.endswith(f"@{state.image.digest}")


def test_given_a_revision_with_another_image_when_run_then_a_copy_with_the_new_image_is_registered_and_run(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_arn = world.register_migration_task(OLD_IMAGE)
    event = make_event()
    sent = capture_run_task()
    before = datetime.now(UTC)

    result = invoke(event, release_context)

    after = datetime.now(UTC)
    assert sorted(world.revisions()) == [1, 2], "exactly one new revision"
    assert result.task_definition_arn.endswith(f"task-definition/{FAMILY}:2")
    assert result.registered_new_revision is True
    old, new = describe(world, old_arn), describe(world, result.task_definition_arn)
    new_containers = {c["name"]: c for c in new["taskDefinition"]["containerDefinitions"]}
    assert new_containers[CONTAINER]["image"] == new_image(event)
    assert new_containers[SIDECAR]["image"] == world.migration_containers(OLD_IMAGE)[1]["image"], "sidecar untouched"
    old_copy: dict[str, Any] = {k: v for k, v in old["taskDefinition"].items() if k not in READ_ONLY_FIELDS}
    new_copy: dict[str, Any] = {k: v for k, v in new["taskDefinition"].items() if k not in READ_ONLY_FIELDS}
    old_copy["containerDefinitions"][0]["image"] = new_image(event)
    assert new_copy == old_copy, "everything but the migration image is copied"
    assert new["tags"] == old["tags"], "tags are copied"

    [task] = world.tasks()
    assert result.task_arn == task.task_arn
    assert task.task_definition_arn == result.task_definition_arn
    assert task.started_by == "deployflow"
    assert {"key": "deployflow:execution", "value": event["execution"]["id"]} in task.tags
    assert task.network_configuration["awsvpcConfiguration"]["subnets"] == [world.subnet_id]
    assert task.network_configuration["awsvpcConfiguration"]["securityGroups"] == [world.security_group_id]
    assert task.network_configuration["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert task.launch_type == "FARGATE"
    [params] = sent
    attempt = release_context.aws_request_id
    token = hashlib.sha256(f"{event['execution']['id']}|Run migration task|{attempt}".encode()).hexdigest()
    assert params["clientToken"] == token, "the idempotency token is derived from the execution and the attempt"
    assert len(params["clientToken"]) == 64, "ECS accepts at most 64 characters"

    assert result.done is False
    assert result.status == "RUNNING"
    assert result.cluster == CLUSTER
    assert before + timedelta(seconds=1800) - timedelta(milliseconds=1) <= parse_iso(result.deadline, "deadline")
    assert parse_iso(result.deadline, "deadline") <= after + timedelta(seconds=1800)


def test_given_the_latest_revision_already_runs_the_image_when_run_then_it_is_reused(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = make_event()
    arn = world.register_migration_task(new_image(event))

    result = invoke(event, release_context)

    assert sorted(world.revisions()) == [1], "no revision registered"
    assert result.registered_new_revision is False
    assert result.task_definition_arn == arn
    assert [t.task_definition_arn for t in world.tasks()] == [arn]


def test_given_the_newest_revision_is_inactive_when_run_then_the_latest_active_one_is_the_base(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = make_event()
    world.register_migration_task(OLD_IMAGE)
    deregistered = world.register_migration_task(new_image(event))
    world.ecs.deregister_task_definition(taskDefinition=deregistered)

    result = invoke(event, release_context)

    assert result.task_definition_arn.endswith(f"task-definition/{FAMILY}:3"), "revision 2 is INACTIVE: not reused"
    assert result.registered_new_revision is True
    [task] = world.tasks()
    assert task.task_definition_arn == result.task_definition_arn


def test_given_the_same_execution_invoked_twice_when_run_then_one_task_is_started_and_adopted(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)
    event = make_event()

    first = invoke(event, release_context)
    second = invoke(event, release_context)

    assert len(world.tasks()) == 1, "a retried step must never start a second migration"
    assert second.task_arn == first.task_arn
    assert sorted(world.revisions()) == [1, 2], "the retry reuses the revision the first attempt registered"
    assert second.done is False


def test_given_another_execution_when_run_then_it_starts_its_own_task(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)

    first = invoke(make_event(execution_name="release-a"), release_context)
    second = invoke(make_event(execution_name="release-b"), release_context)

    assert first.task_arn != second.task_arn
    assert len(world.tasks()) == 2


def plan_overrides(world: ReleaseWorld, task_arn: str) -> Any:
    (task,) = world.ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"]
    return task.get("overrides", {}).get("containerOverrides")


def test_given_a_dry_run_with_the_image_in_place_when_run_then_the_same_revision_runs_the_read_only_plan(
    world: ReleaseWorld, release_context: Any
) -> None:
    event = make_event(dry_run=True)
    arn = world.register_migration_task(new_image(event))

    result = invoke(event, release_context)

    assert sorted(world.revisions()) == [1], "the digest-pinned revision is reused"
    assert result.task_definition_arn == arn
    assert result.task_arn is not None
    assert result.done is False
    assert plan_overrides(world, result.task_arn) == [{"name": CONTAINER, "command": ["plan"]}]
    assert result.dry_run_note is not None
    assert f"reused {arn}" in result.dry_run_note


def test_given_a_dry_run_of_a_new_image_when_run_then_the_revision_the_release_reuses_runs_the_plan(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)

    dry = invoke(make_event(dry_run=True, execution_name="dry"), release_context)
    real = invoke(make_event(execution_name="real"), release_context)

    assert sorted(world.revisions()) == [1, 2], "the plan must run in the image that holds the files"
    assert dry.registered_new_revision is True
    assert dry.task_definition_arn == real.task_definition_arn, "the release reuses the dry run's revision"
    assert real.registered_new_revision is False
    assert dry.task_arn is not None
    assert real.task_arn is not None
    assert plan_overrides(world, dry.task_arn) == [{"name": CONTAINER, "command": ["plan"]}]
    assert not plan_overrides(world, real.task_arn)


def test_given_no_task_definition_family_when_run_then_task_definition_error_names_the_family(
    world: ReleaseWorld, release_context: Any
) -> None:
    with pytest.raises(MigrationTaskDefinitionError) as raised:
        invoke(make_event(), release_context)

    assert f"'{FAMILY}'" in raised.value.message
    assert "MIGRATION_TASK_FAMILY" in raised.value.message
    assert world.tasks() == []


def test_given_only_inactive_revisions_when_run_then_task_definition_error(
    world: ReleaseWorld, release_context: Any
) -> None:
    arn = world.register_migration_task(OLD_IMAGE)
    world.ecs.deregister_task_definition(taskDefinition=arn)

    with pytest.raises(MigrationTaskDefinitionError, match="no ACTIVE revision"):
        invoke(make_event(), release_context)


def test_given_the_container_is_missing_when_run_then_task_definition_error_names_container_and_family(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)
    release_setting("MIGRATION_CONTAINER_NAME", "migrations")

    with pytest.raises(MigrationTaskDefinitionError) as raised:
        invoke(make_event(), release_context)

    message = raised.value.message
    assert "'migrations'" in message
    assert f"'{FAMILY}'" in message
    assert f"{CONTAINER}, {SIDECAR}" in message, "the containers that do exist are listed"
    assert sorted(world.revisions()) == [1]
    assert world.tasks() == []


def test_given_awsvpc_without_subnets_when_run_then_configuration_error_before_any_change(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)
    release_setting("MIGRATION_SUBNETS", None)

    with pytest.raises(ConfigurationError, match="MIGRATION_SUBNETS"):
        invoke(make_event(), release_context)
    assert sorted(world.revisions()) == [1]


def test_given_the_cluster_does_not_exist_when_run_then_configuration_error_names_ecs_cluster(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)
    release_setting("ECS_CLUSTER", "no-such-cluster")

    with pytest.raises(ConfigurationError) as raised:
        invoke(make_event(), release_context)

    assert "'no-such-cluster' (ECS_CLUSTER)" in raised.value.message
    assert sorted(world.revisions()) == [1], "the cluster is checked before anything is registered"


def test_given_an_ec2_bridge_task_without_subnets_when_run_then_no_network_configuration_is_sent(
    world: ReleaseWorld, release_context: Any, release_setting: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance_id = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    world.ecs.register_container_instance(
        cluster=CLUSTER, instanceIdentityDocument=json.dumps({"instanceId": instance_id, "region": REGION})
    )
    world.register_migration_task(OLD_IMAGE, network_mode="bridge", requiresCompatibilities=["EC2"])
    release_setting("MIGRATION_LAUNCH_TYPE", "EC2")
    release_setting("MIGRATION_SUBNETS", None)
    release_setting("MIGRATION_SECURITY_GROUPS", None)
    sent = capture_run_task()

    result = invoke(make_event(), release_context)

    [params] = sent
    assert "networkConfiguration" not in params
    assert params["launchType"] == "EC2"
    [task] = world.tasks()
    assert task.task_arn == result.task_arn
    assert task.container_instance_arn is not None, "placed on the registered container instance"


@pytest.mark.parametrize(
    ("reason", "detail"),
    [
        ("RESOURCE:MEMORY", None),
        ("AGENT", None),
        ("Capacity is unavailable at this time. Please try again later or in a different availability zone", None),
    ],
)
def test_given_ecs_has_no_capacity_now_when_run_then_ecs_capacity_error_which_the_asl_retries(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch, reason: str, detail: str | None
) -> None:
    world.register_migration_task(OLD_IMAGE)
    failure = {"arn": f"arn:aws:ecs:{REGION}:123456789012:container-instance/{CLUSTER}/abc", "reason": reason}
    calls = respond_to_run_task(monkeypatch, [failure])

    with pytest.raises(EcsCapacityError) as raised:
        invoke(make_event(), release_context)

    assert calls == [1]
    assert reason in raised.value.message
    assert EcsCapacityError.transient


def test_given_ecs_refuses_for_another_reason_when_run_then_task_start_error_names_arn_and_reason(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.register_migration_task(OLD_IMAGE)
    arn = f"arn:aws:ecs:{REGION}:123456789012:container-instance/{CLUSTER}/3f1c"
    respond_to_run_task(monkeypatch, [{"arn": arn, "reason": "ATTRIBUTE", "detail": "ecs.capability.efs"}])

    with pytest.raises(MigrationTaskStartError) as raised:
        invoke(make_event(), release_context)

    assert f"{arn}: ATTRIBUTE (ecs.capability.efs)" in raised.value.message
    assert not MigrationTaskStartError.transient


def test_given_the_events_file_when_run_against_moto_then_the_migration_task_starts(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.register_migration_task(OLD_IMAGE)

    result = invoke(load_event("run_migration"), release_context)

    assert [t.task_arn for t in world.tasks()] == [result.task_arn]


# --- clientToken per attempt: retries after a placement failure and after a success ------------------------------


def ecs_idempotency(monkeypatch: pytest.MonkeyPatch, capacity_failures: int) -> list[str]:
    """moto's RunTask behind ECS's documented idempotency: a repeated ``clientToken`` gets the first answer again.

    ("Ensuring idempotency", Amazon ECS API Reference; moto ignores the token.) The first ``capacity_failures``
    distinct requests are answered with a placement failure and no task, as ECS does when nothing fits now.
    Returns the tokens in the order the calls arrived.
    """
    original = EC2ContainerServiceResponse.run_task
    answers: dict[str, ActionResult] = {}
    tokens: list[str] = []

    def run_task(self: EC2ContainerServiceResponse) -> ActionResult:
        token = str(self._get_param("clientToken"))
        tokens.append(token)
        if token not in answers:
            if len(answers) < capacity_failures:
                failure = {
                    "arn": f"arn:aws:ecs:{REGION}:123456789012:container-instance/{CLUSTER}/x",
                    "reason": "RESOURCE:CPU",
                }
                answers[token] = ActionResult({"tasks": [], "failures": [failure]})
            else:
                answers[token] = original(self)
        return answers[token]

    monkeypatch.setattr(EC2ContainerServiceResponse, "run_task", run_task)
    return tokens


def attempt(context: Any) -> Any:
    """The context of another invocation: Step Functions' retry or a redrive is a new Lambda request."""
    return replace(context, aws_request_id=str(uuid.uuid4()))


def test_given_a_placement_failure_when_the_step_is_retried_then_a_new_token_places_the_task(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.register_migration_task(OLD_IMAGE)
    tokens = ecs_idempotency(monkeypatch, capacity_failures=2)
    event = make_event()

    with pytest.raises(EcsCapacityError):
        invoke(event, release_context)
    with pytest.raises(EcsCapacityError):
        invoke(event, attempt(release_context))  # the ASL's retry of EcsCapacityError
    result = invoke(event, attempt(release_context))  # capacity is back

    assert len(set(tokens)) == 3, "each attempt sends its own token: ECS would replay a repeated token's failure"
    [task] = world.tasks()
    assert result.task_arn == task.task_arn


def test_given_a_placement_failure_when_the_execution_is_redriven_then_the_task_is_placed(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.register_migration_task(OLD_IMAGE)
    tokens = ecs_idempotency(monkeypatch, capacity_failures=1)
    event = make_event()
    with pytest.raises(EcsCapacityError):
        invoke(event, release_context)  # the retries ran out: the execution failed at this step

    result = invoke(event, attempt(release_context))  # the redrive: same execution, new invocation

    assert tokens[0] != tokens[1]
    assert [t.task_arn for t in world.tasks()] == [result.task_arn]


def test_given_a_started_task_when_the_step_is_retried_then_it_is_adopted_and_run_task_is_not_called_again(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.register_migration_task(OLD_IMAGE)
    tokens = ecs_idempotency(monkeypatch, capacity_failures=0)
    event = make_event()

    first = invoke(event, release_context)  # RunTask succeeded, but say the answer never reached Step Functions
    retried = invoke(event, attempt(release_context))
    redriven = invoke(event, attempt(release_context))

    assert len(tokens) == 1, "the retries found the task by its execution tag before any RunTask"
    assert len(world.tasks()) == 1, "no second migration"
    assert retried.task_arn == redriven.task_arn == first.task_arn


def test_given_one_invocation_when_the_sdk_retries_run_task_then_it_sends_the_same_token(
    world: ReleaseWorld, release_context: Any
) -> None:
    execution = make_event()["execution"]["id"]

    same = run_migration.client_token(execution, release_context.aws_request_id)

    assert same == run_migration.client_token(execution, release_context.aws_request_id)
    assert same != run_migration.client_token(execution, attempt(release_context).aws_request_id)
    assert len(same) == 64
