#!/usr/bin/env bash
# The procedure deployflow replaces, as the seed ran it: the migration as a one-off ECS task, `aws ecs wait` for
# it, its exit code from DescribeTasks, then a forced new deployment per service and `aws ecs wait services-stable`.
# It is the benchmark's anchor (benchmarks/workflow.py runs it against the same local stack); it is not a tool.
#
# Needs the AWS CLI (v1, as measured in issue 11; AWS_CLI names it, default: aws on PATH) and, in the environment: CLUSTER, TASK_DEFINITION, CONTAINER,
# SUBNETS and SECURITY_GROUPS (comma-separated), SERVICES (space-separated), plus whatever reaches the AWS API
# (AWS_ENDPOINT_URL for the local stack). Prints one "anchor: <event> <epoch seconds>" line per milestone on stdout
# so the caller can time it; exits 1 when the migration failed, 0 otherwise (like the original, whatever the
# services' rollout did: services-stable is also satisfied by a circuit-breaker rollback).
set -euo pipefail

AWS_CLI=${AWS_CLI:-aws}
aws() { "$AWS_CLI" "$@"; }
mark() { printf 'anchor: %s %s\n' "$1" "$(date +%s.%N)"; }

: "${CLUSTER:?}" "${TASK_DEFINITION:?}" "${CONTAINER:?}" "${SUBNETS:?}" "${SECURITY_GROUPS:?}" "${SERVICES:?}"

mark start
task_arn=$(aws ecs run-task \
    --cluster "$CLUSTER" \
    --task-definition "$TASK_DEFINITION" \
    --launch-type FARGATE \
    --network-configuration "awsvpcConfiguration={subnets=[$SUBNETS],securityGroups=[$SECURITY_GROUPS],assignPublicIp=DISABLED}" \
    --query 'tasks[0].taskArn' --output text)
mark task-started
echo "anchor-task: $task_arn"

aws ecs wait tasks-stopped --cluster "$CLUSTER" --tasks "$task_arn"
mark task-stopped-noticed

exit_code=$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$task_arn" \
    --query "tasks[0].containers[?name=='$CONTAINER'].exitCode | [0]" --output text)
if [[ "$exit_code" != "0" ]]; then
    echo "migration failed: exit code $exit_code" >&2
    mark failed
    exit 1
fi

# shellcheck disable=SC2086  # SERVICES is a list
for service in $SERVICES; do
    aws ecs update-service --cluster "$CLUSTER" --service "$service" --force-new-deployment \
        --query 'service.serviceName' --output text > /dev/null
done
mark services-restarted

# shellcheck disable=SC2086
aws ecs wait services-stable --cluster "$CLUSTER" --services $SERVICES
mark services-stable-noticed
echo "release succeeded"
