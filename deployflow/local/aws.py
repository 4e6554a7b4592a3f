"""AWS for the local stack: moto with its Step Functions interpreter and the local seams, in-process or as a server.

Two modes, same backends, same seams - Lambda functions run in a Lambda runtime or in-process (lambda_seam), ECS
tasks really run and services roll out (ecs_seam), Wait/Retry delays are scaled (timescale), interpreter fixes
(sfn_seam), RedriveExecution (sfn_redrive):

``in-process`` (``mock_aws``)
  boto3 calls made in this process are intercepted by moto. For handler tests and fast workflow tests. Any
  ``AWS_ENDPOINT_URL[_<SERVICE>]`` in the environment is unset while it runs (the interpreter's and the handlers'
  clients honour it and would bypass moto).

``server`` (``ThreadedMotoServer`` on a free loopback port) - what the local stack uses
  The deployflow CLI and the AWS CLI reach it from other processes with ``--endpoint-url`` (``client_environment()``
  gives the variables). Each Lambda function runs in its own Lambda runtime process (lambda_runtime.py: the Runtime
  Interface Emulator with awslambdaric), whose boto3 clients reach the same server through ``AWS_ENDPOINT_URL`` plus
  fake credentials. The interpreter calls Lambda at ``localhost:$MOTO_PORT`` (moto's ``boto_client_for``); this
  mode points that at its own port.

moto's state and the seams' patches are process-global: one ``LocalAws`` per process at a time (a second one's
start raises SeamError). Start and stop reset every backend.

What the interpreter records (moto 5.2.5; checked by tests/canary/test_sfn_history.py):
- ``describe_execution``: ``status`` RUNNING / SUCCEEDED / FAILED / ABORTED; ``output`` (a JSON string) once
  SUCCEEDED; ``error`` and ``cause`` once FAILED (for a Fail state its Error/Cause or ErrorPath/CausePath; for an
  uncaught Lambda error the exception class name and the runtime's JSON error payload as the cause). StopExecution's
  error and cause are dropped.
- ``get_execution_history`` events, oldest first, ``id`` 1..n, each with ``previousEventId``, ``timestamp``,
  ``type``: ``ExecutionStarted`` (input), ``<Type>StateEntered`` (``stateEnteredEventDetails.name`` / ``input``),
  ``<Type>StateExited`` (``stateExitedEventDetails.name`` / ``output``); for a plain function-ARN Task
  ``LambdaFunctionScheduled`` (resource, input) / ``Started`` / ``Succeeded`` (output) / ``Failed``
  (``lambdaFunctionFailedEventDetails.error`` / ``cause``); for ``arn:aws:states:::<service>:<action>`` tasks
  ``TaskScheduled`` (resourceType, resource, region, parameters) / ``TaskStarted`` / ``TaskSucceeded`` /
  ``TaskFailed`` (``taskFailedEventDetails.error`` / ``cause`` / ``resource`` / ``resourceType``); Wait, Choice and
  Pass states their Entered/Exited pair; a Fail state only ``FailStateEntered``; then ``ExecutionSucceeded``
  (output) / ``ExecutionFailed`` (error, cause) / ``ExecutionAborted``. A retry is another Scheduled/Started/Failed
  group inside the same Entered..Exited; a caught error is the Failed event, the state's Exited, the Catch target's
  Entered. ``previousEventId`` is not always the previous event. A stop that lands before the first state is entered
  ends the execution ABORTED with no ExecutionAborted event.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from unittest import mock

from moto.core.config import DefaultConfig

from deployflow.local._patching import AttributePatch, PatchSet
from deployflow.local.cloudformation import CloudFormationFixes
from deployflow.local.dynamodb_seam import AtomicItemWrites
from deployflow.local.ecs_seam import EcsSeam
from deployflow.local.lambda_seam import LambdaSeam
from deployflow.local.sfn_redrive import RedriveSeam
from deployflow.local.sfn_seam import InterpreterFixes, stop_running_executions
from deployflow.local.timescale import TimeScale

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
FAKE_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}

Mode = Literal["in-process", "server"]
# The services the local stack and its tests call (the boto3-stubs extras of deployflow[dev] type these names).
LocalService = Literal[
    "cloudformation",
    "dynamodb",
    "ec2",
    "ecr",
    "ecs",
    "events",
    "iam",
    "lambda",
    "logs",
    "s3",
    "secretsmanager",
    "sns",
    "sqs",
    "ssm",
    "stepfunctions",
]


@dataclass(frozen=True)
class LocalAwsConfig:
    """How the local AWS behaves; every field has a default that fits a test.

    ``images``: ECR repository name to the local command standing in for the image (ECS seam).
    ``task_environment``: added to every ECS task's container environment (e.g. the local database's URL).
    ``lambda_environment``: added to every Lambda invocation's environment (``None`` unsets a variable).
    ``code_paths``: put on ``sys.path`` so Lambda handlers import. ``before_invoke``: run before every invocation.
    ``time_scale``: factor on Wait-state seconds and Retry intervals. ``rollout_seconds``: how long a service
    deployment stays IN_PROGRESS. ``task_cwd``: working directory of ECS task processes. ``quiet``: silence the
    server's per-request lines and the interpreter's ERROR log of every state error (the history has them).
    ``lambda_runtime``: ``emulator`` (the server mode's default) runs each function in its own Lambda runtime process
    (lambda_runtime.py); ``in-process`` imports the handler here (the in-process mode's only option: a runtime
    process cannot reach ``mock_aws``). ``lambda_log_dir``: where the runtime processes' logs go.
    """

    region: str = REGION
    time_scale: float = 1.0
    images: Mapping[str, Sequence[str]] = field(default_factory=dict)
    task_environment: Mapping[str, str] = field(default_factory=dict)
    lambda_environment: Mapping[str, str | None] = field(default_factory=dict)
    code_paths: Sequence[Path | str] = ()
    before_invoke: Sequence[Callable[[], None]] = ()
    rollout_seconds: float = 0.5
    task_cwd: Path | str | None = None
    quiet: bool = True
    lambda_runtime: Literal["emulator", "in-process"] | None = None
    lambda_log_dir: Path | None = None


class LocalAws:
    """moto with the seams installed; ``with LocalAws(config, mode="server") as aws: aws.client("ecs")``."""

    def __init__(
        self, config: LocalAwsConfig | None = None, *, mode: Mode = "in-process", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or LocalAwsConfig()
        self.mode: Mode = mode
        self._host = host
        self._port = port
        runtime = self.config.lambda_runtime or ("emulator" if mode == "server" else "in-process")
        if mode == "in-process" and runtime == "emulator":
            raise ValueError("the emulator runtime needs the server mode: its processes cannot reach mock_aws")
        self.lambdas = LambdaSeam(
            environment=self.config.lambda_environment,
            code_paths=self.config.code_paths,
            before_invoke=self.config.before_invoke,
            runtime=runtime,
            log_dir=self.config.lambda_log_dir,
        )
        self.ecs = EcsSeam(
            images=self.config.images,
            environment=self.config.task_environment,
            cwd=self.config.task_cwd,
            rollout_seconds=self.config.rollout_seconds,
        )
        self.time = TimeScale(self.config.time_scale)
        self.interpreter = InterpreterFixes()
        self.redrive = RedriveSeam()
        self.cloudformation = CloudFormationFixes()
        self.dynamodb = AtomicItemWrites()
        self.endpoint_url: str | None = None
        self._started = False
        self._mock: Any = None
        self._server: Any = None
        self._config_patch: Any = None
        self._unset_environ: dict[str, str] = {}
        self._server_patches: PatchSet | None = None
        self._saved_log_levels: dict[str, int] = {}

    @property
    def region(self) -> str:
        return self.config.region

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> LocalAws:
        if self._started:
            raise RuntimeError("LocalAws already started")
        installed: list[Any] = []
        if self.config.quiet:
            self._quiet_loggers()
        try:
            seams = (
                self.lambdas,
                self.ecs,
                self.time,
                self.interpreter,
                self.redrive,
                self.cloudformation,
                self.dynamodb,
            )
            for seam in seams:
                seam.install()
                installed.append(seam)
            if self.mode == "in-process":
                self._start_in_process()
            else:
                self._start_server()
        except BaseException:
            self._stop_backend()
            for seam in reversed(installed):
                seam.uninstall()
            self._restore_loggers()
            raise
        self._started = True
        return self

    def _start_in_process(self) -> None:
        from moto import mock_aws

        # A configured endpoint would send the interpreter's and the handlers' clients past moto's interception
        # (boto3 honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>): unset them while moto runs.
        for key in [k for k in os.environ if k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_")]:
            self._unset_environ[key] = os.environ.pop(key)
        self._mock = mock_aws(config=MOTO_CONFIG)
        self._mock.start()

    def _start_server(self) -> None:
        from moto.core.base_backend import BackendDict
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer
        from moto.stepfunctions.parser.asl.utils import boto_client

        BackendDict.reset()  # moto's state is process-global: a server starts empty, like mock_aws does
        self._config_patch = mock.patch.dict(default_user_config, dict(MOTO_CONFIG))
        self._config_patch.start()
        self._server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # The interpreter calls Lambda at http://localhost:$MOTO_PORT when moto is not intercepting in-process.
        self._server_patches = PatchSet(
            "moto-server", [AttributePatch(boto_client, "moto_server_port", lambda: str(port))]
        )
        self._server_patches.apply()
        for key, value in self.client_environment().items():
            self.lambdas.environment.setdefault(key, value)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            stop_running_executions()
            self.ecs.shutdown()
        finally:
            self._stop_backend()
            for seam in (
                self.dynamodb,
                self.cloudformation,
                self.redrive,
                self.interpreter,
                self.time,
                self.ecs,
                self.lambdas,
            ):
                seam.uninstall()
            self._restore_loggers()

    # Loggers that print to stderr without any logging configuration: werkzeug adds its own handler for the
    # server's request lines; the interpreter logs a state's error (with a repr of the whole state) at ERROR.
    _NOISY_LOGGERS: tuple[tuple[str, int], ...] = (
        ("werkzeug", logging.WARNING),
        ("moto.stepfunctions.parser", logging.CRITICAL),
    )

    def _quiet_loggers(self) -> None:
        for name, level in self._NOISY_LOGGERS:
            log = logging.getLogger(name)
            self._saved_log_levels[name] = log.level
            log.setLevel(level)

    def _restore_loggers(self) -> None:
        for name, level in self._saved_log_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_log_levels.clear()

    def _stop_backend(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        for key, value in self._unset_environ.items():
            os.environ.setdefault(key, value)
        self._unset_environ.clear()
        if self._server is not None:
            from moto.core.base_backend import BackendDict

            self._server.stop()
            self._server = None
            BackendDict.reset()
        if self._server_patches is not None:
            self._server_patches.revert()
            self._server_patches = None
        if self._config_patch is not None:
            self._config_patch.stop()
            self._config_patch = None

    def reset(self) -> None:
        """Forget every AWS resource and seam record (executions are stopped, task processes killed)."""
        from moto.core.base_backend import BackendDict

        stop_running_executions()
        self.ecs.reset()
        self.lambdas.clear()
        self.time.clear()
        BackendDict.reset()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------------------------------------------

    def client_environment(self) -> dict[str, str]:
        """Variables another process (the CLI, the AWS CLI) needs to talk to this backend (server mode only)."""
        if self.endpoint_url is None:
            raise RuntimeError("only the server mode can be reached from another process")
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **FAKE_CREDENTIALS,
        }

    def client(self, service: LocalService) -> Any:
        """A boto3 client for this backend (through the server's endpoint in server mode)."""
        import boto3
        from botocore.config import Config

        if self.endpoint_url is None:
            # A configured endpoint (AWS_ENDPOINT_URL in the caller's environment) would bypass moto's interception.
            # botocore has this option since 1.31; botocore-stubs 1.43 does not declare it yet.
            config = Config(ignore_configured_endpoint_urls=True)  # type: ignore[call-arg]
            return boto3.client(service, region_name=self.region, config=config)
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        )


def create_function(
    aws: LocalAws,
    name: str,
    handler: str,
    *,
    environment: Mapping[str, str] | None = None,
    timeout: int = 60,
    memory: int = 256,
    runtime: str = "python3.13",
) -> str:
    """Create a Lambda function in moto whose invocations run ``handler`` in-process; its ARN.

    The code package is a placeholder (moto wants one); the seam imports ``handler`` from ``sys.path``.
    """
    import io
    import zipfile

    iam = aws.client("iam")
    role_name = "deployflow-local-lambda"
    try:
        role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("README.txt", "placeholder: the local stack runs the handler in-process\n")
    response = aws.client("lambda").create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=role_arn,
        Handler=handler,
        Code={"ZipFile": package.getvalue()},
        Timeout=timeout,
        MemorySize=memory,
        Environment={"Variables": dict(environment or {})},
    )
    return str(response["FunctionArn"])


@dataclass(frozen=True)
class Network:
    """A VPC's subnets and security groups in moto, for awsvpc (Fargate) tasks' network configuration."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]

    def awsvpc_configuration(self) -> dict[str, Any]:
        return {
            "awsvpcConfiguration": {
                "subnets": list(self.subnet_ids),
                "securityGroups": list(self.security_group_ids),
                "assignPublicIp": "DISABLED",
            }
        }


def provision_network(aws: LocalAws, name: str = "deployflow-local") -> Network:
    """Create a VPC with one subnet and one security group for awsvpc (Fargate) tasks.

    moto 5.2.5 needs all of it: the subnet and group must exist, ``securityGroups`` must be given (ECS would default
    to the VPC's), and the VPC must have DNS hostnames enabled (else RunTask fails with an AttributeError).
    """
    ec2 = aws.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    # moto's awsvpc RunTask reads the ENI's private DNS name, which it only sets in a VPC with DNS hostnames.
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group_id = ec2.create_security_group(GroupName=name, Description="deployflow local stack", VpcId=vpc_id)["GroupId"]
    return Network(vpc_id=vpc_id, subnet_ids=(subnet_id,), security_group_ids=(group_id,))


def push_image(
    aws: LocalAws, repository: str, tag: str, *, severity_counts: Mapping[str, int] | None = None
) -> tuple[str, str]:
    """Put an image into moto's ECR (creating the repository); its ``(digest, image URI pinned by digest)``.

    moto derives an image's digest from its manifest's layer digests only (no layers: every image gets the digest
    of the empty string), so the image gets a layer named after ``repository:tag``: distinct tags, distinct digests.
    ``severity_counts`` (e.g. ``{}`` for a clean scan, ``{"CRITICAL": 1}``) scans the image with that result; without
    it the image has no scan. Left to itself, moto's scan always reports one HIGH finding (CVE-9999-9999).
    """
    import hashlib

    from moto.ecr.models import ecr_backends

    ecr = aws.client("ecr")
    try:
        registry = ecr.create_repository(repositoryName=repository)["repository"]["repositoryUri"].split("/", 1)[0]
    except ecr.exceptions.RepositoryAlreadyExistsException:
        registry = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
        registry = registry.split("/", 1)[0]
    layer = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2, "digest": layer}],
    }
    image = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)["image"]
    digest = str(image["imageId"]["imageDigest"])
    if severity_counts is not None:
        findings = [
            {"name": f"LOCAL-{severity}-{n}", "severity": severity, "uri": "https://example.invalid/local-finding"}
            for severity, count in severity_counts.items()
            for n in range(count)
        ]
        result = {
            "registryId": ACCOUNT_ID,
            "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            "imageScanFindings": {"findingSeverityCounts": dict(severity_counts), "findings": findings},
        }
        ecr_backends[ACCOUNT_ID][aws.region].scan_finding_results.append(result)
        ecr.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    return digest, f"{registry}/{repository}@{digest}"
