# PYTHON_ARGCOMPLETE_OK  (argcomplete: this entry point completes itself)
"""``deployflow``: run the release workflow locally, or start and watch releases of a deployed stack.

    deployflow local run [--scenario NAME] [--json] [--render-path FILE]
    deployflow start --image-tag T [--services a,b] [--dry-run] [--idempotency-key K] [--follow] [target options]
    deployflow watch EXECUTION [target options]
    deployflow status [--stack-name S] [--output text|json]       who holds the one-release lock
    deployflow abandon EXECUTION_ARN --reason TEXT [--stack-name S] give a release up: lock released, stopped
    deployflow completion bash|zsh

Target options (as the AWS CLI takes them): --stack-name (finds the state machine in the stack's outputs) or
--state-machine-arn, --region, --profile, --endpoint-url (e.g. the local stack's moto server).
Exit status: EXIT_CODES below (every command's --help shows it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import ValidationError

from deployflow import interrupts
from deployflow.progress import ExecutionOutcome, follow
from deployflow.render import ProgressPrinter, aws_cli_options, outcome_report, timings_table
from deployflow.target import Target, TargetError, arn_region, one_line

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

    from deployflow.target import Clients

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class IdempotencyConflictError(Exception):
    """An idempotency key reused for a different release input: attaching would report another release's outcome."""


# --- local run ----------------------------------------------------------------------------------------------------


def _local_run(args: argparse.Namespace) -> int:
    from deployflow.local.scenarios import SCENARIOS
    from deployflow.local.stack import LocalStack, StackOptions

    scenario = SCENARIOS[args.scenario]
    out = sys.stderr if args.json else sys.stdout
    out.write(f"deployflow local run: scenario {scenario.name} ({scenario.summary})\n")
    out.write(
        f"expected: {scenario.expected_status}{' ' + scenario.expected_error if scenario.expected_error else ''}\n"
    )
    started = time.monotonic()
    log_dir = Path(args.log_dir or Path(".cache") / "local-runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    options = StackOptions(time_scale=args.time_scale, log_dir=log_dir.resolve())
    with LocalStack(options) as stack:
        assert stack.postgres is not None
        assert stack.kafka is not None
        assert stack.aws is not None
        out.write(
            f"local stack up in {time.monotonic() - started:.1f}s: PostgreSQL 127.0.0.1:{stack.postgres.port}, "
            f"Kafka {stack.kafka.bootstrap_plaintext} (SASL {stack.kafka.bootstrap_sasl}), "
            f"AWS (moto) {stack.aws.endpoint_url}\n"
        )
        out.write(f"{stack.runtime_banner()}\n")
        out.write(f"function logs: {stack.log_dir}/lambda-*.log\n\n")
        result = scenario.run(stack, ProgressPrinter(out))
        for outcome in result.outcomes:
            out.write(
                "\n" + outcome_report(outcome, aws_cli_options(stack.aws.region, None, stack.aws.endpoint_url)) + "\n"
            )
        for delivery in stack.deliveries:
            # What EventBridge's rule would have had published (the local stack hands the event over itself).
            out.write(f"\n{delivery.render()}\n")
        out.write("\nindependent checks (psql, Kafka metadata, ECS):\n")
        for line in _independent_checks(stack):
            out.write(f"  {line}\n")
        for check in result.checks:
            mark = "✓" if check.ok else "✗"
            out.write(f"  {mark} {check.description}{': ' + check.detail if check.detail else ''}\n")
        if args.render_path:
            _render_path(result.outcome, Path(args.render_path))
            out.write(f"\npath drawn on the workflow: {args.render_path}\n")
    verdict = "as expected" if result.as_expected else "NOT as expected"
    got = f"{result.outcome.status}{' ' + result.outcome.error if result.outcome.error else ''}"
    out.write(f"\nscenario {scenario.name}: {verdict} (got {got}); total {time.monotonic() - started:.1f}s\n")
    if args.json:
        document = {
            "scenario": scenario.name,
            "expected": {"status": scenario.expected_status, "error": scenario.expected_error},
            "asExpected": result.as_expected,
            "executions": [_outcome_json(o) for o in result.outcomes],
            "commands": result.commands,
            "checks": [{"description": c.description, "ok": c.ok, "detail": c.detail} for c in result.checks],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return EXIT_OK if result.as_expected else EXIT_FAILED


def _independent_checks(stack: Any) -> list[str]:
    from deployflow.local.inspect import kafka_topics, psql_tables

    lines = [f"tables (psql \\dt): {', '.join(psql_tables(stack.database)) or '(none)'}"]
    if stack.kafka is not None and stack.kafka.running:
        topics = kafka_topics(stack.kafka.bootstrap_plaintext)
        described = ", ".join(f"{name} ({count} partitions)" for name, count in sorted(topics.items()))
        lines.append(f"topics (Kafka metadata): {described or '(none)'}")
    else:
        lines.append("topics (Kafka metadata): broker down")
    return lines


def _render_path(outcome: ExecutionOutcome, target: Path) -> None:
    from deployflow.diagram import load_definition, write_path
    from deployflow.local.template import ASL_PATH

    write_path(load_definition(ASL_PATH), target, outcome.path, outcome.failed_state)


def _outcome_json(outcome: ExecutionOutcome) -> dict[str, Any]:
    return {
        "executionArn": outcome.execution_arn,
        "status": outcome.status,
        "error": outcome.error,
        "cause": outcome.cause,
        "failedStep": outcome.failed_state,
        "path": outcome.path,
        "transitions": outcome.transitions,
        "lambdaInvocations": outcome.lambda_invocations,
        "states": [{"name": n, "visits": v, "seconds": round(s, 3)} for n, v, s in timings_table(outcome)],
        "redriveCount": outcome.redrive_count,
        "runs": [
            {
                "redrive": r.redrive,
                "status": r.status,
                "stoppedIn": r.stopped_in,
                "error": r.error,
                "seconds": r.seconds,
            }
            for r in outcome.runs
        ],
        "record": outcome.output,
    }


# --- start / watch against a deployed stack ----------------------------------------------------------------------


def _target(args: argparse.Namespace) -> Target:
    return Target(region=args.region, profile=args.profile, endpoint_url=args.endpoint_url)


def _session_clients(args: argparse.Namespace, arn: str | None = None) -> Clients:
    """Step Functions and CloudFormation clients for the target (deployflow/target.py: as the AWS CLI resolves it)."""
    from deployflow.target import clients

    return clients(_target(args), arn=arn or args.state_machine_arn)


class UsageError(Exception):
    """The command line names no target: exit 2, as argparse does for a missing option."""


def _require_target(args: argparse.Namespace, *, arn: str | None = None) -> None:
    if not (arn or args.state_machine_arn or args.stack_name):
        raise UsageError("give --stack-name (or set DEPLOYFLOW_STACK_NAME), --state-machine-arn, or an execution ARN")


def _state_machine_arn(args: argparse.Namespace, cloudformation: CloudFormationClient) -> str:
    if args.state_machine_arn:
        return str(args.state_machine_arn)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=args.stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as e:
        raise TargetError(f"cannot read stack {args.stack_name} ({one_line(e)})") from e
    for output in stacks[0].get("Outputs", []):
        if output.get("OutputKey") == "StateMachineArn":
            return str(output["OutputValue"])
    raise TargetError(f"stack {args.stack_name} has no StateMachineArn output (is it a deployflow stack?)")


def execution_name(image_tag: str, idempotency_key: str | None, now: datetime | None = None) -> str:
    """A valid execution name (at most 80 of ``[A-Za-z0-9_-]``); deterministic for an idempotency key.

    With a key, a retried start finds the first execution by its name. Without one the name is unique: two starts
    in the same second must not collide (with identical input, StartExecution would return the first execution).
    """
    if idempotency_key:
        base = re.sub(r"[^A-Za-z0-9_-]", "-", idempotency_key)
        name = f"release-{base}"
        if len(name) > 80 or base != idempotency_key:
            # Sanitising can map two keys to one name, truncating too: the digest of the raw key keeps them apart.
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
            name = f"release-{base[:50]}-{digest}"
        return name
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    tag = re.sub(r"[^A-Za-z0-9_-]", "-", image_tag)[:40]
    return f"release-{tag}-{stamp}-{secrets.token_hex(3)}"


def build_input(args: argparse.Namespace) -> dict[str, Any]:
    """The execution input, validated by the same model the first step uses; raises ValueError naming fields."""
    from release_steps.messages import describe_every_field
    from release_steps.models import ReleaseInput

    document: dict[str, Any] = {"imageTag": args.image_tag, "dryRun": bool(args.dry_run)}
    # An explicit but empty value (e.g. an unset pipeline variable) is an error, not "use the default":
    # --services "" would otherwise restart every service, --idempotency-key "" would drop the idempotency.
    if args.services is not None:
        document["services"] = [s.strip() for s in args.services.split(",") if s.strip()]
    if args.idempotency_key is not None:
        if not args.idempotency_key.strip():
            raise ValueError("invalid release input: idempotencyKey: must not be empty")
        document["idempotencyKey"] = args.idempotency_key
    try:
        validated = ReleaseInput.load(document).to_json()
        return {key: value for key, value in validated.items() if value is not None}
    except ValidationError as e:
        raise ValueError(describe_every_field(ReleaseInput, document, e, "release input")) from e


def _start(args: argparse.Namespace) -> int:
    try:
        document = build_input(args)
        _require_target(args)
    except (ValueError, UsageError) as e:
        print(f"deployflow start: {e}; nothing was started", file=sys.stderr)
        return EXIT_USAGE
    try:
        sfn, cloudformation, *_ = _session_clients(args)
        machine = _state_machine_arn(args, cloudformation)
        name = execution_name(args.image_tag, args.idempotency_key)
        arn = _start_or_attach(sfn, machine, name, document, attach=args.idempotency_key is not None)
    except IdempotencyConflictError as e:
        print(f"deployflow start: {e}; nothing was started", file=sys.stderr)
        return EXIT_USAGE
    except TargetError as e:
        print(f"deployflow start: {e}", file=sys.stderr)
        return EXIT_TARGET
    if not args.follow:
        print(json.dumps({"executionArn": arn}) if args.output == "json" else arn)
        return EXIT_OK
    return _follow_and_report(sfn, arn, args)


def _start_or_attach(sfn: SFNClient, machine: str, name: str, document: dict[str, Any], *, attach: bool) -> str:
    """Start the execution; with ``attach`` (an idempotency key) and that name already used, attach to that one.

    The existing execution is looked up first: StartExecution with a reused name returns the running execution
    (same name and input) or raises ExecutionAlreadyExists (finished, or another input) - on AWS and in moto -
    and the first answer would not tell a new start from a retried one. The StartExecution answer is still
    handled, for a start racing this lookup.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    arn = machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"
    try:
        if attach and (existing := _existing_execution(sfn, arn)) is not None:
            return _attach(name, arn, existing, document)
        try:
            response = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(document))
        except sfn.exceptions.ExecutionAlreadyExists:
            existing = _existing_execution(sfn, arn)
            if existing is None:
                raise
            return _attach(name, arn, existing, document)
    except (ClientError, BotoCoreError) as e:
        raise TargetError(f"cannot start an execution of {machine} ({one_line(e)})") from e
    started = str(response["executionArn"])
    print(f"started {started}", file=sys.stderr)
    return started


def _existing_execution(sfn: SFNClient, arn: str) -> DescribeExecutionOutputTypeDef | None:
    try:
        return sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def _attach(name: str, arn: str, existing: DescribeExecutionOutputTypeDef, document: dict[str, Any]) -> str:
    try:
        previous = json.loads(existing.get("input") or "null")
    except ValueError:
        previous = None
    if previous != document:
        raise IdempotencyConflictError(
            f"idempotency key {document.get('idempotencyKey')!r} was already used for another release input "
            f"(execution {arn}, {existing.get('status')}, input {existing.get('input')}): use a new key, "
            "or repeat the first release's options"
        )
    print(
        f"an execution named {name} already exists ({existing.get('status')}): not starting a second release; "
        f"attached to {arn}",
        file=sys.stderr,
    )
    return arn


def _watch(args: argparse.Namespace) -> int:
    arn = str(args.execution)
    try:
        _require_target(args, arn=arn if arn.startswith("arn:") else None)
    except UsageError as e:
        print(f"deployflow watch: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sfn, cloudformation, *_ = _session_clients(args, arn if arn.startswith("arn:") else None)
        if not arn.startswith("arn:"):
            machine = _state_machine_arn(args, cloudformation)
            arn = machine.replace(":stateMachine:", ":execution:", 1) + f":{arn}"
    except TargetError as e:
        print(f"deployflow watch: {e}", file=sys.stderr)
        return EXIT_TARGET
    return _follow_and_report(sfn, arn, args)


def _follow_and_report(sfn: SFNClient, arn: str, args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    watch_again = f"deployflow watch {arn}{_target(args).flags()}"
    printer = ProgressPrinter(sys.stderr)
    try:  # from the line on: a Ctrl-C right after it (even while it is written) is the watch's own
        print(f"following {arn} (Ctrl-C stops the following, not the release)", file=sys.stderr)
        outcome = follow(sfn, arn, printer, poll_seconds=args.poll, timeout_seconds=args.timeout)
    except (ClientError, BotoCoreError) as e:
        print(f"deployflow: cannot read execution {arn} ({one_line(e)})", file=sys.stderr)
        return EXIT_TARGET
    except TimeoutError as e:
        print(f"deployflow: {e}; it goes on running: {watch_again}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Only the watching stops: the execution is Step Functions', not this process's.
        printer.close()
        print(f"\ninterrupted: stopped following; the execution goes on running: {watch_again}", file=sys.stderr)
        return 130
    finally:
        printer.close()
    # The redrive command names the region of the execution (its ARN says it) unless one was given.
    options = aws_cli_options(args.region or arn_region(arn), args.profile, args.endpoint_url)
    print(outcome_report(outcome, options), file=sys.stderr)
    if args.output == "json":
        print(json.dumps(_outcome_json(outcome), indent=2))
    elif outcome.output is not None:
        print(json.dumps(outcome.output, indent=2))
    return EXIT_OK if outcome.status == "SUCCEEDED" else EXIT_FAILED


# --- argument parsing ---------------------------------------------------------------------------------------------


EXIT_CODES = """exit status:
  0    the execution succeeded (local run: the scenario behaved as named)
  1    the execution failed, timed out or was aborted (or following it timed out)
  2    bad usage or input, or an idempotency key reused for another input: nothing was started
  3    the target could not be found or reached (profile, region, credentials, endpoint, stack)
  130  interrupted: the watching stopped, an execution already started goes on running"""


def _where_options(
    parser: argparse.ArgumentParser,
    *,
    output: str,
    stack_output: str = "its StateMachineArn output names the state machine",
) -> None:
    """--stack-name, --region, --profile, --endpoint-url and --output, as every command against a stack takes them."""
    stack = os.environ.get("DEPLOYFLOW_STACK_NAME") or None
    parser.add_argument(
        "--stack-name",
        default=stack,
        help=f"the deployed deployflow stack; {stack_output} "
        f"(default: $DEPLOYFLOW_STACK_NAME{', now ' + stack if stack else ', unset'})",
    )
    parser.add_argument(
        "--region", help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, the ARN's region, the profile's)"
    )
    parser.add_argument("--profile", help="AWS profile from ~/.aws/config (default: $AWS_PROFILE, else 'default')")
    parser.add_argument(
        "--endpoint-url",
        help="another endpoint for the AWS APIs, e.g. the local stack's moto (default: $AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text", help=f"{output} (default: text)")


def _lock_options(parser: argparse.ArgumentParser, *, output: str) -> None:
    _where_options(parser, output=output, stack_output="its ReleaseLockTableName output names the lock's table")


def _target_options(parser: argparse.ArgumentParser) -> None:
    _where_options(
        parser,
        output="stdout: text (the execution ARN, or the deployment record) or json (one document: "
        "status, error, cause, failed step, path, record); progress always goes to stderr",
    )
    parser.add_argument("--state-machine-arn", help="the state machine's ARN, instead of --stack-name")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between progress reads (default: 2)")
    parser.add_argument(
        "--timeout", type=float, default=4 * 3600, help="stop following after this many seconds (default: 14400)"
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deployflow")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown (not installed)"


def _local_missing(reason: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        print(
            f"deployflow local: the local stack is not installed here ({reason}): in a checkout, "
            "`make .venv/.installed` (or pip install -e '.[local]' with functions/ on the path)",
            file=sys.stderr,
        )
        return EXIT_USAGE

    return handler


def parser(*, with_local: bool = True) -> argparse.ArgumentParser:
    """The command line; ``with_local=False`` leaves the local stack's subcommands out (its imports take seconds)."""
    root = argparse.ArgumentParser(
        prog="deployflow",
        description=__doc__.split("\n\n")[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"deployflow {_version()}")
    commands = root.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the embedded local stack (needs deployflow[local], in a checkout)")
    have_local = with_local
    try:
        if not with_local:
            raise ModuleNotFoundError(name="(not loaded)")
        from deployflow.local.scenarios import SCENARIOS
    except ModuleNotFoundError as e:  # an operator's install, or a command that is not `local`
        have_local = False
        local.set_defaults(handler=_local_missing(f"no module {e.name}"))
        local.add_argument("anything", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        SCENARIOS = {}
        local = argparse.ArgumentParser()  # the local subcommands below go to a parser that is never used
    local_commands = local.add_subparsers(dest="local_command", required=True)
    run = local_commands.add_parser(
        "run",
        help="run the whole workflow locally, end to end",
        epilog="scenarios:\n"
        + "\n".join(f"  {name:<20} {SCENARIOS[name].summary}" for name in sorted(SCENARIOS))
        + "\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--scenario", choices=sorted(SCENARIOS), default="happy", metavar="NAME", help="the scenario (default: happy)"
    )
    run.add_argument("--json", action="store_true", help="machine output on stdout (progress goes to stderr)")
    run.add_argument("--render-path", metavar="FILE", help="draw the execution's path on the workflow (SVG)")
    run.add_argument("--log-dir", help="where the functions' logs go (default .cache/local-runs/<time>)")
    run.add_argument("--time-scale", type=float, default=0.02, help="factor on Wait/Retry delays (default 0.02)")
    run.set_defaults(handler=_local_run)
    if have_local:
        from deployflow.local.commands import add_local_commands

        add_local_commands(local_commands)

    start = commands.add_parser(
        "start", help="start a release", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    start.add_argument("--image-tag", required=True, help="the migration image tag in ECR")
    start.add_argument("--services", help="comma-separated services to restart (default: all of the stack's)")
    start.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    start.add_argument("--idempotency-key", help="e.g. the pipeline execution id: a retry attaches, never restarts")
    start.add_argument("--follow", action="store_true", help="follow the execution to its end")
    _target_options(start)
    start.set_defaults(handler=_start)

    watch = commands.add_parser(
        "watch",
        help="follow an execution to its end",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument("execution", help="execution ARN, or its name with --stack-name / --state-machine-arn")
    _target_options(watch)
    watch.set_defaults(handler=_watch)

    from deployflow.lock_commands import add_commands

    add_commands(commands, _lock_options)

    completion = commands.add_parser(
        "completion",
        help="print the shell completion script",
        description="Completion for bash or zsh, by argcomplete. Add to ~/.bashrc or ~/.zshrc: "
        'eval "$(deployflow completion bash)" (or zsh).',
    )
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    completion.set_defaults(handler=_completion)
    return root


def _completion(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["deployflow"], shell=args.shell))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deployflow`` console script."""
    import argcomplete

    words = sys.argv[1:] if argv is None else list(argv)
    completing = "_ARGCOMPLETE" in os.environ
    command_line = parser(with_local=completing or (bool(words) and words[0] == "local"))
    argcomplete.autocomplete(command_line)  # answers a shell's completion request and exits; else does nothing
    args = command_line.parse_args(argv)
    interrupts.install()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\ninterrupted: everything started here was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
