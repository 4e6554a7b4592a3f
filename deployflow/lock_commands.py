"""``deployflow status`` and ``deployflow abandon``: the one-release lock seen and given up from the command line.

The lock's table is the stack's ``ReleaseLockTableName`` output (``--stack-name`` / ``DEPLOYFLOW_STACK_NAME``); the
record (release_steps.lock, shared with the functions) names the holder. ``abandon`` gives the lock back only if
the named execution holds it (a conditional delete), stops that execution if it still runs, and records who, why
and when in the table, in the same transaction as the release.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from typing import Any

from release_steps import lock

from deployflow.target import Target, TargetError, clients, one_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3
EXECUTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[A-Za-z0-9_-]{1,80}:[A-Za-z0-9_-]{1,80}$"
)
REASON_MAX_CHARS = 500
# What StopExecution records as the execution's error (at most 256 characters).
ABANDONED_ERROR = "DeployflowAbandoned"

EXIT_CODES = """exit status:
  0    done: the lock was shown (status), or given up (abandon)
  1    abandon changed nothing: that execution does not hold the lock (the status of the lock is printed)
  2    bad usage: no stack given, not an execution ARN, no --reason
  3    the target could not be found or reached (profile, region, credentials, endpoint, stack)"""


class UsageError(Exception):
    """Bad usage: exit 2, nothing was read or changed."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _target(args: argparse.Namespace) -> Target:
    return Target(region=args.region, profile=args.profile, endpoint_url=args.endpoint_url)


def _lock_table(args: argparse.Namespace, cloudformation: Any) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    if not args.stack_name:
        raise UsageError("give --stack-name (or set DEPLOYFLOW_STACK_NAME): its ReleaseLockTableName output")
    try:
        stacks = cloudformation.describe_stacks(StackName=args.stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as e:
        raise TargetError(f"cannot read stack {args.stack_name} ({one_line(e)})") from e
    for output in stacks[0].get("Outputs", []):
        if output.get("OutputKey") == "ReleaseLockTableName":
            return str(output["OutputValue"])
    raise TargetError(
        f"stack {args.stack_name} has no ReleaseLockTableName output (a deployflow stack from before the lock? "
        "sam deploy the current template)"
    )


def _execution(sfn: Any, arn: str) -> dict[str, Any] | None:
    """DescribeExecution of ``arn``; None when Step Functions no longer knows it."""
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def _status_text(described: dict[str, Any] | None) -> str:
    if described is None:
        return "not found (deleted, or older than Step Functions keeps executions)"
    status = str(described.get("status"))
    if status == "FAILED":
        redrive = described.get("redriveStatus")
        error = described.get("error")
        return f"FAILED{f' ({error})' if error else ''}{f', redrive {redrive}' if redrive else ''}"
    return status


def _holder_json(holder: lock.LockHolder, described: dict[str, Any] | None) -> dict[str, Any]:
    document = holder.to_json()
    document["executionStatus"] = described.get("status") if described else None
    document["executionError"] = described.get("error") if described else None
    document["redriveStatus"] = described.get("redriveStatus") if described else None
    return document


def _ways_out(holder: lock.LockHolder, described: dict[str, Any] | None, flags: str) -> list[str]:
    status = (described or {}).get("status")
    arn = holder.execution_arn
    lines = []
    if status == "RUNNING":
        lines.append(f"wait       it is running: deployflow watch {arn}{flags}")
    elif status == "FAILED":
        region = f" --region {holder.region}" if holder.region and "--region" not in flags else ""
        lines.append(f"redrive    aws stepfunctions redrive-execution --execution-arn {arn}{region}{flags}")
    lines.append(f'abandon    deployflow abandon {arn} --reason "<why>"{flags}')
    return lines


def status(args: argparse.Namespace) -> int:
    """Who holds the lock: its execution, that execution's status, image tag, start time; or that nobody does."""
    try:
        target = _target(args)
        sfn, cloudformation, dynamodb, _ = clients(target)
        table = _lock_table(args, cloudformation)
        holder = _read(dynamodb, table)
        described = _describe(sfn, holder.execution_arn) if holder is not None else None
    except UsageError as e:
        print(f"deployflow status: {e}", file=sys.stderr)
        return EXIT_USAGE
    except TargetError as e:
        print(f"deployflow status: {e}", file=sys.stderr)
        return EXIT_TARGET
    if args.output == "json":
        document = {
            "lockTable": table,
            "held": holder is not None,
            "holder": _holder_json(holder, described) if holder else None,
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    print("\n".join(_status_lines(table, holder, described, _flags(args))))
    return EXIT_OK


def _status_lines(
    table: str, holder: lock.LockHolder | None, described: dict[str, Any] | None, flags: str
) -> list[str]:
    if holder is None:
        return [f"release lock ({table}): free, no release holds it"]
    taken = holder.acquired_at + (
        f" (taken {holder.acquisitions} times: a retry or a redrive of the first step took it again)"
        if holder.acquisitions > 1
        else ""
    )
    return [
        f"release lock ({table}): held by {holder.execution_name}",
        f"execution  {holder.execution_arn}",
        f"status     {_status_text(described)}",
        f"image tag  {holder.image_tag}{' (dry run)' if holder.dry_run else ''}",
        f"started    {holder.execution_start_time}",
        f"lock taken {taken}",
        *_ways_out(holder, described, flags),
    ]


def _flags(args: argparse.Namespace) -> str:
    stack = f" --stack-name {args.stack_name}" if args.stack_name else ""
    return stack + _target(args).flags()


def _read(dynamodb: Any, table: str) -> lock.LockHolder | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return lock.read(dynamodb, table)
    except (ClientError, BotoCoreError) as e:
        raise TargetError(f"cannot read the release lock in {table} ({one_line(e)})") from e


def _describe(sfn: Any, arn: str) -> dict[str, Any] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _execution(sfn, arn)
    except (ClientError, BotoCoreError) as e:
        raise TargetError(f"cannot read execution {arn} ({one_line(e)})") from e


def abandon(args: argparse.Namespace) -> int:
    """Give up a release: its lock released (only if it holds it), its execution stopped if running, why recorded."""
    from botocore.exceptions import BotoCoreError, ClientError

    arn = str(args.execution)
    reason = " ".join(str(args.reason or "").split())
    try:
        if not EXECUTION_ARN.match(arn):
            raise UsageError(f"{arn[:200]!r} is not an execution ARN (arn:aws:states:<region>:<account>:execution:...)")
        if not reason:
            raise UsageError('--reason must say why (e.g. --reason "image 2026-11-23.4 withdrawn, by alice")')
        if len(reason) > REASON_MAX_CHARS:
            raise UsageError(f"--reason is {len(reason)} characters; at most {REASON_MAX_CHARS}")
        target = _target(args)
        sfn, cloudformation, dynamodb, sts = clients(target, arn=arn)
        table = _lock_table(args, cloudformation)
        holder = _read(dynamodb, table)
        if holder is None or holder.execution_arn != arn:
            print(f"deployflow abandon: {arn} does not hold the release lock: nothing changed", file=sys.stderr)
            print(
                "\n".join(
                    _status_lines(table, holder, _describe(sfn, holder.execution_arn) if holder else None, _flags(args))
                )
            )
            return EXIT_FAILED
        described = _describe(sfn, arn)
        who = _caller(sts)
        lines = [f"abandoned {holder.execution_name} ({arn}), image tag {holder.image_tag}"]
        before = str((described or {}).get("status", "not found"))
        if before == "RUNNING":
            sfn.stop_execution(executionArn=arn, error=ABANDONED_ERROR, cause=f"abandoned by {who}: {reason}"[:32768])
            lines.append("execution  was RUNNING: stopped (ABORTED; docs/runbook.md says what a stop leaves behind)")
        else:
            lines.append(f"execution  {before}: left as it is (do not redrive it now: its lock is given up)")
        history = {"at": _now(), "event": "abandoned", "by": who, "reason": reason, "executionStatus": before}
        if lock.release(dynamodb, table, arn, history):
            lines.append(f"lock       released (held since {holder.acquired_at})")
        else:  # the stop's ReleaseLockOnEndRule was faster: the lock is free, the record still says who and why
            lock.record_history(dynamodb, table, arn, history)
            lines.append("lock       already given back (ReleaseLockOnEndRule, after the stop)")
    except UsageError as e:
        print(f"deployflow abandon: {e}; nothing changed", file=sys.stderr)
        return EXIT_USAGE
    except TargetError as e:
        print(f"deployflow abandon: {e}", file=sys.stderr)
        return EXIT_TARGET
    except (ClientError, BotoCoreError) as e:
        print(f"deployflow abandon: {one_line(e)}", file=sys.stderr)
        return EXIT_TARGET
    lines.append(f"recorded   in {table}: by {who} at {history['at']}, reason: {reason}")
    lines.append(f"next       start the release again: deployflow start --image-tag <tag>{_flags(args)}")
    if args.output == "json":
        print(json.dumps({"abandoned": _holder_json(holder, described), "lockTable": table, **history}, indent=2))
    else:
        print("\n".join(lines))
    return EXIT_OK


def _caller(sts: Any) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(sts.get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError) as e:
        raise TargetError(f"cannot tell who you are (sts:GetCallerIdentity: {one_line(e)})") from e


def add_commands(commands: Any, where_options: Any) -> None:
    """Add ``status`` and ``abandon`` to the CLI; ``where_options`` adds --stack-name, --region, --profile,
    --endpoint-url and --output, as every command takes them."""
    status_parser = commands.add_parser(
        "status",
        help="who holds the one-release lock: execution, its status, image tag, start time",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where_options(status_parser, output="stdout: text (a few lines) or json (one document: lockTable, held, holder)")
    status_parser.set_defaults(handler=status)

    abandon_parser = commands.add_parser(
        "abandon",
        help="give up a release: release its lock, stop it if it runs, record who and why",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    abandon_parser.add_argument("execution", help="the ARN of the execution that holds the lock")
    abandon_parser.add_argument("--reason", required=True, help="why it is given up (recorded beside the lock)")
    where_options(abandon_parser, output="stdout: text (what was done) or json (one document)")
    abandon_parser.set_defaults(handler=abandon)
