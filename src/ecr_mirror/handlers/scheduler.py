"""Lambda handler: plan a sync and queue one SQS message per image to copy.

Invoked by EventBridge Scheduler (any payload), or by hand with
`{"dryRun": true}` to see the plan without queueing anything. A config estimated
above ECR_MIRROR_PLAN_SHARD_TAGS tags is split into planning shards sent to
PlanQueue, whose messages come back to this function (handlers/shards.py).
The config is read once a run, with its version (handlers/config_pin.py): the
one read builds the Mirror, decides and makes the split, and is what shards pin.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from .. import queue
from ..errors import SetupError, UsageError
from ..mirror import Mirror
from ..settings import plan_shard_tags
from ..sync.plan import apply_budget, build_plan
from . import config_pin, shards
from .common import logger, metrics, tracer
from .planning import finish
from .warm import mirror_settings


def _failed(dry_run: Any, exc: UsageError) -> dict[str, Any]:
    logger.error("cannot plan", extra={"error": str(exc)})
    metrics.add_metric(name="PlanErrors", unit=MetricUnit.Count, value=1)
    return {"planned": 0, "unchanged": 0, "pinned": 0, "toCopy": 0, "deferred": 0, "queued": 0, "errors": 1,
            "dryRun": dry_run is True,
            "errorDetails": [{"entry": "config", "message": str(exc)}]}


def run(event: Any) -> dict[str, Any]:
    with contextlib.ExitStack() as closing:  # the invocation's Mirror: its connections closed at the end
        return _run(event, closing)


def _run(event: Any, closing: contextlib.ExitStack) -> dict[str, Any]:
    dry_run = event.get("dryRun", False) if isinstance(event, dict) else False
    try:
        if not isinstance(dry_run, bool):
            raise UsageError(f'"dryRun" must be true or false, got {json.dumps(dry_run)[:40]}; '
                             "nothing was planned")
        read = config_pin.read_versioned()  # once a run: what decides, builds, is split and pinned
        if read is None:
            raise UsageError("ECR_MIRROR_CONFIG_PARAMETER is not set: the scheduler has no mirror config")
        config, version = read
        url = queue.queue_url()
        if not dry_run and not url:
            raise UsageError("ECR_MIRROR_QUEUE_URL is not set: nowhere to queue the images")
        mirror = closing.enter_context(Mirror(mirror_settings(config)))
        limit = plan_shard_tags()
        # A large config is planned in shards (handlers/shards.py); a dry run plans it
        # here, as one, and says how many shards a real run would take.
        parts = shards.parts_of(config, mirror, limit)  # split once: these parts are the ones sent
        plan_url = shards.plan_queue_url()
        if len(parts) > 1 and not dry_run:
            if plan_url:
                return shards.fan_out(config, version, parts, plan_url)
            logger.warning("config above ECR_MIRROR_PLAN_SHARD_TAGS but ECR_MIRROR_PLAN_QUEUE_URL "
                           "is not set: planned here, in one invocation", extra={"shards": len(parts)})
    except UsageError as exc:
        return _failed(dry_run, exc)
    try:
        plan = build_plan(config, mirror)
    except SetupError as exc:  # no AWS credentials: said once, not per image
        return _failed(dry_run, exc)
    # A dry run: the shards a real run would take; a real run here: one.
    return finish(config, plan, mirror, url, dry_run=dry_run, budget=apply_budget,
                  extra={"shards": len(parts) if dry_run else 1})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> Any:
    if isinstance(event, dict) and queue.is_sqs_batch(event.get("Records")):
        return shards.handle(event, context)  # a planning shard, from PlanQueue
    return run(event)
