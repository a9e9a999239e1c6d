"""What the handlers share: Powertools objects, the config (SSM or S3), metrics."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from .. import aws, events
from ..copy import CopyReport
from ..copy.options import ReferrerPolicy
from ..errors import CosignKeyError, UsageError
from ..keys import load_keys
from ..manifest import Platform
from ..memory import limit_malloc_arenas
from ..mirror import Mirror
from ..sync.config import MirrorConfig, load_config
from . import config_s3

limit_malloc_arenas()  # at import, before any copy starts its threads

logger = Logger(service="ecr-mirror")
# The namespace is a template parameter; EcrMirror when run outside the stack.
metrics = Metrics(service="ecr-mirror",
                  namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EcrMirror"))
tracer = Tracer(service="ecr-mirror")

#: A changed config reaches a warm function within this many seconds.
CONFIG_TTL_SECONDS = 300
_cache: dict[Any, SSMProvider] = {}  # SSM client -> its provider (with its cache)
STATUS_METRICS = {"copied": "ImagesCopied", "unchanged": "ImagesUnchanged",
                  "deferred": "ImagesDeferred", "superseded": "ImagesSuperseded",
                  "rejected": "ImagesRejected"}


def read_config(*, fresh: bool = False) -> MirrorConfig | None:
    """The mirror config from its S3 object (ECR_MIRROR_CONFIG_OBJECT) or else its
    SSM parameter (ECR_MIRROR_CONFIG_PARAMETER), cached for CONFIG_TTL_SECONDS;
    `fresh` reads it again. (The scheduler reads it with its version instead:
    config_pin.read_versioned.)"""
    url = os.environ.get(config_s3.ENV)
    if url:
        return _parsed(config_s3.read(url, max_age=CONFIG_TTL_SECONDS, fresh=fresh), url)
    name = os.environ.get("ECR_MIRROR_CONFIG_PARAMETER")
    if not name:
        return None
    ssm = aws.client("ssm")
    provider = _cache.setdefault(ssm, SSMProvider(boto3_client=ssm))
    try:
        text = provider.get(name, max_age=CONFIG_TTL_SECONDS, decrypt=True, force_fetch=fresh)
    except GetParameterError as exc:  # wraps the SDK's error (AccessDenied...): an answer
        raise ssm_refusal(name, exc.__context__ or exc) from None
    return _parsed(str(text), f"SSM parameter {name}")


def ssm_refusal(name: str, cause: BaseException) -> UsageError:
    """Why the config parameter `name` could not be read, in words a user can act on."""
    code = aws.error_code(cause) if isinstance(cause, ClientError) else ""
    if code == "ParameterNotFound":
        return UsageError(f"SSM parameter {name} (ECR_MIRROR_CONFIG_PARAMETER) does not exist; "
                          "write the mirror config into it")
    detail = f"{code}: {aws.error_message(cause)}" if code else str(cause)
    return UsageError(f"cannot read the config from SSM parameter {name}: {detail}")


_parsed = functools.lru_cache(maxsize=4)(lambda text, origin: load_config(text, origin=origin))


def copy_with(mirror: Mirror, source: str, target: str | None, *, platforms: tuple[Platform, ...],
              referrers: ReferrerPolicy | None, verify: tuple[str, ...],
              time_left: Callable[[], float] | None, hand_back: bool = False) -> CopyReport:
    """Copy with the event's or message's options: the gate's keys are read here
    (SSM, Secrets Manager; cached), a key that cannot be read fails the copy."""
    try:
        policy = load_keys(verify, region=mirror.settings.region) if verify else None
    except CosignKeyError as exc:  # nothing copied: the gate cannot be checked
        ref, repository, tag, _ = mirror.resolve(source, target)
        report = CopyReport(source=str(ref), target=repository + (f":{tag}" if tag else ""))
        report.stopped_by(exc)
        return report
    return mirror.copy(source, target, platforms=platforms, time_left=time_left,
                       referrers=referrers, verify=policy, hand_back=hand_back)


def record_copy_metrics(report: CopyReport) -> None:
    """One report's figures as CloudWatch metrics (EMF, flushed by log_metrics)."""
    metrics.add_metric(name=STATUS_METRICS.get(report.status.value, "ImagesFailed"),
                       unit=MetricUnit.Count, value=1)
    for name, unit, value in (
            ("BlobsUploaded", MetricUnit.Count, report.blobs_uploaded),
            ("BytesUploaded", MetricUnit.Bytes, report.bytes_uploaded),
            ("BlobsSkipped", MetricUnit.Count, report.blobs_skipped),
            ("BytesSkipped", MetricUnit.Bytes, report.bytes_skipped),
            ("BlobsMounted", MetricUnit.Count, report.blobs_mounted),
            ("BytesMounted", MetricUnit.Bytes, report.bytes_mounted),
            ("SourcePulls", MetricUnit.Count, report.manifests_fetched),
            ("RateLimitRemaining", MetricUnit.Count, (report.rate_limit or {}).get("remaining"))):
        if value is not None:
            metrics.add_metric(name=name, unit=unit, value=value)


def announce(report: CopyReport, mirror: Mirror, *, final: bool) -> None:
    """The report's EventBridge event (events.py) on the function's bus, counted
    as EventsSent / EventsFailed; an event that cannot be sent fails nothing."""
    outcome = events.announce([(report, final)], mirror.settings.event_bus, mirror.settings.region)
    for name, value in (("EventsSent", outcome.sent), ("EventsFailed", outcome.failed)):
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
