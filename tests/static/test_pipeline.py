"""The CodePipeline example and the migration image buildspec: cfn-lint, the wiring between the two, least privilege,
and the buildspec's own commands run in bash (docker and aws replaced by recorders) to prove the file it writes is an
input the first step accepts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (pinned in constraints.txt via cfn-lint) has no stubs
from release_steps.models import IMAGE_TAG_PATTERN, ReleaseInput

from tests.static import documents as docs

PIPELINE_PATH = docs.ROOT / "pipeline" / "codepipeline-example.yaml"
BUILDSPEC_PATH = docs.ROOT / "pipeline" / "buildspec-migration.yml"
# "AWS Step Functions invoke action reference" (CodePipeline User Guide): the action type and its configuration keys.
STEP_FUNCTIONS_ACTION_TYPE = {"Category": "Invoke", "Owner": "AWS", "Provider": "StepFunctions", "Version": "1"}
STEP_FUNCTIONS_CONFIGURATION_KEYS = {"StateMachineArn", "ExecutionNamePrefix", "InputType", "Input"}
EXECUTION_NAME_MAX = 80  # Step Functions execution names
ACTION_EXECUTION_ID_LENGTH = 36  # a UUID, appended to the prefix after a hyphen
# Variables CodeBuild sets in every build ("Environment variables in build environments", CodeBuild User Guide).
CODEBUILD_VARIABLES = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "CODEBUILD_BUILD_NUMBER",
    "CODEBUILD_START_TIME",
    "CODEBUILD_RESOLVED_SOURCE_VERSION",
}
# The only actions AWS accepts solely on Resource "*".
RESOURCE_STAR_ALLOWED = {"ecr:GetAuthorizationToken"}

SAMPLE_START = datetime(2026, 11, 23, 23, 59, 59, 500000, tzinfo=UTC)  # late in the day: the tag keeps the start day
SAMPLE_COMMIT = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
SAMPLE_PIPELINE_EXECUTION = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SAMPLE_REPOSITORY = "alerting-platform-dev-migration"
SAMPLE_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


# --- loading ------------------------------------------------------------------------------------------------------


@cache
def _pipeline_template() -> str:
    from cfnlint.decode.cfn_yaml import load  # keeps the CloudFormation tags, as documents.py does for template.yaml

    return json.dumps(load(str(PIPELINE_PATH)))


def pipeline_template() -> dict[str, Any]:
    """A fresh copy of the pipeline example, intrinsic functions in their long form."""
    loaded: dict[str, Any] = json.loads(_pipeline_template())
    return loaded


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in pipeline_template()["Resources"].items() if r["Type"] == kind}


def the_one(kind: str) -> tuple[str, dict[str, Any]]:
    found = resources_of(kind)
    assert len(found) == 1, f"expected exactly one {kind} in {PIPELINE_PATH.name}, found {sorted(found)}"
    name, resource = next(iter(found.items()))
    return name, resource["Properties"]


def stages() -> dict[str, list[dict[str, Any]]]:
    _, pipeline = the_one("AWS::CodePipeline::Pipeline")
    return {stage["Name"]: stage["Actions"] for stage in pipeline["Stages"]}


def single_action(stage: str) -> dict[str, Any]:
    actions = stages()[stage]
    assert len(actions) == 1, f"stage {stage}: expected one action, found {[a['Name'] for a in actions]}"
    return actions[0]


def buildspec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(BUILDSPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def buildspec_commands() -> list[str]:
    """Every command of every phase, in phase order (as CodeBuild runs them)."""
    phases = buildspec()["phases"]
    commands: list[str] = []
    for phase in ("install", "pre_build", "build", "post_build"):
        commands.extend(phases.get(phase, {}).get("commands", []))
    return commands


def written_input_file() -> str:
    files = buildspec()["artifacts"]["files"]
    assert files == ["release-input.json"], f"the buildspec's artifact must be release-input.json alone, got {files}"
    return str(files[0])


def statements(role: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_for(role_name: str, action: str) -> dict[str, Any]:
    role = pipeline_template()["Resources"][role_name]
    matching = [s for s in statements(role) if s["Effect"] == "Allow" and action in as_list(s["Action"])]
    assert len(matching) == 1, f"{role_name}: expected one statement allowing {action}, found {len(matching)}"
    return matching[0]


# --- the template -------------------------------------------------------------------------------------------------


def test_given_the_pipeline_example_then_cfn_lint_passes() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    assert cfn_lint.exists(), f"cfn-lint is not installed beside {sys.executable}"
    completed = subprocess.run(
        [str(cfn_lint), str(PIPELINE_PATH)], capture_output=True, text=True, cwd=docs.ROOT, timeout=240
    )
    assert completed.returncode == 0, f"cfn-lint failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}"


def test_given_the_pipeline_then_it_is_a_queued_v2_pipeline_of_source_build_deploy() -> None:
    _, pipeline = the_one("AWS::CodePipeline::Pipeline")
    assert pipeline["PipelineType"] == "V2"
    assert pipeline["ExecutionMode"] == "QUEUED", "overlapping releases fail with DeploymentInProgressError"
    assert list(stages()) == ["Source", "Build", "Deploy"]


def test_given_the_source_stage_then_it_reads_the_branch_through_the_connection() -> None:
    action = single_action("Source")
    assert action["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    configuration = action["Configuration"]
    for key in ("ConnectionArn", "FullRepositoryId", "BranchName"):
        assert configuration[key] == {"Ref": key}, f"Source {key} must be the {key} parameter"
        assert key in pipeline_template()["Parameters"]
    assert configuration.get("OutputArtifactFormat", "CODE_ZIP") == "CODE_ZIP", "CodeBuild needs the files, not a ref"


def test_given_the_deploy_stage_then_it_starts_the_state_machine_with_the_file_the_buildspec_writes() -> None:
    build, deploy = single_action("Build"), single_action("Deploy")
    assert deploy["ActionTypeId"] == STEP_FUNCTIONS_ACTION_TYPE
    configuration = deploy["Configuration"]
    unknown = set(configuration) - STEP_FUNCTIONS_CONFIGURATION_KEYS
    assert unknown == set(), f"configuration keys the Step Functions action does not document: {sorted(unknown)}"
    assert configuration["StateMachineArn"] == {"Ref": "StateMachineArn"}
    assert configuration["InputType"] == "FilePath"
    assert configuration["Input"] == written_input_file(), "the action reads another file than the buildspec writes"
    produced = [artifact["Name"] for artifact in build["OutputArtifacts"]]
    consumed = [artifact["Name"] for artifact in deploy["InputArtifacts"]]
    assert len(consumed) == 1, "FilePath input reads exactly one input artifact"
    assert consumed == produced, f"Deploy reads {consumed}, Build produces {produced}"


def test_given_the_execution_name_prefix_then_every_execution_name_fits_in_80_characters() -> None:
    configuration = single_action("Deploy")["Configuration"]
    assert configuration["ExecutionNamePrefix"] == {"Ref": "ExecutionNamePrefix"}
    pattern = pipeline_template()["Parameters"]["ExecutionNamePrefix"]["AllowedPattern"]
    longest = re.fullmatch(r"\^\[A-Za-z0-9_-\]\{1,(\d+)\}\$", pattern)
    assert longest, f"ExecutionNamePrefix AllowedPattern {pattern!r}: expected ^[A-Za-z0-9_-]{{1,N}}$"
    name_length = int(longest.group(1)) + 1 + ACTION_EXECUTION_ID_LENGTH
    assert name_length <= EXECUTION_NAME_MAX, f"prefix-<uuid> may reach {name_length} characters"


def test_given_the_build_stage_then_the_project_runs_the_buildspec_privileged() -> None:
    project_name, project = the_one("AWS::CodeBuild::Project")
    action = single_action("Build")
    assert action["ActionTypeId"]["Provider"] == "CodeBuild"
    assert action["Configuration"]["ProjectName"] == {"Ref": project_name}
    assert project["Source"]["BuildSpec"] == BUILDSPEC_PATH.relative_to(docs.ROOT).as_posix()
    assert project["Environment"]["PrivilegedMode"] is True, "docker build needs a privileged build container"


def test_given_the_build_action_then_it_hands_the_pipeline_execution_id_to_the_build() -> None:
    raw = single_action("Build")["Configuration"]["EnvironmentVariables"]
    variables = {v["name"]: v for v in json.loads(raw)}
    assert variables["PIPELINE_EXECUTION_ID"]["value"] == "#{codepipeline.PipelineExecutionId}"
    assert variables["PIPELINE_EXECUTION_ID"]["type"] == "PLAINTEXT"


def test_given_the_buildspec_then_every_variable_it_reads_is_supplied() -> None:
    _, project = the_one("AWS::CodeBuild::Project")
    from_project = {v["Name"] for v in project["Environment"]["EnvironmentVariables"]}
    from_action = {v["name"] for v in json.loads(single_action("Build")["Configuration"]["EnvironmentVariables"])}
    text = "\n".join(buildspec_commands())
    assigned = set(re.findall(r"(?m)^\s*([A-Z][A-Z0-9_]*)=", text))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    missing = read - assigned - from_project - from_action - CODEBUILD_VARIABLES
    assert missing == set(), f"the buildspec reads variables nothing sets: {sorted(missing)}"


def test_given_the_artifact_bucket_then_it_is_encrypted_versioned_and_not_public() -> None:
    _, bucket = the_one("AWS::S3::Bucket")
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules, "the artifact bucket has no default encryption"
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    block = bucket["PublicAccessBlockConfiguration"]
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    assert all(block.get(flag) is True for flag in flags), f"public access not fully blocked: {block}"
    _, pipeline = the_one("AWS::CodePipeline::Pipeline")
    bucket_name, _ = the_one("AWS::S3::Bucket")
    assert pipeline["ArtifactStore"] == {"Type": "S3", "Location": {"Ref": bucket_name}}


# --- least privilege ----------------------------------------------------------------------------------------------


def test_given_every_role_then_no_allow_statement_uses_wildcard_actions_or_resources() -> None:
    for name, role in resources_of("AWS::IAM::Role").items():
        for statement in statements(role):
            if statement["Effect"] != "Allow":
                continue
            actions = as_list(statement["Action"])
            assert all(not str(a).endswith("*") for a in actions), f"{name} {statement.get('Sid')}: {actions}"
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= RESOURCE_STAR_ALLOWED, f"{name} {statement.get('Sid')}: {actions} on *"


def test_given_the_pipeline_role_then_it_starts_and_reads_only_this_state_machine() -> None:
    start = statement_for("PipelineRole", "states:StartExecution")
    assert start["Resource"] == {"Ref": "StateMachineArn"}
    describe = statement_for("PipelineRole", "states:DescribeExecution")
    template, variables = describe["Resource"]["Fn::Sub"]
    assert template == "${Head}:execution:${MachineName}:${ExecutionNamePrefix}-*", template
    split = {"Fn::Split": [":stateMachine:", {"Ref": "StateMachineArn"}]}
    assert variables == {"Head": {"Fn::Select": [0, split]}, "MachineName": {"Fn::Select": [1, split]}}


def test_given_the_pipeline_role_then_it_runs_only_its_build_and_uses_only_its_connection() -> None:
    project_name, _ = the_one("AWS::CodeBuild::Project")
    build = statement_for("PipelineRole", "codebuild:StartBuild")
    assert "codebuild:BatchGetBuilds" in as_list(build["Action"])
    assert build["Resource"] == {"Fn::GetAtt": [project_name, "Arn"]}
    connection = statement_for("PipelineRole", "codestar-connections:UseConnection")
    assert connection["Resource"] == {"Ref": "ConnectionArn"}


def test_given_the_build_role_then_it_pushes_only_to_the_migration_repository() -> None:
    push = statement_for("BuildRole", "ecr:PutImage")
    resource = push["Resource"]
    assert isinstance(resource, dict), f"ecr:PutImage must be scoped to one repository ARN, got {resource!r}"
    assert resource["Fn::Sub"].endswith(":repository/${MigrationRepositoryName}"), resource


# --- the buildspec ------------------------------------------------------------------------------------------------


def test_given_the_buildspec_then_it_is_version_0_2_and_every_command_is_a_string() -> None:
    spec = buildspec()
    assert str(spec["version"]) == "0.2"
    commands = buildspec_commands()
    assert commands, "the buildspec has no commands"
    not_strings = [c for c in commands if not isinstance(c, str)]
    assert not_strings == [], f"YAML read these commands as mappings (quote them or use |): {not_strings}"


def test_given_the_buildspec_then_it_builds_migration_dockerfile_from_the_repository_root() -> None:
    builds = [c for c in buildspec_commands() if c.startswith("docker build")]
    assert len(builds) == 1, f"expected one docker build, found {builds}"
    words = builds[0].split()
    dockerfile = words[words.index("--file") + 1]
    assert dockerfile == "migration/Dockerfile", dockerfile
    assert (docs.ROOT / dockerfile).is_file(), f"{dockerfile} does not exist"
    assert words[-1] == ".", f"the build context must be the repository root (the Dockerfile copies sql/): {words}"


# --- the buildspec, run ---------------------------------------------------------------------------------------------

STUBS = r"""
set -e
docker() {
    printf 'docker %s\n' "$*" >> "$STUB_CALLS"
    if [ "$1" = login ]; then cat > /dev/null; fi
    if [ "$1" = "${STUB_FAIL:-}" ]; then return 1; fi
    return 0
}
aws() {
    printf 'aws %s\n' "$*" >> "$STUB_CALLS"
    if [ "$1 $2" = "ecr get-login-password" ]; then echo stub-password; fi
    if [ "$1 $2" = "ecr describe-images" ]; then
        # The scan statuses ECR reports, one per call (STUB_SCAN_STATUSES), the last one repeated.
        set -- ${STUB_SCAN_STATUSES:-COMPLETE}
        seen=$(grep -c '^aws ecr describe-images' "$STUB_CALLS")
        shift $(( seen <= $# ? seen - 1 : $# - 1 ))
        echo "$1"
    fi
    return 0
}
sleep() { printf 'sleep %s\n' "$*" >> "$STUB_CALLS"; }
"""


@dataclass(frozen=True)
class BuildRun:
    """What one run of the buildspec did."""

    returncode: int
    stderr: str
    calls: list[str]
    release_input: dict[str, Any] | None


def build_environment(**overrides: str | None) -> dict[str, str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": "us-east-1",
        "CODEBUILD_BUILD_NUMBER": "42",
        "CODEBUILD_START_TIME": str(int(SAMPLE_START.timestamp() * 1000)),
        "CODEBUILD_RESOLVED_SOURCE_VERSION": SAMPLE_COMMIT,
        "ECR_REPOSITORY_NAME": SAMPLE_REPOSITORY,
        "ECR_REPOSITORY_URI": f"{SAMPLE_REGISTRY}/{SAMPLE_REPOSITORY}",
        "PIPELINE_EXECUTION_ID": SAMPLE_PIPELINE_EXECUTION,
        "WAIT_FOR_SCAN": "false",
    }
    for key, value in overrides.items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return environment


def run_buildspec(workdir: Path, environment: dict[str, str], fail: str | None = None) -> BuildRun:
    """Run every buildspec command in one bash, stopping at the first failure, as a CodeBuild build would."""
    bash = shutil.which("bash")
    assert bash, "bash is needed to run the buildspec"
    workdir.mkdir(parents=True, exist_ok=True)
    calls = workdir / "stub-calls.log"
    calls.touch()
    script = STUBS + "\n".join(buildspec_commands()) + "\n"
    env = {**environment, "HOME": str(workdir), "STUB_CALLS": str(calls), "STUB_FAIL": fail or ""}
    completed = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    written = workdir / "release-input.json"
    release_input = json.loads(written.read_text(encoding="utf-8")) if written.exists() else None
    return BuildRun(completed.returncode, completed.stderr, calls.read_text().splitlines(), release_input)


def pushed_tag(run: BuildRun) -> str:
    pushes = [c for c in run.calls if c.startswith("docker push ")]
    assert len(pushes) == 1, f"expected one docker push, got {run.calls}"
    uri = pushes[0].removeprefix("docker push ")
    repository, _, tag = uri.rpartition(":")
    assert repository == f"{SAMPLE_REGISTRY}/{SAMPLE_REPOSITORY}", uri
    return tag


def test_given_a_pipeline_build_when_the_buildspec_runs_then_it_writes_an_input_the_first_step_accepts(
    tmp_path: Path,
) -> None:
    run = run_buildspec(tmp_path, build_environment())
    assert run.returncode == 0, f"the buildspec failed: {run.stderr}"
    assert run.release_input is not None, "release-input.json was not written"
    accepted = ReleaseInput.load(run.release_input)  # extra keys are forbidden: the keys match
    assert set(run.release_input) == {"imageTag", "idempotencyKey"}
    assert accepted.image_tag == "2026-11-23.42-1a2b3c4"
    assert re.fullmatch(IMAGE_TAG_PATTERN, accepted.image_tag)
    assert accepted.idempotency_key == SAMPLE_PIPELINE_EXECUTION
    assert pushed_tag(run) == accepted.image_tag, "the release would check another tag than the one pushed"


def test_given_a_build_when_it_runs_then_it_logs_in_to_the_registry_before_building_and_pushing(
    tmp_path: Path,
) -> None:
    run = run_buildspec(tmp_path, build_environment())
    assert run.returncode == 0, run.stderr
    verbs = [" ".join(c.split()[:2]) for c in run.calls]
    assert "aws ecr" in verbs, run.calls
    assert verbs.index("docker login") < verbs.index("docker build") < verbs.index("docker push"), run.calls
    login = next(c for c in run.calls if c.startswith("docker login"))
    assert login.endswith(f"--password-stdin {SAMPLE_REGISTRY}"), login


def test_given_no_pipeline_execution_id_when_the_buildspec_runs_then_the_commit_is_the_idempotency_key(
    tmp_path: Path,
) -> None:
    run = run_buildspec(tmp_path, build_environment(PIPELINE_EXECUTION_ID=None))
    assert run.returncode == 0, run.stderr
    assert run.release_input is not None
    assert ReleaseInput.load(run.release_input).idempotency_key == SAMPLE_COMMIT


def test_given_the_same_build_when_the_tag_is_computed_twice_then_it_is_the_same_and_a_new_build_gets_a_new_one(
    tmp_path: Path,
) -> None:
    first = run_buildspec(tmp_path / "first", build_environment())
    again = run_buildspec(tmp_path / "again", build_environment())
    next_build = run_buildspec(tmp_path / "next", build_environment(CODEBUILD_BUILD_NUMBER="43"))
    assert pushed_tag(first) == pushed_tag(again)
    assert pushed_tag(next_build) == "2026-11-23.43-1a2b3c4"


def scan_checks(run: BuildRun) -> list[str]:
    return [c for c in run.calls if c.startswith("aws ecr describe-images")]


@pytest.mark.parametrize("final", ["COMPLETE", "ACTIVE"])
def test_given_wait_for_scan_when_the_buildspec_runs_then_it_waits_for_the_scan_of_the_pushed_tag(
    tmp_path: Path, final: str
) -> None:
    # Basic scanning ends COMPLETE, enhanced (Inspector) scanning ACTIVE; right after the push there is no status.
    statuses = f"None PENDING IN_PROGRESS {final}"
    waited = run_buildspec(tmp_path / "wait", build_environment(WAIT_FOR_SCAN="true", STUB_SCAN_STATUSES=statuses))
    skipped = run_buildspec(tmp_path / "skip", build_environment(WAIT_FOR_SCAN="false"))

    assert waited.returncode == 0, waited.stderr
    assert (
        scan_checks(waited)
        == [
            f"aws ecr describe-images --repository-name {SAMPLE_REPOSITORY} --image-ids imageTag={pushed_tag(waited)} "
            "--query imageDetails[0].imageScanStatus.status --output text"
        ]
        * 4
    )
    assert waited.calls.count("sleep 5") == 3
    assert waited.release_input is not None
    assert not scan_checks(skipped), skipped.calls


@pytest.mark.parametrize("status", ["FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE"])
def test_given_a_scan_that_cannot_complete_when_the_buildspec_waits_then_the_build_fails_without_an_input(
    tmp_path: Path, status: str
) -> None:
    run = run_buildspec(tmp_path, build_environment(WAIT_FOR_SCAN="true", STUB_SCAN_STATUSES=f"IN_PROGRESS {status}"))

    assert run.returncode != 0
    assert f"ended {status}" in run.stderr
    assert run.release_input is None


def test_given_a_scan_that_never_finishes_when_the_buildspec_waits_then_it_gives_up_after_60_checks(
    tmp_path: Path,
) -> None:
    run = run_buildspec(tmp_path, build_environment(WAIT_FOR_SCAN="true", STUB_SCAN_STATUSES="IN_PROGRESS"))

    assert run.returncode != 0
    assert len(scan_checks(run)) == 60
    assert "still IN_PROGRESS after 60 checks" in run.stderr
    assert run.release_input is None


def test_given_the_push_fails_when_the_buildspec_runs_then_no_release_input_is_written(tmp_path: Path) -> None:
    run = run_buildspec(tmp_path, build_environment(), fail="push")
    assert run.returncode != 0
    assert run.release_input is None, "a release would start for an image that was never pushed"


@pytest.mark.parametrize("missing", ["ECR_REPOSITORY_URI", "ECR_REPOSITORY_NAME", "CODEBUILD_BUILD_NUMBER"])
def test_given_a_missing_variable_when_the_buildspec_runs_then_it_fails_before_docker(
    tmp_path: Path, missing: str
) -> None:
    run = run_buildspec(tmp_path, build_environment(**{missing: None}))
    assert run.returncode != 0
    assert missing in run.stderr, f"the failure does not name {missing}: {run.stderr!r}"
    assert not [c for c in run.calls if c.startswith("docker")], run.calls
