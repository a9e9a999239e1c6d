"""After a plan: queue its copies, prune, log the summary, emit the metrics.

What the scheduler does with its plan, and each planning shard with its own
(handlers/shards.py); `budget` is how the pull budget holds jobs back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from .. import queue
from ..mirror import Mirror
from ..sync.config import MirrorConfig
from ..sync.plan import Plan
from ..sync.prune import prune, wanted
from .common import logger, metrics


def finish(config: MirrorConfig, plan: Plan, mirror: Mirror, url: str | None, *, dry_run: bool,
           budget: Callable[[Plan, Mirror, float], None], extra: dict[str, Any]) -> dict[str, Any]:
    now = queue.clock()
    budget(plan, mirror, now)
    queued, send_errors = (0, []) if dry_run or not url else queue.send_batch(
        [job.message() for job in plan.jobs], url, now=now)
    pruning = prune(config, plan, mirror, dry_run=dry_run)
    errors = plan.errors + send_errors + pruning.errors
    summary = {**plan.summary(), "queued": queued, "errors": len(errors), "dryRun": dry_run, **extra}
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
