"""Lambda handler: plan a sync and queue one SQS message per image to copy.

Invoked by EventBridge Scheduler (any payload), or by hand with
`{"dryRun": true}` to see the plan without queueing anything.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..errors import UsageError
from ..sync.plan import Plan, apply_budget, build_plan
from .common import build_mirror, logger, metrics, read_config, tracer

SQS_BATCH = 10
MAX_SQS_DELAY = 900
clock = time.time  # replaced in tests, to step past a rate-limit window


def queue_jobs(plan: Plan, queue_url: str, sqs=None, now: float | None = None
               ) -> tuple[int, list[dict[str, str]]]:
    """Send the plan's jobs, ten per SendMessageBatch; return (queued, errors).

    A job held back by the pull budget is sent with the longest delay SQS
    allows (15 minutes); the worker keeps it waiting until its `notBefore`.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    sqs = sqs or boto3.client("sqs")
    now = time.time() if now is None else now
    queued, errors = 0, []
    for start in range(0, len(plan.jobs), SQS_BATCH):
        batch = plan.jobs[start:start + SQS_BATCH]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "MessageBody": json.dumps(job.message()),
                 "DelaySeconds": delay_seconds(job.not_before, now)} for i, job in enumerate(batch)])
        except (ClientError, BotoCoreError) as exc:  # e.g. AccessDenied: plan errors, not a crash
            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
            errors += [{"entry": job.source, "message": f"SQS: {code or type(exc).__name__}: {exc}"}
                       for job in batch]
            continue
        queued += len(answer.get("Successful", []))
        for failed in answer.get("Failed", []):
            job = batch[int(failed["Id"])]
            errors.append({"entry": job.source, "message": f"SQS: {failed.get('Code')}: "
                                                          f"{failed.get('Message', '')}"})
    return queued, errors


def delay_seconds(not_before: float | None, now: float) -> int:
    """SQS DelaySeconds for a start time: 0 to 900."""
    if not_before is None:
        return 0
    return int(min(MAX_SQS_DELAY, max(0, not_before - now)))


def run(event: Any) -> dict[str, Any]:
    dry_run = event.get("dryRun", False) if isinstance(event, dict) else False
    try:
        if not isinstance(dry_run, bool):
            raise UsageError(f'"dryRun" must be true or false, got {json.dumps(dry_run)[:40]}; '
                             "nothing was planned")
        config = read_config(fresh=True)
        if config is None:
            raise UsageError("ECR_MIRROR_CONFIG_PARAMETER is not set: the scheduler has no mirror config")
        queue_url = os.environ.get("ECR_MIRROR_QUEUE_URL")
        if not dry_run and not queue_url:
            raise UsageError("ECR_MIRROR_QUEUE_URL is not set: nowhere to queue the images")
        mirror = build_mirror(config)
    except UsageError as exc:
        logger.error("cannot plan", extra={"error": str(exc)})
        metrics.add_metric(name="PlanErrors", unit=MetricUnit.Count, value=1)
        return {"planned": 0, "unchanged": 0, "queued": 0, "errors": 1, "dryRun": dry_run is True,
                "errorDetails": [{"entry": "config", "message": str(exc)}]}
    plan = build_plan(config, mirror)
    now = clock()
    apply_budget(plan, mirror, now)
    queued, send_errors = (0, []) if dry_run else queue_jobs(plan, queue_url, now=now)
    errors = plan.errors + send_errors
    summary = {**plan.summary(), "queued": queued, "errors": len(errors), "dryRun": dry_run}
    headroom = {r: b.headroom() for r, b in mirror.pull_budgets().items() if b.headroom() is not None}
    if headroom:
        summary["pullHeadroom"] = headroom  # pulls left above the reserve, per registry
    for item in errors:
        logger.warning("planning error", extra={"entry": item["entry"], "error": item["message"]})
    logger.info("sync planned", extra=summary)
    metrics.add_metric(name="ImagesPlanned", unit=MetricUnit.Count, value=plan.planned)
    metrics.add_metric(name="ImagesUnchanged", unit=MetricUnit.Count, value=len(plan.unchanged))
    metrics.add_metric(name="ImagesQueued", unit=MetricUnit.Count, value=queued)
    metrics.add_metric(name="PlanErrors", unit=MetricUnit.Count, value=len(errors))
    metrics.add_metric(name="ImagesDeferred", unit=MetricUnit.Count, value=plan.deferred)
    metrics.add_metric(name="SourcePulls", unit=MetricUnit.Count,
                       value=plan.source_requests.get("manifest_get", 0))
    rate = min((s.rate_limit.remaining for s in mirror.source_request_stats()
                if s.rate_limit and s.rate_limit.remaining is not None), default=None)
    if rate is not None:
        metrics.add_metric(name="RateLimitRemaining", unit=MetricUnit.Count, value=rate)
    result = {**summary, "errorDetails": errors}
    if dry_run:
        result["jobs"] = [job.message() for job in plan.jobs]
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    return run(event)
