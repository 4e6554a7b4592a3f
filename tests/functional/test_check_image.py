"""Check migration image: tag -> digest-pinned URI, and the scan policy, against moto's ECR."""

from __future__ import annotations

import functools
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.core.exceptions import JsonRESTError
from release_steps import check_image, clients
from release_steps.errors import (
    AwsThrottlingError,
    ConfigurationError,
    ImageNotFoundError,
    ImageScanFailedError,
    ImageScanPendingError,
    ImageVulnerableError,
)
from release_steps.models import ImageResult, ReleaseState

from tests.functional.release_world import REGION, REGISTRY, REPOSITORY, ReleaseWorld, load_event

TAG = "2026-11-23.4"


@pytest.fixture
def world(release_world: ReleaseWorld) -> ReleaseWorld:
    release_world.create_repository()
    return release_world


def invoke(context: Any, image_tag: str = TAG, dry_run: bool = False) -> ImageResult:
    event = load_event("check_image")
    event["request"]["imageTag"] = image_tag
    event["request"]["dryRun"] = dry_run
    return ImageResult.load(check_image.lambda_handler(event, context))


def test_given_the_events_file_when_parsed_then_it_is_a_release_state() -> None:
    assert ReleaseState.load(load_event("check_image")).request.image_tag == TAG


def test_given_an_unscanned_image_and_no_scan_required_when_checked_then_the_uri_is_pinned_by_digest(
    world: ReleaseWorld, release_context: Any
) -> None:
    digest = world.push_image(TAG)
    world.push_image("2026-11-22.1")  # another tag in the repository must not be picked

    result = invoke(release_context)

    assert result.digest == digest
    assert result.image_uri == f"{REGISTRY}/{REPOSITORY}@{digest}"
    assert result.repository == REPOSITORY
    assert result.tag == TAG
    assert result.scan_status == "NOT_SCANNED"
    assert result.finding_counts == {}


def test_given_a_dry_run_when_checked_then_the_same_checks_run(world: ReleaseWorld, release_context: Any) -> None:
    digest = world.push_image(TAG)

    assert invoke(release_context, dry_run=True).digest == digest
    with pytest.raises(ImageNotFoundError):
        invoke(release_context, image_tag="2026-11-23.9", dry_run=True)


def test_given_a_missing_tag_when_checked_then_image_not_found_names_repository_and_tag(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.push_image("2026-11-22.1")

    with pytest.raises(ImageNotFoundError) as raised:
        invoke(release_context)

    assert f"'{TAG}'" in raised.value.message
    assert f"'{REPOSITORY}'" in raised.value.message
    assert raised.value.message.startswith("image tag "), raised.value.message


def test_given_the_repository_does_not_exist_when_checked_then_configuration_error_names_it(
    release_world: ReleaseWorld, release_context: Any
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        invoke(release_context)

    assert REPOSITORY in raised.value.message
    assert "ECR_REPOSITORY_NAME" in raised.value.message


def test_given_no_scan_and_a_scan_required_when_checked_then_scan_failed_says_how_to_scan(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    digest = world.push_image(TAG)
    release_setting("REQUIRE_IMAGE_SCAN", "true")

    with pytest.raises(ImageScanFailedError) as raised:
        invoke(release_context)

    assert "REQUIRE_IMAGE_SCAN" in raised.value.message
    assert f"imageDigest={digest}" in raised.value.message


@pytest.mark.parametrize("status", ["IN_PROGRESS", "PENDING"])
def test_given_a_scan_still_running_when_checked_then_scan_pending_which_the_asl_retries(
    world: ReleaseWorld, release_context: Any, status: str
) -> None:
    world.set_scan_result(world.push_image(TAG), status)

    with pytest.raises(ImageScanPendingError, match=status):
        invoke(release_context)
    assert ImageScanPendingError.transient


@pytest.mark.parametrize("status", ["FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED"])
def test_given_a_scan_that_could_not_run_when_checked_then_scan_failed_names_the_status(
    world: ReleaseWorld, release_context: Any, status: str
) -> None:
    world.set_scan_result(world.push_image(TAG), status)

    with pytest.raises(ImageScanFailedError) as raised:
        invoke(release_context)

    assert f"status {status}" in raised.value.message
    assert f"moto: scan {status}" in raised.value.message, "ECR's description is passed on"


def test_given_findings_at_the_threshold_when_checked_then_image_vulnerable_lists_the_counts(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.set_scan_result(world.push_image(TAG), "COMPLETE", {"HIGH": 2, "MEDIUM": 7, "LOW": 1})

    with pytest.raises(ImageVulnerableError) as raised:
        invoke(release_context)

    message = raised.value.message
    assert "at or above HIGH" in message
    assert "HIGH=2" in message
    assert "MEDIUM=7" in message, "all counts are listed for context"


def test_given_a_critical_finding_and_threshold_high_when_checked_then_critical_is_blocking(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.set_scan_result(world.push_image(TAG), "ACTIVE", {"CRITICAL": 1})

    with pytest.raises(ImageVulnerableError, match=r"CRITICAL=1"):
        invoke(release_context)


def test_given_findings_below_the_threshold_when_checked_then_the_image_passes_with_its_counts(
    world: ReleaseWorld, release_context: Any
) -> None:
    world.set_scan_result(world.push_image(TAG), "COMPLETE", {"MEDIUM": 3, "LOW": 9, "INFORMATIONAL": 2})

    result = invoke(release_context)

    assert result.scan_status == "COMPLETE"
    assert result.finding_counts == {"MEDIUM": 3, "LOW": 9, "INFORMATIONAL": 2}


def test_given_threshold_low_when_a_low_finding_exists_then_image_vulnerable(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    release_setting("SCAN_SEVERITY_THRESHOLD", "LOW")
    world.set_scan_result(world.push_image(TAG), "COMPLETE", {"LOW": 1, "INFORMATIONAL": 4})

    with pytest.raises(ImageVulnerableError, match=r"LOW=1"):
        invoke(release_context)


def test_given_threshold_none_when_critical_findings_exist_then_the_image_passes(
    world: ReleaseWorld, release_context: Any, release_setting: Any
) -> None:
    release_setting("SCAN_SEVERITY_THRESHOLD", "NONE")
    world.set_scan_result(world.push_image(TAG), "COMPLETE", {"CRITICAL": 5, "HIGH": 2})

    assert invoke(release_context).finding_counts == {"CRITICAL": 5, "HIGH": 2}


def test_given_a_scan_with_motos_default_findings_when_checked_then_its_high_finding_blocks(
    world: ReleaseWorld, release_context: Any
) -> None:
    # moto 5.2.5's static answer to DescribeImageScanFindings after StartImageScan is COMPLETE with HIGH=1.
    digest = world.push_image(TAG)
    world.ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageDigest": digest})

    with pytest.raises(ImageVulnerableError, match=r"HIGH=1"):
        invoke(release_context)


def test_given_ecr_throttles_when_checked_then_aws_throttling_error_names_the_call(
    world: ReleaseWorld, release_context: Any, no_sdk_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.push_image(TAG)

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    monkeypatch.setattr(type(world.ecr_backend()), "describe_images", throttled)

    with pytest.raises(AwsThrottlingError, match=r"ecr:DescribeImages was throttled by AWS \(ThrottlingException"):
        invoke(release_context)


# --- enhanced scanning (Amazon Inspector) -------------------------------------------------------------------------


def enhanced_finding(severity: str, status: str = "ACTIVE", name: str = "CVE-2026-0001") -> dict[str, Any]:
    """An ``EnhancedImageScanFinding`` as the ECR API Reference documents it (the fields the step reads, and more)."""
    return {
        "awsAccountId": "123456789012",
        "description": f"{name} in openssl",
        "findingArn": f"arn:aws:inspector2:{REGION}:123456789012:finding/{name.lower()}",
        "packageVulnerabilityDetails": {"vulnerabilityId": name, "source": "NVD"},
        "severity": severity,
        "status": status,
        "title": f"{name} - openssl",
        "type": "PACKAGE_VULNERABILITY",
    }


def set_enhanced_result(world: ReleaseWorld, findings: list[dict[str, Any]], status: str = "ACTIVE") -> None:
    digest = world.push_image(TAG)
    world.set_scan_result(digest, status)
    world.ecr_backend().scan_finding_results[-1]["imageScanFindings"] = {"enhancedFindings": findings}


def test_given_an_enhanced_scan_with_an_active_high_finding_when_checked_then_it_blocks(
    world: ReleaseWorld, release_context: Any
) -> None:
    set_enhanced_result(world, [enhanced_finding("HIGH"), enhanced_finding("LOW", name="CVE-2026-0002")])

    with pytest.raises(ImageVulnerableError) as raised:
        invoke(release_context)

    assert "HIGH=1 (all findings: HIGH=1, LOW=1)" in raised.value.message


def test_given_an_enhanced_scan_whose_critical_finding_is_suppressed_when_checked_then_the_image_passes(
    world: ReleaseWorld, release_context: Any
) -> None:
    set_enhanced_result(
        world,
        [
            enhanced_finding("CRITICAL", status="SUPPRESSED"),
            enhanced_finding("HIGH", status="CLOSED", name="CVE-2026-0003"),
            enhanced_finding("MEDIUM", name="CVE-2026-0004"),
            enhanced_finding("UNTRIAGED", name="CVE-2026-0005"),
        ],
    )

    result = invoke(release_context)

    assert result.scan_status == "ACTIVE", "enhanced continuous scanning is done when ACTIVE"
    assert result.finding_counts == {"MEDIUM": 1, "UNTRIAGED": 1}, "suppressed and closed findings do not count"


@pytest.mark.parametrize("status", ["SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE", "UNSUPPORTED_IMAGE"])
def test_given_an_enhanced_scan_that_cannot_report_when_checked_then_scan_failed(
    world: ReleaseWorld, release_context: Any, status: str
) -> None:
    set_enhanced_result(world, [], status=status)

    with pytest.raises(ImageScanFailedError, match=status):
        invoke(release_context)


def test_given_enhanced_findings_on_several_pages_when_checked_then_every_page_is_counted(
    world: ReleaseWorld, release_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto answers one static page; ECR pages enhanced findings with nextToken: a Stubber answers the documented
    # response shape (botocore validates it against the service model) for the three pages the step asks for.
    ecr = boto3.client("ecr", region_name=REGION)
    stubber = Stubber(ecr)
    digest = "sha256:" + "a" * 64
    image_id = {"imageDigest": digest}
    base = {"registryId": "123456789012", "repositoryName": REPOSITORY, "imageId": image_id}
    status = {"status": "ACTIVE", "description": "Continuous scan is selected for image."}
    pages: list[tuple[dict[str, Any], list[dict[str, Any]], str | None]] = [
        ({"maxResults": 1}, [enhanced_finding("LOW")], "page-2"),
        ({"maxResults": 1000, "nextToken": "page-2"}, [enhanced_finding("LOW", name="CVE-2026-0009")], "page-3"),
        ({"maxResults": 1000, "nextToken": "page-3"}, [enhanced_finding("CRITICAL", name="CVE-2026-0010")], None),
    ]
    stubber.add_response(
        "describe_repositories",
        {"repositories": [{"repositoryName": REPOSITORY, "repositoryUri": f"{REGISTRY}/{REPOSITORY}"}]},
        {"repositoryNames": [REPOSITORY]},
    )
    stubber.add_response(
        "describe_images",
        {"imageDetails": [{"imageDigest": digest, "imageTags": [TAG]}]},
        {"repositoryName": REPOSITORY, "imageIds": [{"imageTag": TAG}]},
    )
    for params, findings, token in pages:
        response: dict[str, Any] = {
            **base,
            "imageScanStatus": status,
            "imageScanFindings": {"enhancedFindings": findings},
        }
        if token:
            response["nextToken"] = token
        stubber.add_response(
            "describe_image_scan_findings", response, {"repositoryName": REPOSITORY, "imageId": image_id, **params}
        )
    monkeypatch.setattr(clients, "ecr", functools.cache(lambda: ecr))  # the teardown clears it

    with stubber, pytest.raises(ImageVulnerableError) as raised:
        invoke(release_context)

    stubber.assert_no_pending_responses()
    assert "CRITICAL=1 (all findings: CRITICAL=1, LOW=2)" in raised.value.message
