"""What the handlers share: Powertools objects, the config from SSM, metrics."""

from __future__ import annotations

import os
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from ..copy import CopyReport
from ..errors import UsageError
from ..memory import limit_malloc_arenas
from ..mirror import Mirror, MirrorSettings, settings_from_env
from ..sync.config import MirrorConfig, apply_config, load_config

limit_malloc_arenas()  # at import, before any copy starts its threads

logger = Logger(service="ecr-mirror")
# The namespace is a template parameter; EcrMirror when run outside the stack.
metrics = Metrics(service="ecr-mirror",
                  namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EcrMirror"))
tracer = Tracer(service="ecr-mirror")

CONFIG_TTL_SECONDS = 300
clock = time.monotonic  # replaced in tests, to step past the cache's lifetime
_cache: dict[str, tuple[float, MirrorConfig]] = {}


def config_parameter() -> str | None:
    return os.environ.get("ECR_MIRROR_CONFIG_PARAMETER") or None


def read_config(ssm_client=None, *, fresh: bool = False) -> MirrorConfig | None:
    """The mirror config from its SSM parameter, cached for a few minutes."""
    name = config_parameter()
    if not name:
        return None
    cached = _cache.get(name)
    if cached and not fresh and clock() - cached[0] < CONFIG_TTL_SECONDS:
        return cached[1]
    import boto3

    from botocore.exceptions import BotoCoreError, ClientError

    ssm = ssm_client or boto3.client("ssm")
    try:
        text = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound as exc:
        raise UsageError(f"SSM parameter {name} (ECR_MIRROR_CONFIG_PARAMETER) does not exist; "
                         "write the mirror config into it") from exc
    except (ClientError, BotoCoreError) as exc:  # e.g. AccessDenied: an answer, not a crash
        error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
        detail = f"{error.get('Code')}: {error.get('Message', '')}" if error else str(exc)
        raise UsageError(f"cannot read the config from SSM parameter {name}: {detail}") from None
    config = load_config(text, origin=f"SSM parameter {name}")
    _cache[name] = (clock(), config)
    return config


def mirror_settings(config: MirrorConfig | None) -> MirrorSettings:
    """The settings a Mirror gets: the environment's, with the config merged in."""
    settings = settings_from_env()
    return apply_config(settings, config) if config else settings


def build_mirror(config: MirrorConfig | None) -> Mirror:
    return Mirror(mirror_settings(config))


def record_copy_metrics(report: CopyReport) -> None:
    """One report's figures as CloudWatch metrics (EMF, flushed by log_metrics)."""
    status_metric = {"copied": "ImagesCopied", "unchanged": "ImagesUnchanged",
                     "deferred": "ImagesDeferred",
                     "superseded": "ImagesSuperseded"}.get(report.status, "ImagesFailed")
    metrics.add_metric(name=status_metric, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BlobsUploaded", unit=MetricUnit.Count, value=report.blobs_uploaded)
    metrics.add_metric(name="BytesUploaded", unit=MetricUnit.Bytes, value=report.bytes_uploaded)
    metrics.add_metric(name="BlobsSkipped", unit=MetricUnit.Count, value=report.blobs_skipped)
    metrics.add_metric(name="BytesSkipped", unit=MetricUnit.Bytes, value=report.bytes_skipped)
    metrics.add_metric(name="SourcePulls", unit=MetricUnit.Count, value=report.manifests_fetched)
    remaining = (report.rate_limit or {}).get("remaining")
    if remaining is not None:
        metrics.add_metric(name="RateLimitRemaining", unit=MetricUnit.Count, value=remaining)
