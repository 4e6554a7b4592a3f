"""``deployflow local up`` and ``deployflow local invoke``: keep the local stack up to rehearse a release, and run
one function the way ``sam local invoke`` does - without Docker, through the local stack's Lambda runtime.

``local up`` writes where it listens to ``.cache/local-up.json``; ``local invoke`` uses that stack while its
process is alive, else starts a fresh one for the one invocation.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from deployflow import interrupts
from deployflow.local.template import REPO_ROOT, TEMPLATE_PATH

if TYPE_CHECKING:
    from deployflow.local.status_events import Delivery

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATE_FILE = REPO_ROOT / ".cache" / "local-up.json"
SAMCONFIG = REPO_ROOT / "samconfig.toml"
LOCAL_TAG = "local"


class LocalCommandError(Exception):
    """Bad input to a local command: one line naming it, exit status 2, nothing started or changed."""


# --- parameters, as sam reads them ------------------------------------------------------------------------------


def parse_overrides(text: str) -> dict[str, str]:
    """``Key=Value Key2=Value2`` (sam's --parameter-overrides; also ParameterKey=K,ParameterValue=V)."""
    overrides: dict[str, str] = {}
    for token in text.split():
        if token.startswith("ParameterKey="):
            key_part, _, value_part = token.partition(",ParameterValue=")
            key, value = key_part.removeprefix("ParameterKey="), value_part
        else:
            key, sep, value = token.partition("=")
            if not sep:
                raise LocalCommandError(f"--parameter-overrides: {token!r} is not Key=Value")
        overrides[key] = value.strip('"')
    return overrides


def config_env_overrides(env: str, path: Path = SAMCONFIG) -> dict[str, str]:
    """The deploy parameter_overrides of a samconfig.toml environment, as ``sam deploy --config-env`` reads them."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise LocalCommandError(f"--config-env {env}: cannot read {path}: {e}") from e
    if env not in document:
        raise LocalCommandError(f"--config-env {env}: no [{env}] in {path.name} (has: {', '.join(document)})")
    raw = document[env].get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    return parse_overrides(" ".join(raw) if isinstance(raw, list) else str(raw))


def template_functions(path: Path = TEMPLATE_PATH) -> list[str]:
    """The logical ids of the template's functions."""
    from cfnlint.decode import cfn_yaml

    document = cfn_yaml.load(str(path))
    return [k for k, v in document["Resources"].items() if v.get("Type") == "AWS::Serverless::Function"]


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    if getattr(args, "config_env", None):
        overrides.update(config_env_overrides(args.config_env))
    if getattr(args, "parameter_overrides", None):
        overrides.update(parse_overrides(" ".join(args.parameter_overrides)))
    return overrides


# --- local up ---------------------------------------------------------------------------------------------------


def local_up(args: argparse.Namespace) -> int:
    """Start the stack, print how to reach it, keep it up until Ctrl-C (or SIGTERM)."""
    from deployflow.local.lambda_runtime import RuntimeSetupError
    from deployflow.local.stack import DEFAULT_TAG, LocalStack, StackOptions
    from deployflow.local.template import TemplateError

    out = sys.stdout
    tags = tuple(dict.fromkeys((DEFAULT_TAG, LOCAL_TAG, *(args.image_tag or ()))))
    sql = Path.cwd() / "sql" if (Path.cwd() / "sql").is_dir() else REPO_ROOT / "sql"
    try:
        overrides = _overrides(args)
        log_dir = Path(
            args.log_dir or REPO_ROOT / ".cache" / "local-up" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        )
        options = StackOptions(
            time_scale=args.time_scale,
            image_tags=tags,
            migrations_dir=sql.resolve(),
            parameter_overrides=overrides,
            log_dir=log_dir.resolve(),
        )
        started = time.monotonic()
        stack = LocalStack(options)
        stack.start()
    except (LocalCommandError, RuntimeSetupError, TemplateError) as e:
        print(f"deployflow local up: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        env = stack.client_environment()
        out.write(f"deployflow local stack up in {time.monotonic() - started:.1f}s (Ctrl-C stops it and everything)\n")
        out.write(f"  endpoint:       {env['AWS_ENDPOINT_URL']}\n")
        out.write(f"  stack:          {STACK_LABEL} (CloudFormation, outputs as deployed)\n")
        out.write(f"  state machine:  {stack.state_machine_arn}\n")
        out.write(f"  SNS topic:      {stack.topic_arn}\n")
        out.write(f"  images (ECR):   alerting-migration:{', '.join(tags)} ({LOCAL_TAG} = this working tree's {sql})\n")
        assert stack.database is not None
        assert stack.kafka is not None
        out.write(f"  PostgreSQL:     {stack.database.host}:{stack.database.port}/{stack.database.dbname}\n")
        out.write(f"  Kafka:          {stack.kafka.bootstrap_plaintext}\n")
        if overrides:
            used = {k: v for k, v in overrides.items() if k not in stack.ignored_overrides}
            out.write(f"  parameters:     {' '.join(f'{k}={v}' for k, v in used.items()) or '(template defaults)'}\n")
            if stack.ignored_overrides:
                out.write(f"  local wiring kept for: {', '.join(stack.ignored_overrides)}\n")
        out.write(f"  {stack.runtime_banner()}\n")
        out.write(f"  function logs:  {stack.log_dir}/lambda-*.log\n\n")
        out.write("In another shell:\n")
        for key in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            out.write(f"export {key}={env[key]}\n")
        out.write(f"deployflow start --stack-name {STACK_LABEL} --image-tag {LOCAL_TAG} --follow\n")
        out.write(
            f"aws stepfunctions start-execution --state-machine-arn {stack.state_machine_arn} "
            f'--input \'{{"imageTag": "{LOCAL_TAG}"}}\'\n'
        )
        out.write("\nEach execution that ends is delivered to the rules here, as EventBridge would:\n")
        out.flush()
        stack.watch_status_changes(_report_end(out))
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(
            json.dumps({"pid": os.getpid(), "environment": env, "functions": stack.function_arns}), encoding="utf-8"
        )
        while True:
            interrupts.sleep(3600)
    finally:
        with suppress(OSError):
            if json.loads(STATE_FILE.read_text(encoding="utf-8")).get("pid") == os.getpid():
                STATE_FILE.unlink()
        stack.stop()


STACK_LABEL = "deployflow-local"


def _report_end(out: TextIO) -> Callable[[str, str, list[Delivery]], None]:
    """``local up``'s line for an execution that ended, and what each rule's target published."""

    def report(name: str, status: str, deliveries: list[Delivery]) -> None:
        targets = ", ".join(f"{d.rule} -> {d.function}" for d in deliveries) or "no rule matched"
        lines = [f"[{time.strftime('%H:%M:%S')}] execution {name} {status}: status-change event to {targets}"]
        lines += [delivery.render() for delivery in deliveries]
        out.write("\n".join(lines) + "\n")
        out.flush()

    return report


# --- local invoke -----------------------------------------------------------------------------------------------


def _read_event(source: str | None, stdin: TextIO) -> bytes:
    if source is None:
        return b"{}"
    try:
        text = stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as e:
        raise LocalCommandError(f"cannot read the event file {source}: {e.strerror or e}") from e
    name = "stdin" if source == "-" else source
    try:
        json.loads(text)
    except ValueError as e:
        raise LocalCommandError(f"the event in {name} is not JSON: {e}") from e
    return text.encode("utf-8")


def _read_env_vars(path: str | None, function_id: str) -> dict[str, str]:
    """sam's --env-vars file: ``{"FunctionLogicalId": {"VAR": "value"}, "Parameters": {...}}`` (all functions)."""
    if path is None:
        return {}
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise LocalCommandError(f"cannot read the --env-vars file {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise LocalCommandError(f"the --env-vars file {path} is not JSON: {e}") from e
    if not isinstance(document, dict):
        raise LocalCommandError(f"the --env-vars file {path} must be an object of objects")
    values: dict[str, str] = {}
    for section in ("Parameters", function_id):
        entries = document.get(section, {})
        if not isinstance(entries, dict):
            raise LocalCommandError(f"--env-vars {path}: {section} must be an object of variables")
        values.update({str(k): str(v) for k, v in entries.items()})
    return values


def _running_stack() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(STATE_FILE.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return state


def local_invoke(args: argparse.Namespace) -> int:
    """Invoke one function of the template (on a running ``local up`` stack, or a fresh one)."""
    from deployflow.local.lambda_runtime import RuntimeSetupError

    try:
        functions = template_functions()
        if args.function not in functions:
            raise LocalCommandError(f"no function {args.function} in template.yaml (functions: {', '.join(functions)})")
        event = _read_event(args.event, sys.stdin)
        env_vars = _read_env_vars(args.env_vars, args.function)
        overrides = _overrides(args)
        running = _running_stack()
        if running is not None and overrides:
            raise LocalCommandError(
                "a `deployflow local up` stack is running with its own parameters: stop it, or drop "
                "--parameter-overrides/--config-env"
            )
        if running is not None:
            import boto3

            environment = running["environment"]
            client = boto3.client(
                "lambda",
                endpoint_url=environment["AWS_ENDPOINT_URL"],
                region_name=environment["AWS_DEFAULT_REGION"],
                aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
            )
            return _invoke(client, str(running["functions"][args.function]), event, env_vars)
        return _invoke_on_fresh_stack(args.function, event, env_vars, overrides)
    except (LocalCommandError, RuntimeSetupError) as e:
        print(f"deployflow local invoke: {e}", file=sys.stderr)
        return EXIT_USAGE


def _invoke_on_fresh_stack(
    function_id: str, event: bytes, env_vars: Mapping[str, str], overrides: dict[str, str]
) -> int:
    from deployflow.local.stack import LocalStack, StackOptions
    from deployflow.local.template import TemplateError

    try:
        stack = LocalStack(StackOptions(parameter_overrides=overrides))
        stack.start()
    except TemplateError as e:
        raise LocalCommandError(str(e)) from e
    try:
        print(f"(no `deployflow local up` running: a fresh local stack; {stack.runtime_banner()})", file=sys.stderr)
        return _invoke(stack.client("lambda"), stack.function_arns[function_id], event, env_vars)
    finally:
        stack.stop()


def _invoke(client: Any, function_arn: str, event: bytes, env_vars: Mapping[str, str]) -> int:
    saved: dict[str, str] | None = None
    if env_vars:
        current = client.get_function_configuration(FunctionName=function_arn)
        saved = dict(current.get("Environment", {}).get("Variables", {}))
        client.update_function_configuration(
            FunctionName=function_arn, Environment={"Variables": {**saved, **env_vars}}
        )
    try:
        response = client.invoke(FunctionName=function_arn, Payload=event, LogType="Tail")
    finally:
        if saved is not None:
            client.update_function_configuration(FunctionName=function_arn, Environment={"Variables": saved})
    logs = base64.b64decode(response.get("LogResult", "")).decode("utf-8", "replace")
    if logs:
        sys.stderr.write(logs if logs.endswith("\n") else logs + "\n")
    payload = response["Payload"].read().decode("utf-8", "replace")
    sys.stdout.write(payload + "\n")
    return EXIT_FAILED if response.get("FunctionError") else EXIT_OK


# --- wiring -----------------------------------------------------------------------------------------------------


def _parameter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        metavar="KEY=VALUE",
        help="template parameters, as sam's --parameter-overrides (the local wiring stays the stack's)",
    )
    parser.add_argument("--config-env", help="take parameter_overrides from this samconfig.toml environment")


def add_local_commands(local_commands: Any) -> None:
    """Add ``up`` and ``invoke`` to the ``deployflow local`` subcommands."""
    up = local_commands.add_parser("up", help="start the local stack and keep it up until Ctrl-C")
    up.add_argument("--image-tag", action="append", help="also hold the working tree's image under this tag")
    up.add_argument("--log-dir", help="where the functions' logs go (default .cache/local-up/<time>)")
    up.add_argument("--time-scale", type=float, default=0.02, help="factor on Wait/Retry delays (default 0.02)")
    _parameter_options(up)
    up.set_defaults(handler=local_up)

    invoke = local_commands.add_parser("invoke", help="run one function, as `sam local invoke` (no Docker)")
    invoke.add_argument("function", metavar="FUNCTION_LOGICAL_ID", help="e.g. CheckImageFunction")
    invoke.add_argument("-e", "--event", help="the event file (JSON); - reads stdin")
    invoke.add_argument("--env-vars", help='JSON: {"<FunctionLogicalId>": {"VAR": "value"}, "Parameters": {...}}')
    _parameter_options(invoke)
    invoke.set_defaults(handler=local_invoke)
