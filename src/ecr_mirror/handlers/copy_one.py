"""Mirror one image from a direct event (the Lambda console, `aws lambda invoke`).

Event: `{"source": "nginx:stable", "target": "mirror/nginx:stable"}`.
`target` is optional; without it the image goes to
`{ECR_MIRROR_PREFIX}/{dockerhub|registry host}/{repository}` with the source's
tag, e.g. `mirror/dockerhub/library/nginx:stable`. `platforms` (a list such as
`["linux/amd64"]`) is optional. The answer is the copy report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..errors import MirrorError, UsageError
from ..mirror import Mirror, parse_platforms
from .common import logger, metrics, mirror_settings, read_config, record_copy_metrics, tracer

ALLOWED_KEYS = {"source", "target", "platforms"}
_mirror: Mirror | None = None


def get_mirror() -> Mirror:
    """Built on the first invocation and kept warm: tokens and connections are
    reused. Built again when the settings it was made from change (the config
    is read again from SSM once its cache expires), so a new config applies
    within minutes without a cold start."""
    global _mirror
    settings = mirror_settings(read_config())
    if _mirror is None or _mirror.settings != settings:
        _mirror = Mirror(settings)
    return _mirror


def parse_event(event: Any, allowed: set[str] = ALLOWED_KEYS) -> tuple[str, str | None, list[str]]:
    if not isinstance(event, dict):
        raise UsageError(f'the event must be a JSON object like {{"source": "nginx:stable"}}, '
                         f"got {type(event).__name__}")
    unknown = sorted(set(event) - allowed)
    if unknown:
        raise UsageError(f"unknown event field(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    source, target, platforms = event.get("source"), event.get("target"), event.get("platforms", [])
    if not isinstance(source, str) or not source:
        raise UsageError('the event needs "source", an image reference such as "nginx:stable"')
    if target is not None and (not isinstance(target, str) or not target):
        raise UsageError('"target" must be an ECR repository such as "mirror/nginx:stable", or left out')
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise UsageError('"platforms" must be a list such as ["linux/amd64", "linux/arm64"]')
    return source, target, platforms


def rejected(exc: MirrorError, what: str = "event") -> dict[str, Any]:
    """The failed report of an event or message refused before anything was sent."""
    report = {"status": "failed", "error": {"type": exc.kind, "message": str(exc),
                                            "temporary": exc.temporary}}
    logger.error(f"{what} rejected", extra={"report": report})
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
    return report


def copy_one(event: Any, mirror: Mirror | None = None, *,
             time_left: Callable[[], float] | None = None) -> dict[str, Any]:
    """Validate the event completely, then copy; a bad event touches nothing.
    `time_left` (seconds) makes the copy stop before the function's timeout."""
    try:
        source, target, platforms = parse_event(event)
        mirror = mirror or get_mirror()
        platform_set = parse_platforms(platforms)
        mirror.resolve(source, target)  # the one target check: whole string, prefix
    except UsageError as exc:
        return rejected(exc)
    logger.append_keys(image=source)
    report = mirror.copy(source, target, platforms=platform_set, time_left=time_left)
    record_copy_metrics(report)
    logger.info("copy finished", extra={"status": report.status, "digest": report.target_digest,
                                        "target": report.target})
    return report.as_dict()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    return copy_one(event)
