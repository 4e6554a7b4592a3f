"""Lambda handlers the canary tests deploy into moto: tiny, each exercising one thing the seams must carry."""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3

_calls_lock = threading.Lock()
_calls: dict[str, int] = {}


class ImageMissingError(Exception):
    """A terminal error the canary ASL catches by class name."""


class DatabaseNotReadyError(Exception):
    """A transient error the canary ASL retries by class name."""


def echo(event: Any, context: Any) -> dict[str, Any]:
    """Return the event with what the runtime gave the handler."""
    return {
        "event": event,
        "functionName": context.function_name,
        "requestId": context.aws_request_id,
        "remainingMs": context.get_remaining_time_in_millis(),
        "setting": os.environ.get("CANARY_SETTING"),
        "region": os.environ.get("AWS_REGION"),
    }


def fail(event: Any, context: Any) -> None:
    """Raise the error named by the event."""
    errors = {"ImageMissingError": ImageMissingError, "DatabaseNotReadyError": DatabaseNotReadyError}
    raise errors[event.get("error", "ImageMissingError")](event.get("message", "canary failure"))


def flaky(event: Any, context: Any) -> dict[str, Any]:
    """Fail with DatabaseNotReadyError the first ``failures`` calls for ``key``, then succeed."""
    key = str(event["key"])
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1
        attempt = _calls[key]
    if attempt <= int(event["failures"]):
        raise DatabaseNotReadyError(f"attempt {attempt}: database not ready")
    return {"attempts": attempt}


def countdown(event: Any, context: Any) -> dict[str, Any]:
    """One poll of a Wait + Choice loop: decrement ``remaining``; done at zero."""
    remaining = int(event["remaining"]) - 1
    return {"remaining": remaining, "done": remaining <= 0}


def not_json(event: Any, context: Any) -> object:
    """Return something the runtime cannot marshal."""
    return object()


def aws_probe(event: Any, context: Any) -> dict[str, Any]:
    """Report what this handler's own boto3 clients see (same backend as the caller?)."""
    ecs = boto3.client("ecs")
    ecr = boto3.client("ecr")
    clusters = ecs.list_clusters()["clusterArns"]
    images = ecr.describe_images(repositoryName=event["repository"])["imageDetails"]
    tasks = ecs.list_tasks(cluster=event["cluster"])["taskArns"]
    return {
        "clusters": clusters,
        "imageDigests": [i["imageDigest"] for i in images],
        "tasks": tasks,
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
    }


def start_task(event: Any, context: Any) -> dict[str, Any]:
    """RunTask the event's task definition, idempotently (the client token is the event's token)."""
    ecs = boto3.client("ecs")
    response = ecs.run_task(
        cluster=event["cluster"],
        taskDefinition=event["taskDefinition"],
        launchType="FARGATE",
        networkConfiguration=event["network"],
        clientToken=event["token"],
    )
    return {**event, "taskArn": response["tasks"][0]["taskArn"]}


def check_task(event: Any, context: Any) -> dict[str, Any]:
    """One poll: the task's status and, once stopped, its exit code, stop reason and log tail."""
    ecs = boto3.client("ecs")
    task = ecs.describe_tasks(cluster=event["cluster"], tasks=[event["taskArn"]])["tasks"][0]
    result = {**event, "lastStatus": task["lastStatus"], "stopped": task["lastStatus"] == "STOPPED"}
    if result["stopped"]:
        task_id = event["taskArn"].rsplit("/", 1)[-1]
        logs = boto3.client("logs").get_log_events(
            logGroupName=event["logGroup"],
            logStreamName=f"{event['logPrefix']}/{event['container']}/{task_id}",
            limit=3,
        )
        result |= {
            "exitCode": task["containers"][0].get("exitCode"),
            "stopCode": task.get("stopCode"),
            "logTail": [e["message"] for e in logs["events"]],
        }
    return result


def sleeper(event: Any, context: Any) -> dict[str, Any]:
    """Sleep ``seconds`` (past the function's Timeout, for the timeout canary)."""
    import time

    time.sleep(float(event["seconds"]))
    return {"slept": event["seconds"]}


def exiter(event: Any, context: Any) -> None:
    """End the runtime process itself, as a segfaulting library or an ``os._exit`` would."""
    os._exit(int(event.get("status", 3)))


def allocator(event: Any, context: Any) -> dict[str, Any]:
    """Touch ``megabytes`` of memory (past the function's MemorySize, for the memory canary)."""
    block = bytearray(int(event["megabytes"]) * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    return {"allocated": len(block)}


def whoami(event: Any, context: Any) -> dict[str, Any]:
    """The runtime process and interpreter a handler runs in."""
    import sys

    return {"pid": os.getpid(), "python": sys.version.split()[0], "memory": context.memory_limit_in_mb}


def gate(event: Any, context: Any) -> dict[str, Any]:
    """Fail with DatabaseNotReadyError while the file ``event['gate']`` is missing (an outage an operator fixes by
    creating it), else return the event with a mark: what a redrive resumes."""
    if not os.path.exists(str(event["gate"])):
        raise DatabaseNotReadyError(f"gate {event['gate']} closed")
    return {**event, "passed": True}
