"""The local stack registers the migration task definition exactly as docs/deploy.md tells a user to."""

from __future__ import annotations

from deployflow.local import stack as local_stack
from deployflow.local.aws import ACCOUNT_ID
from deployflow.local.stack import LocalStack
from deployflow.local.task_definitions import migration_task_definition


def test_given_the_local_stack_then_its_migration_task_definition_is_the_documented_fargate_example(
    stack: LocalStack,
) -> None:
    ecs = stack.client("ecs")
    db = stack.database
    assert db is not None
    region = ecs.meta.region_name
    documented = migration_task_definition(
        "fargate",
        {
            "MIGRATION_TASK_FAMILY": local_stack.TASK_FAMILY,
            "MIGRATION_CONTAINER_NAME": local_stack.CONTAINER,
            "ACCOUNT_ID": ACCOUNT_ID,
            "REGION": region,
            "TASK_ROLE_NAME": "alerting-local-migration-task",
            "EXECUTION_ROLE_NAME": "alerting-local-migration-execution",
            "MIGRATION_REPOSITORY": local_stack.REPOSITORY,
            "IMAGE_TAG": "bootstrap",
            "DB_HOST": db.host,
            "DB_PORT": str(db.port),
            "DB_NAME": db.dbname,
            "DB_SSLMODE": "disable",
            "DB_SECRET_ARN": stack.db_secret_arn,
            "MIGRATION_LOG_GROUP": local_stack.LOG_GROUP,
        },
    )

    registered = ecs.describe_task_definition(taskDefinition=f"{local_stack.TASK_FAMILY}:1")["taskDefinition"]

    # ECS fills in defaults the example leaves out (cpu 0, empty portMappings, ...): every documented field must match.
    containers = documented.pop("containerDefinitions")
    for key, value in documented.items():
        assert registered.get(key) == value, f"{key}: the local stack registered {registered.get(key)!r}"
    assert len(registered["containerDefinitions"]) == len(containers)
    for mine, theirs in zip(registered["containerDefinitions"], containers, strict=True):
        for key, value in theirs.items():
            assert mine.get(key) == value, f"container {key}: the local stack registered {mine.get(key)!r}"
