"""Mirror one image from a direct event (the Lambda console, `aws lambda invoke`).

Event: `{"source": "nginx:stable", "target": "mirror/nginx:stable"}`.
`target` is optional; without it the image goes to
`{ECR_MIRROR_PREFIX}/{dockerhub|registry host}/{repository}` with the source's
tag, e.g. `mirror/dockerhub/library/nginx:stable`. `platforms` (a list such as
`["linux/amd64"]`), `referrers` and `verify` (as the config spells them:
`true`, `{"cosignKey": "ssm:/ecr-mirror/cosign.pub"}`) are optional. The
answer is the copy report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..errors import MirrorError, UsageError
from ..mirror import Mirror, parse_platforms
from ..policies import image_options
from ..queue import parse_image
from .common import announce, copy_with, logger, metrics, record_copy_metrics, tracer
from .warm import get_mirror

ALLOWED_KEYS = {"source", "target", "platforms", "referrers", "verify"}


def time_left(context: Any) -> Callable[[], float] | None:
    """This invocation's remaining seconds, as a callable (None outside Lambda)."""
    if context is None:
        return None
    return lambda: context.get_remaining_time_in_millis() / 1000


def rejected(exc: MirrorError, what: str = "event") -> dict[str, Any]:
    """The failed report of an event or message refused before anything was sent."""
    report = {"status": "failed", "error": {"type": exc.kind, "message": str(exc),
                                            "temporary": exc.temporary}}
    logger.error(f"{what} rejected", extra={"report": report})
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
    return report


def copy_one(event: Any, context: Any = None, mirror: Mirror | None = None) -> dict[str, Any]:
    """Validate the event completely, then copy; a bad event touches nothing. The
    context's remaining time makes the copy stop before the function's timeout."""
    try:
        source, target, platforms = parse_image(event, ALLOWED_KEYS)
        referrers, verify = image_options(event)
        mirror = mirror or get_mirror()
        platform_set = parse_platforms(platforms)
        mirror.resolve(source, target)  # the one target check: whole string, prefix
    except UsageError as exc:
        return rejected(exc)
    logger.append_keys(image=source)
    report = copy_with(mirror, source, target, platforms=platform_set, referrers=referrers,
                       verify=verify, time_left=time_left(context))
    record_copy_metrics(report)
    announce(report, mirror, final=True)  # a direct invocation is not tried again
    logger.info("copy finished", extra={"status": report.status.value, "digest": report.target_digest,
                                        "target": report.target, "rejected": report.rejected_reason})
    return report.as_dict()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    return copy_one(event, context)
