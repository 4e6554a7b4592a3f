"""Deploy template.yaml into the local AWS the way ``sam deploy`` does: package, transform, create a stack.

``sam package`` uploads the code asset and the ASL to S3 and points CodeUri / DefinitionUri there; aws-sam-translator
(the SAM transform itself, run in ``.venv-sam`` where the SAM CLI's pins live: its pydantic pin conflicts with the
functions') turns the SAM template into CloudFormation; moto's CloudFormation creates the stack, so the stack, its
resources and its Outputs exist locally and ``deployflow start --stack-name deployflow-local`` finds them.

What moto 5.2.5's CloudFormation cannot do with this template, and what the local stack does instead (each fact
pinned by tests/canary/test_cloudformation.py, which fails when moto changes it):

- ``AWS::StepFunctions::StateMachine``: moto reads only ``DefinitionString``; ``DefinitionS3Location`` and
  ``DefinitionSubstitutions`` are ignored. The local stack creates the state machine itself, same name, from the
  ASL with the substitutions resolved against the stack's own resources (``SamTemplate``).
- ``AWS::CloudWatch::Alarm``, ``AWS::SNS::TopicPolicy`` and ``AWS::SNS::Subscription`` (only with a
  NotificationEmail): not supported (skipped with a warning); nothing local reads them, so nothing stands in.
- a ``CommaDelimitedList`` parameter left at its Default stays a string (``!Join`` then joins its characters):
  ``create_stack`` passes every list parameter, defaults included.
- ``Fn::If`` giving ``AWS::NoValue`` inside a list (the roles' optional policies) stays in the list as ``None``
  where CloudFormation removes it: ``CloudFormationFixes`` removes it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import time
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployflow.local._patching import AttributePatch, PatchSet, Seam
from deployflow.local.template import ASL_PATH, REPO_ROOT, TEMPLATE_PATH

ARTIFACTS_BUCKET = "deployflow-local-artifacts"
CODE_KEY = "functions.zip"
DEFINITION_KEY = "statemachine/deploy.asl.json"
SAM_PYTHON_GLOB = ".venv-sam/bin/python"

_TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

document = yaml_parse(open(sys.argv[1], encoding="utf-8").read())
code_uri, definition_uri = sys.argv[2], sys.argv[3]
document.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = code_uri
for resource in document["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
        resource["Properties"]["CodeUri"] = code_uri
    if resource["Type"] == "AWS::Serverless::StateMachine":
        resource["Properties"]["DefinitionUri"] = definition_uri
json.dump(transform(document, {}, NoManagedPolicies()), sys.stdout, default=str)
"""


class _KnownUnsupported(logging.Filter):
    """moto logs (and warns) each unsupported type above on every parse: known, pinned by the canary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No Moto CloudFormation support for")


logging.getLogger("moto").addFilter(_KnownUnsupported())
warnings.filterwarnings("ignore", message=r"Tried to parse AWS::\S+ but it's not supported", category=UserWarning)


class CloudFormationError(Exception):
    """The template could not be transformed or the local stack's CloudFormation stack was not created."""


def translate(template: Path = TEMPLATE_PATH, *, region: str = "us-east-1") -> dict[str, Any]:
    """The SAM template as CloudFormation, as ``sam package`` + the SAM transform make it (code in S3)."""
    python = REPO_ROOT / SAM_PYTHON_GLOB
    if not python.exists():
        raise CloudFormationError(
            f"aws-sam-translator is missing: no {python} (run `make .venv-sam/.installed`; it holds the SAM CLI)"
        )
    env = {**os.environ, "AWS_DEFAULT_REGION": region, "AWS_REGION": region}
    result = subprocess.run(
        [
            str(python),
            "-c",
            _TRANSLATE,
            str(template),
            f"s3://{ARTIFACTS_BUCKET}/{CODE_KEY}",
            f"s3://{ARTIFACTS_BUCKET}/{DEFINITION_KEY}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise CloudFormationError(f"the SAM transform of {template.name} failed: {result.stderr.strip()[-800:]}")
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def package(aws: Any) -> None:
    """Upload the code asset (functions/) and the ASL to the artifacts bucket, as ``sam package`` would."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        root = REPO_ROOT / "functions"
        for path in sorted(root.rglob("*.py")):
            zipped.write(path, path.relative_to(root).as_posix())
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=CODE_KEY, Body=archive.getvalue())
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=DEFINITION_KEY, Body=ASL_PATH.read_bytes())


@dataclass(frozen=True)
class DeployedStack:
    """A CloudFormation stack that reached CREATE_COMPLETE: its outputs and its resources' physical ids."""

    stack_id: str
    outputs: dict[str, str]
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)

    def physical_id(self, logical_id: str) -> str:
        return self.resources[logical_id][1]


def create_stack(
    aws: Any, name: str, template: Mapping[str, Any], parameters: Mapping[str, str], *, timeout: float = 60.0
) -> DeployedStack:
    """Create the stack and wait (bounded) for its end; CloudFormationError names the failure."""
    cloudformation = aws.client("cloudformation")
    values = dict(parameters)
    for key, declared in template.get("Parameters", {}).items():
        # moto splits a list parameter's value only when it is passed, not its Default: pass every one.
        if key not in values and "List" in str(declared.get("Type", "")) and "Default" in declared:
            values[key] = str(declared["Default"])
    stack_id = cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )["StackId"]
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise CloudFormationError(f"stack {name} still {status} after {timeout:.0f}s")
        time.sleep(0.1)
    if status != "CREATE_COMPLETE":
        raise CloudFormationError(f"stack {name} ended {status}: {stack.get('StackStatusReason', '')}")
    summaries = cloudformation.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
    return DeployedStack(
        stack_id=str(stack_id),
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        resources={r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId", "")) for r in summaries},
    )


class CloudFormationFixes(Seam):
    """moto's template parser, made to drop ``AWS::NoValue`` from lists as CloudFormation does."""

    def install(self) -> None:
        from moto.cloudformation import parsing

        original = parsing.clean_json

        def clean_json(resource_json: Any, resources_map: Any) -> Any:
            if isinstance(resource_json, list):
                # The list branch recurses through the module's name, so nested lists come back here too.
                cleaned = [clean_json(item, resources_map) for item in resource_json]
                return [item for item in cleaned if item is not None]
            return original(resource_json, resources_map)

        self._apply_patches(PatchSet("cloudformation", [AttributePatch(parsing, "clean_json", clean_json)]))
