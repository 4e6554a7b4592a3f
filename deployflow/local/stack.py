"""The local stack: everything the SAM stack would give the workflow, on this machine, with no AWS account.

A real PostgreSQL cluster and a real Kafka broker on free loopback ports; AWS served by moto (server mode, with
its Step Functions interpreter on) and the seams of ``deployflow.local.aws``; provisioned from ``template.yaml``
itself: each Lambda function gets the handler and the environment the template declares (resolved with local
parameter values), and the state machine is created from ``statemachine/deploy.asl.json`` with the template's
DefinitionSubstitutions. Lambda tasks run the handlers in this process; the migration ECS task runs the real
migration runner (``python -m dbmigrate``) against the local database.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TextIO

from release_steps.execution_history import TERMINAL_STATUSES
from release_steps.lock import LockHolder
from release_steps.lock import read as read_lock

from deployflow.local.aws import (
    ACCOUNT_ID,
    LocalAws,
    LocalAwsConfig,
    LocalService,
    Network,
    provision_network,
    push_image,
)
from deployflow.local.cloudformation import DeployedStack, create_stack, package, translate
from deployflow.local.inspect import (
    Snapshot,
    database_tables,
    kafka_topics,
    migration_history,
    primary_deployments,
    task_definition_revisions,
)
from deployflow.local.kafka import KafkaBroker
from deployflow.local.postgres import ConnectionParams, PostgresCluster
from deployflow.local.status_events import Delivery, deliver, status_change_event
from deployflow.local.task_definitions import migration_task_definition
from deployflow.local.template import ASL_PATH, REPO_ROOT, SamTemplate

logger = logging.getLogger(__name__)

CLUSTER = "alerting-local"
SERVICES = ("alert-ingest", "alert-matcher", "notification-dispatcher")
REPOSITORY = "alerting-migration"
TASK_FAMILY = "alerting-migration"
CONTAINER = "migration"
LOG_GROUP = "/ecs/alerting-local/migration"
DATABASE = "alerting"
STACK_NAME = "deployflow-local"
STATE_MACHINE_NAME = f"{STACK_NAME}-release"
DEFAULT_TAG = "2026-11-25.1"
TOPICS = ("alerts.new", "rule.changed", "alerts.matched", "notifications.ready")


@dataclass
class StackOptions:
    """Knobs of the local stack; the defaults make a demo that finishes in seconds.

    ``time_scale`` multiplies Wait states and Retry intervals (the template's poll intervals are 10 s or more);
    ``function_environment`` overrides function variables the template pins to production-sized values.
    """

    time_scale: float = 0.02
    rollout_seconds: float = 1.0
    kafka_auth: str = "plaintext"
    image_tags: tuple[str, ...] = (DEFAULT_TAG,)
    migrations_dir: Path | None = None
    function_environment: dict[str, str] = field(
        default_factory=lambda: {
            "KAFKA_TIMEOUT_SECONDS": "3",
            "DB_CONNECT_TIMEOUT_SECONDS": "3",
            "MIGRATION_TIMEOUT_SECONDS": "120",
            "SERVICES_TIMEOUT_SECONDS": "120",
        }
    )
    log_dir: Path | None = None
    lambda_runtime: Literal["emulator", "in-process"] = "emulator"
    parameter_overrides: dict[str, str] = field(default_factory=dict)


def create_service(ecs: Any, name: str) -> None:
    """One of the platform's services as the local stack runs it: 2 tasks, circuit breaker with rollback."""
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=name,
        taskDefinition="alerting-service",
        desiredCount=2,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )


class LocalStack:
    """Start with ``with LocalStack() as stack:``; ``stack.start_execution({...})`` runs the real state machine."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self._exit = ExitStack()
        self.workdir = Path(tempfile.mkdtemp(prefix="deployflow-local-"))
        self._exit.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        self.log_dir = self.options.log_dir or self.workdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.postgres: PostgresCluster | None = None
        self.database: ConnectionParams | None = None
        self.kafka: KafkaBroker | None = None
        self.aws: LocalAws | None = None
        self.network: Network | None = None
        self.state_machine_arn = ""
        self.topic_arn = ""
        self.db_secret_arn = ""
        self.kafka_secret_arn = ""
        self.lock_table = ""
        self.function_arns: dict[str, str] = {}
        self.cloudformation_stack: DeployedStack | None = None
        self.ignored_overrides: list[str] = []
        self.image_digests: dict[str, str] = {}
        self.deliveries: list[Delivery] = []  # status-change events handed to the rules' targets (status_events.py)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start PostgreSQL, Kafka and moto, then provision the stack. Stops what started if anything fails."""
        try:
            self.postgres = PostgresCluster()
            self.postgres.start()
            self._exit.callback(self.postgres.stop)
            self.database = self.postgres.create_database(DATABASE)
            self.kafka = KafkaBroker()
            self.kafka.start()
            self._exit.callback(self.kafka.stop)
            self.aws = LocalAws(self._aws_config(), mode="server")
            self.aws.start()
            self._exit.callback(self.aws.stop)
            if self.aws.lambdas.pool is not None:
                self.aws.lambdas.pool.setup()  # a missing emulator or interpreter fails here, naming it
            self._route_function_logs()
            self._provision()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything (task processes, moto, Kafka, PostgreSQL); safe to call twice."""
        self._exit.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what callers use -------------------------------------------------------------------------------------

    def runtime_banner(self) -> str:
        """What runs the Lambda functions (the emulator, the Python, whether MemorySize is enforced)."""
        pool = self._aws.lambdas.pool
        if pool is None:
            return "Lambda runtime: in-process (the handlers run in this Python; no Timeout or MemorySize enforced)"
        return pool.describe()

    def client(self, service: LocalService) -> Any:
        """A boto3 client for the local AWS."""
        return self._aws.client(service)

    def client_environment(self) -> dict[str, str]:
        """Variables with which another process (the CLI, the AWS CLI) reaches the local AWS."""
        return self._aws.client_environment()

    def start_execution(self, execution_input: Any, name: str | None = None) -> str:
        """Start the state machine with any JSON value as input; the execution ARN."""
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or f"local-{uuid.uuid4().hex[:12]}",
            input=json.dumps(execution_input),
        )
        return str(response["executionArn"])

    def deliver_status_change(self, execution_arn: str) -> list[Delivery]:
        """Hand an ended execution's status-change event to the rules' Lambda targets, as EventBridge would
        (status_events.py: moto emits no such event); what each target returned."""
        description = self.client("stepfunctions").describe_execution(executionArn=execution_arn)
        if description["status"] not in TERMINAL_STATUSES:
            return []
        event = status_change_event(description, ACCOUNT_ID, self._aws.region)
        found = deliver(self.client("events"), self.client("lambda"), event)
        if self.cloudformation_stack is not None:  # name rules and functions as the template does
            logical = {physical: name for name, (_, physical) in self.cloudformation_stack.resources.items()}
            found = [
                replace(d, rule=logical.get(d.rule, d.rule), function=logical.get(d.function, d.function))
                for d in found
            ]
        self.deliveries.extend(found)
        return found

    def watch_status_changes(
        self, report: Callable[[str, str, list[Delivery]], None], interval_seconds: float = 1.0
    ) -> None:
        """Deliver every execution's status-change event once it ends, as EventBridge would, until the stack stops
        (``deployflow local up``: the operator's own executions, stopped, timed out or failed at a step, reach the
        rules; a redriven execution's new end is delivered again). ``report(name, status, deliveries)`` is called
        from the watcher's thread for each end, in the order seen. Executions that ended before the watch are not
        delivered."""
        stopping = threading.Event()
        delivered = set(self._ended_executions())
        watcher = threading.Thread(
            target=self._watch, args=(stopping, delivered, report, interval_seconds), name="status-changes", daemon=True
        )
        watcher.start()

        def stop_watching() -> None:
            stopping.set()
            watcher.join(timeout=10)

        self._exit.callback(stop_watching)

    def _ended_executions(self) -> dict[tuple[str, int], tuple[str, str]]:
        """(execution ARN, redrive count) -> (name, status) of every ended execution of the state machine."""
        sfn = self.client("stepfunctions")
        ended: dict[tuple[str, int], tuple[str, str]] = {}
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn):
            for item in page["executions"]:
                if item["status"] in TERMINAL_STATUSES:
                    ended[(item["executionArn"], int(item.get("redriveCount", 0)))] = (item["name"], item["status"])
        return ended

    def _watch(
        self,
        stopping: threading.Event,
        delivered: set[tuple[str, int]],
        report: Callable[[str, str, list[Delivery]], None],
        interval_seconds: float,
    ) -> None:
        while not stopping.wait(interval_seconds):
            try:
                for key, (name, status) in self._ended_executions().items():
                    if key not in delivered:
                        delivered.add(key)
                        report(name, status, self.deliver_status_change(key[0]))
            except Exception as e:  # moto going down with the stack, or a target's transport error: try again
                if not stopping.is_set():
                    logger.warning("status-change watcher: %s: %s", type(e).__name__, e)

    def migration_env(self) -> dict[str, str]:
        """The environment `python -m dbmigrate` needs to reach the local database (for checks and scenarios)."""
        return {**self._database.as_env(), "DEPLOYFLOW_LOCAL": "1"}

    def stop_kafka(self) -> None:
        """Take the broker down (the kafka-down scenario), keeping its data; the stack's teardown tolerates it."""
        if self.kafka is not None:
            self.kafka.stop(keep_data=True)

    def restart_kafka(self) -> None:
        """Bring the broker back after ``stop_kafka``: same address (the functions' configuration), same data."""
        self._kafka.restart()

    def function_name(self, logical_id: str) -> str:
        """The deployed name of a template function (``CreateTopicsFunction`` -> ``deployflow-local-CreateTo...``)."""
        if logical_id not in self.function_arns:
            raise KeyError(f"no function {logical_id} in template.yaml (functions: {', '.join(self.function_arns)})")
        return self.function_arns[logical_id].rsplit(":", 1)[-1]

    def snapshot(self) -> Snapshot:
        """What a release can change, read through independent clients (for before/after comparisons)."""
        ecs = self.client("ecs")
        kafka_up = self.kafka is not None and self.kafka.running
        return Snapshot(
            tables=database_tables(self._database),
            history=migration_history(self._database),
            topics=tuple(sorted(kafka_topics(self._kafka.bootstrap_plaintext).items())) if kafka_up else (),
            task_definition_revisions=task_definition_revisions(ecs, TASK_FAMILY),
            tasks_started=len(self._aws.ecs.runs),
            primary_deployments=primary_deployments(ecs, CLUSTER, SERVICES),
        )

    def lock_holder(self) -> LockHolder | None:
        """The release holding the one-release lock (read from its table, strongly consistent), None if free."""
        return read_lock(self.client("dynamodb"), self.lock_table)

    def push_image(self, tag: str) -> str:
        """Push a migration image with a clean scan; its digest."""
        digest, _ = push_image(self._aws, REPOSITORY, tag, severity_counts={})
        self.image_digests[tag] = digest
        return digest

    # --- provisioning -----------------------------------------------------------------------------------------

    def _aws_config(self) -> LocalAwsConfig:
        task_env = {**self._database.as_env(), "DEPLOYFLOW_LOCAL": "1", "PYTHONUNBUFFERED": "1"}
        if self.options.migrations_dir is not None:
            task_env["MIGRATIONS_DIR"] = str(self.options.migrations_dir)
        lambda_env: dict[str, str | None] = {
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_DEV": None,
            **self.options.function_environment,
        }
        if self.options.kafka_auth == "sasl_scram":
            lambda_env["KAFKA_SASL_OVER_TLS"] = "false"
        return LocalAwsConfig(
            time_scale=self.options.time_scale,
            images={REPOSITORY: [sys.executable, "-m", "dbmigrate"]},
            task_environment=task_env,
            lambda_environment=lambda_env,
            code_paths=[REPO_ROOT / "functions"],
            before_invoke=[_fresh_container],
            rollout_seconds=self.options.rollout_seconds,
            task_cwd=self.workdir,
            lambda_runtime=self.options.lambda_runtime,
            lambda_log_dir=self.log_dir,
        )

    def _route_function_logs(self) -> None:
        """Handler logs (Powertools JSON) go to a file, as they would go to CloudWatch, not over the progress."""
        from release_steps.observability import logger as function_logger

        log_file = (self.log_dir / "functions.log").open("a", encoding="utf-8")
        self._exit.callback(log_file.close)
        handler = function_logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            previous = handler.setStream(log_file)
            self._exit.callback(handler.setStream, previous)
        # Metrics (EMF) are printed: what handlers print from moto's request threads goes to the same file.
        original = sys.stdout
        sys.stdout = _ThreadRoutedStream(original, log_file, threading.get_ident())
        self._exit.callback(setattr, sys, "stdout", original)

    def _provision(self) -> None:
        aws = self._aws
        self.network = provision_network(aws)
        for tag in self.options.image_tags:
            self.push_image(tag)
        aws.client("logs").create_log_group(logGroupName=LOG_GROUP)
        ecs = aws.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        registry = f"{ACCOUNT_ID}.dkr.ecr.{aws.region}.amazonaws.com"
        secrets = aws.client("secretsmanager")
        db = self._database
        self.db_secret_arn = secrets.create_secret(
            Name="alerting-local/db",
            SecretString=json.dumps(
                {
                    "engine": "postgres",
                    "host": db.host,
                    "port": db.port,
                    "username": db.user,
                    "password": db.password,
                    "dbname": db.dbname,
                }
            ),
        )["ARN"]
        kafka = self._kafka
        self.kafka_secret_arn = secrets.create_secret(
            Name="AmazonMSK_alerting-local",
            SecretString=json.dumps({"username": kafka.scram_username, "password": kafka.scram_password}),
        )["ARN"]
        task_role = f"arn:aws:iam::{ACCOUNT_ID}:role/alerting-local-migration-task"
        execution_role = f"arn:aws:iam::{ACCOUNT_ID}:role/alerting-local-migration-execution"
        # Registered from docs/deploy.md's own example, filled in with the local values: the two cannot drift.
        definition = migration_task_definition(
            "fargate",
            {
                "MIGRATION_TASK_FAMILY": TASK_FAMILY,
                "MIGRATION_CONTAINER_NAME": CONTAINER,
                "ACCOUNT_ID": ACCOUNT_ID,
                "REGION": aws.region,
                "TASK_ROLE_NAME": task_role.rsplit("/", 1)[1],
                "EXECUTION_ROLE_NAME": execution_role.rsplit("/", 1)[1],
                "MIGRATION_REPOSITORY": REPOSITORY,
                "IMAGE_TAG": "bootstrap",
                "DB_HOST": db.host,
                "DB_PORT": str(db.port),
                "DB_NAME": db.dbname,
                "DB_SSLMODE": "disable",
                "DB_SECRET_ARN": self.db_secret_arn,
                "MIGRATION_LOG_GROUP": LOG_GROUP,
            },
        )
        ecs.register_task_definition(**definition)
        ecs.register_task_definition(
            family="alerting-service",
            containerDefinitions=[{"name": "app", "image": f"{registry}/alerting-service:1", "memory": 256}],
        )
        for service in SERVICES:
            create_service(ecs, service)
        self._create_functions_and_state_machine(task_role, execution_role)

    def _template_parameters(self, task_role: str, execution_role: str) -> dict[str, str]:
        network = self.network
        assert network is not None
        kafka = self._kafka
        scram = self.options.kafka_auth == "sasl_scram"
        return {
            "ClusterName": CLUSTER,
            "ServiceNames": ",".join(SERVICES),
            "MigrationRepositoryName": REPOSITORY,
            "RequireImageScan": "true",
            "MigrationTaskFamily": TASK_FAMILY,
            "MigrationContainerName": CONTAINER,
            "MigrationLaunchType": "FARGATE",
            "MigrationSubnetIds": ",".join(network.subnet_ids),
            "MigrationSecurityGroupIds": ",".join(network.security_group_ids),
            "MigrationTaskRoleArn": task_role,
            "MigrationExecutionRoleArn": execution_role,
            "MigrationLogGroupName": LOG_GROUP,
            "DbSecretArn": self.db_secret_arn,
            "DbSslMode": "disable",
            "KafkaBootstrapServers": kafka.bootstrap_sasl if scram else kafka.bootstrap_plaintext,
            "KafkaAuthMode": "sasl_scram" if scram else "plaintext",
            "KafkaSecretArn": self.kafka_secret_arn if scram else "",
            "TopicReplicationFactor": "1",
            "FunctionSubnetIds": ",".join(network.subnet_ids),
            "FunctionSecurityGroupIds": ",".join(network.security_group_ids),
        }

    def _create_functions_and_state_machine(self, task_role: str, execution_role: str) -> None:
        """Deploy template.yaml as ``sam deploy`` would (cloudformation.py), then create what moto's CloudFormation
        leaves out: the state machine, from the ASL with the template's DefinitionSubstitutions."""
        aws = self._aws
        local = self._template_parameters(task_role, execution_role)
        # Overrides set the settings (poll intervals, deadlines, topics, scan policy); the wiring to the local
        # cluster, database, broker and network is the local stack's own.
        self.ignored_overrides = sorted(k for k in self.options.parameter_overrides if k in local)
        parameters = {**self.options.parameter_overrides, **local}
        template = SamTemplate(  # first: an override the template does not declare is refused before anything
            parameters, {"AWS::Region": aws.region, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": STACK_NAME}
        )
        package(aws)
        deployed = create_stack(aws, STACK_NAME, translate(region=aws.region), parameters)
        self.cloudformation_stack = deployed
        self.topic_arn = deployed.outputs["NotificationTopicArn"]
        template.attributes["NotificationTopic"] = self.topic_arn  # first: a function's environment refers to it
        self.lock_table = deployed.outputs["ReleaseLockTableName"]
        template.attributes["ReleaseLockTable"] = self.lock_table
        lambda_client = aws.client("lambda")
        for spec in template.functions():
            name = deployed.physical_id(spec.logical_id)
            arn = str(lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"])
            self.function_arns[spec.logical_id] = arn
            template.attributes[f"{spec.logical_id}.Arn"] = arn
        definition = ASL_PATH.read_text(encoding="utf-8")
        for key, value in template.definition_substitutions().items():
            definition = definition.replace("${" + key + "}", value)
        sfn = aws.client("stepfunctions")
        machine_arn = deployed.outputs["StateMachineArn"]
        with suppress(sfn.exceptions.StateMachineDoesNotExist):
            sfn.delete_state_machine(stateMachineArn=machine_arn)  # moto's, if any: created without a definition
        self.state_machine_arn = sfn.create_state_machine(
            name=deployed.outputs["StateMachineName"],
            definition=definition,
            roleArn=deployed.physical_id("ReleaseStateMachineRole").join((f"arn:aws:iam::{ACCOUNT_ID}:role/", "")),
        )["stateMachineArn"]
        if self.state_machine_arn != machine_arn:
            raise RuntimeError(f"the state machine is {self.state_machine_arn}, the stack's output {machine_arn}")

    # --- typed access to what started ---------------------------------------------------------------------------

    @property
    def _aws(self) -> LocalAws:
        if self.aws is None:
            raise RuntimeError("the local stack's AWS is not started")
        return self.aws

    @property
    def _database(self) -> ConnectionParams:
        if self.database is None:
            raise RuntimeError("the local stack's database is not started")
        return self.database

    @property
    def _kafka(self) -> KafkaBroker:
        if self.kafka is None:
            raise RuntimeError("the local stack's Kafka broker is not started")
        return self.kafka


class _ThreadRoutedStream(io.TextIOBase):
    """stdout for the local stack's lifetime: the owner thread writes to the terminal, Lambda threads to a file."""

    def __init__(self, terminal: TextIO, functions: TextIO, owner: int) -> None:
        self._terminal = terminal
        self._functions = functions
        self._owner = owner

    def write(self, text: str) -> int:
        target = self._terminal if threading.get_ident() == self._owner else self._functions
        return target.write(text)

    def flush(self) -> None:
        self._terminal.flush()
        self._functions.flush()


def _fresh_container() -> None:
    """Each invocation starts as a cold Lambda would: settings parsed and clients made from its own environment."""
    from dbmigrate import aws_secrets
    from release_steps import clients, config

    config.reset()
    clients.reset()
    aws_secrets.reset()  # the cached secrets and their clients (a cold start has none)
