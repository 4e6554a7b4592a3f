"""Check migration image: the tag exists in ECR, resolves to a digest, and its scan passes the severity threshold.

The output pins the image by digest (``<registry>/<repository>@sha256:...``): what was checked is what runs, even
if the tag is pushed again mid-release. A dry run performs the same checks (they change nothing).

Both ECR scan types are read through DescribeImageScanFindings. Basic scanning ends ``COMPLETE`` with
``findingSeverityCounts``. Enhanced scanning (Amazon Inspector) reports ``ACTIVE`` while it keeps the image under
continuous scanning, and its findings are ``enhancedFindings`` (each with a ``severity`` and a ``status`` of
ACTIVE, SUPPRESSED or CLOSED), paged with ``nextToken``; ECR reads them from Inspector with the caller's
``inspector2:ListFindings`` permission (ECR API Reference: DescribeImageScanFindings, ImageScanStatus,
EnhancedImageScanFinding; ECR user guide: "IAM permissions required for enhanced scanning"). Only ACTIVE findings
count; Inspector's ``UNTRIAGED`` severity (none assigned yet) is reported and never blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from release_steps import clients, config
from release_steps.aws_errors import error_code, error_message, translate_throttling
from release_steps.config import ImageSettings
from release_steps.errors import (
    ConfigurationError,
    ImageNotFoundError,
    ImageScanFailedError,
    ImageScanPendingError,
    ImageVulnerableError,
)
from release_steps.models import ImageResult, ReleaseRequest, ReleaseState
from release_steps.observability import logger, parse_event, step

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import DescribeImageScanFindingsResponseTypeDef, ImageIdentifierTypeDef

STEP_NAME = "Check migration image"

# Lowest to highest; a threshold blocks its own level and every level above it.
SEVERITY_ORDER = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SCAN_DONE = frozenset({"COMPLETE", "ACTIVE"})  # ACTIVE: enhanced (Inspector) continuous scanning, findings current
SCAN_PENDING = frozenset({"IN_PROGRESS", "PENDING"})
NOT_SCANNED = "NOT_SCANNED"
ENHANCED_PAGE_SIZE = 1000  # DescribeImageScanFindings' maximum
MAX_ENHANCED_PAGES = 50  # 50,000 findings: a bound on the step's time, far above any real image


def _repository_uri(ecr: ECRClient, repository: str) -> str:
    with translate_throttling("ecr:DescribeRepositories"):
        try:
            response = ecr.describe_repositories(repositoryNames=[repository])
        except ClientError as e:
            if error_code(e) == "RepositoryNotFoundException":
                # The repository comes from the stack, not from the operator: a configuration problem.
                raise ConfigurationError(
                    f"ECR repository {repository!r} (ECR_REPOSITORY_NAME) does not exist: {error_message(e)}"
                ) from e
            raise
    return str(response["repositories"][0]["repositoryUri"])


def _image_digest(ecr: ECRClient, repository: str, tag: str) -> str:
    with translate_throttling("ecr:DescribeImages"):
        try:
            response = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except ClientError as e:
            if error_code(e) == "ImageNotFoundException":
                raise ImageNotFoundError(
                    f"image tag {tag!r} not found in ECR repository {repository!r}: push it first or fix imageTag"
                ) from e
            raise
    details = response.get("imageDetails") or []
    if not details:
        raise ImageNotFoundError(f"image tag {tag!r} not found in ECR repository {repository!r}")
    return str(details[0]["imageDigest"])


def _findings_page(
    ecr: ECRClient, repository: str, digest: str, max_results: int, next_token: str | None = None
) -> DescribeImageScanFindingsResponseTypeDef:
    with translate_throttling("ecr:DescribeImageScanFindings"):
        try:
            image_id: ImageIdentifierTypeDef = {"imageDigest": digest}
            if next_token:
                response = ecr.describe_image_scan_findings(
                    repositoryName=repository, imageId=image_id, maxResults=max_results, nextToken=next_token
                )
            else:
                response = ecr.describe_image_scan_findings(
                    repositoryName=repository, imageId=image_id, maxResults=max_results
                )
        except ClientError as e:
            if error_code(e) == "AccessDeniedException":
                raise ConfigurationError(
                    f"ECR refused the scan findings of {repository}@{digest}: {error_message(e)} (with enhanced "
                    "scanning the function also needs inspector2:ListFindings)"
                ) from e
            raise
    return response


def _enhanced_counts(
    ecr: ECRClient, repository: str, digest: str, first: DescribeImageScanFindingsResponseTypeDef
) -> dict[str, int]:
    """Severity counts of the ACTIVE enhanced (Inspector) findings, over every page."""
    counts: dict[str, int] = {}
    response = first
    for _page in range(MAX_ENHANCED_PAGES):
        for finding in (response.get("imageScanFindings") or {}).get("enhancedFindings") or []:
            if str(finding.get("status") or "ACTIVE") != "ACTIVE":
                continue  # suppressed by an Inspector rule, or closed
            severity = str(finding.get("severity") or "UNTRIAGED")
            counts[severity] = counts.get(severity, 0) + 1
        token = response.get("nextToken")
        if not token:
            return counts
        response = _findings_page(ecr, repository, digest, ENHANCED_PAGE_SIZE, next_token=token)
    raise ImageScanFailedError(
        f"image {repository}@{digest} has more than {MAX_ENHANCED_PAGES * ENHANCED_PAGE_SIZE} enhanced scan findings"
    )


def _scan(ecr: ECRClient, repository: str, tag: str, digest: str, require_scan: bool) -> tuple[str, dict[str, int]]:
    """The scan status and severity counts; raises the pending / failed errors."""
    where = f"{repository}:{tag} ({digest})"
    with translate_throttling("ecr:DescribeImageScanFindings"):
        try:
            response = _findings_page(ecr, repository, digest, 1)
        except ClientError as e:
            if error_code(e) != "ScanNotFoundException":
                raise
            if require_scan:
                raise ImageScanFailedError(
                    f"image {where} has no scan and REQUIRE_IMAGE_SCAN is on: turn on scan-on-push for the "
                    f"repository or run `aws ecr start-image-scan --repository-name {repository} "
                    f"--image-id imageDigest={digest}`"
                ) from e
            return NOT_SCANNED, {}
    scan_status = response.get("imageScanStatus") or {}
    status = str(scan_status.get("status") or "UNKNOWN")
    description = " ".join(str(scan_status.get("description") or "").split())
    if status in SCAN_PENDING:
        raise ImageScanPendingError(f"scan of image {where} is {status}; the check is retried until it finishes")
    if status not in SCAN_DONE:
        detail = f": {description}" if description else ""
        raise ImageScanFailedError(f"scan of image {where} ended with status {status}{detail}")
    findings = response.get("imageScanFindings") or {}
    counts = {str(k): int(v) for k, v in (findings.get("findingSeverityCounts") or {}).items()}
    if "enhancedFindings" in findings:
        # Enhanced scanning lists each finding with its status: the ACTIVE ones decide (a suppressed one does not).
        counts = _enhanced_counts(ecr, repository, digest, response)
    return status, counts


def blocking_findings(counts: dict[str, int], threshold: str) -> dict[str, int]:
    """The finding counts at or above the threshold (``NONE``: never any)."""
    if threshold not in SEVERITY_ORDER:
        return {}
    blocking_levels = SEVERITY_ORDER[SEVERITY_ORDER.index(threshold) :]
    return {level: counts[level] for level in reversed(blocking_levels) if counts.get(level, 0) > 0}


def check_image(request: ReleaseRequest, settings: ImageSettings, ecr: ECRClient) -> ImageResult:
    """Resolve the tag to a digest-pinned image URI and enforce the scan policy."""
    repository = settings.repository_name
    tag = request.image_tag
    repository_uri = _repository_uri(ecr, repository)
    digest = _image_digest(ecr, repository, tag)
    registry = repository_uri.split("/", 1)[0]
    image_uri = f"{registry}/{repository}@{digest}"

    status, counts = _scan(ecr, repository, tag, digest, settings.require_scan)
    blocking = blocking_findings(counts, settings.scan_severity_threshold)
    if blocking:
        listed = ", ".join(f"{level}={count}" for level, count in blocking.items())
        everything = ", ".join(f"{level}={count}" for level, count in sorted(counts.items()))
        raise ImageVulnerableError(
            f"image {repository}:{tag} ({digest}) has findings at or above {settings.scan_severity_threshold} "
            f"(SCAN_SEVERITY_THRESHOLD): {listed} (all findings: {everything})"
        )
    logger.info("image checked", extra={"image_uri": image_uri, "scan_status": status, "finding_counts": counts})
    return ImageResult(
        repository=repository, tag=tag, digest=digest, image_uri=image_uri, scan_status=status, finding_counts=counts
    )


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Check migration image."""
    state = parse_event(ReleaseState, event)
    return check_image(state.request, config.image_settings(), clients.ecr()).to_json()
