"""Lambda handler: plan a sync and queue one SQS message per image to copy.

Invoked by EventBridge Scheduler (any payload), or by hand with
`{"dryRun": true}` to see the plan without queueing anything.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from .. import queue
from ..errors import SetupError, UsageError
from ..mirror import Mirror
from ..sync.plan import apply_budget, build_plan
from ..sync.prune import prune, wanted
from .common import logger, metrics, read_config, tracer
from .warm import mirror_settings


def _failed(dry_run: Any, exc: UsageError) -> dict[str, Any]:
    logger.error("cannot plan", extra={"error": str(exc)})
    metrics.add_metric(name="PlanErrors", unit=MetricUnit.Count, value=1)
    return {"planned": 0, "unchanged": 0, "pinned": 0, "toCopy": 0, "deferred": 0, "queued": 0, "errors": 1,
            "dryRun": dry_run is True,
            "errorDetails": [{"entry": "config", "message": str(exc)}]}


def run(event: Any) -> dict[str, Any]:
    dry_run = event.get("dryRun", False) if isinstance(event, dict) else False
    try:
        if not isinstance(dry_run, bool):
            raise UsageError(f'"dryRun" must be true or false, got {json.dumps(dry_run)[:40]}; '
                             "nothing was planned")
        config = read_config(fresh=True)
        if config is None:
            raise UsageError("ECR_MIRROR_CONFIG_PARAMETER is not set: the scheduler has no mirror config")
        url = queue.queue_url()
        if not dry_run and not url:
            raise UsageError("ECR_MIRROR_QUEUE_URL is not set: nowhere to queue the images")
        mirror = Mirror(mirror_settings(config))
    except UsageError as exc:
        return _failed(dry_run, exc)
    try:
        plan = build_plan(config, mirror)
    except SetupError as exc:  # no AWS credentials: said once, not per image
        return _failed(dry_run, exc)
    now = queue.clock()
    apply_budget(plan, mirror, now)
    queued, send_errors = (0, []) if dry_run or not url else queue.send_batch(
        [job.message() for job in plan.jobs], url, now=now)
    pruning = prune(config, plan, mirror, dry_run=dry_run)
    errors = plan.errors + send_errors + pruning.errors
    summary = {**plan.summary(), "queued": queued, "errors": len(errors), "dryRun": dry_run}
    headroom = {r: b.headroom() for r, b in mirror.pull_budgets().items() if b.headroom() is not None}
    if headroom:
        summary["pullHeadroom"] = headroom  # pulls left above the reserve, per registry
    for item in errors:
        logger.warning("planning error", extra={"entry": item["entry"], "error": item["message"]})
    logger.info("sync planned", extra=summary)
    rate = min((s.rate_limit.remaining for s in mirror.source_request_stats()
                if s.rate_limit and s.rate_limit.remaining is not None), default=None)
    for name, value in (("ImagesPlanned", plan.planned), ("ImagesUnchanged", len(plan.unchanged)),
                        ("ImagesPinned", len(plan.pinned)),
                        ("ImagesQueued", queued), ("PlanErrors", len(errors)),
                        ("ImagesDeferred", plan.deferred),
                        ("SourcePulls", plan.source_requests.get("manifest_get", 0)),
                        ("RateLimitRemaining", rate),
                        ("TagsPrunable" if dry_run else "TagsPruned", len(pruning.pruned))):
        if value is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    result = {**summary, "errorDetails": errors}
    if wanted(config):
        result.update(pruning.as_dict())
    if dry_run:
        result["jobs"] = [job.message().body() for job in plan.jobs]
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    return run(event)
