"""Planning in shards: the scheduler splits a large config, planners plan the parts.

`fan_out` (the scheduler, when the config is estimated above
ECR_MIRROR_PLAN_SHARD_TAGS) sends one PlanQueue message per part that
`parts_of` split the config into (the config the scheduler read once, with its
version: config_pin.read_versioned):
{"run", "shard", "shards", "entries": [indexes], "configVersion"}. The same
function takes them back from its SQS event source (`handle`, one per batch):
each plans its entries of the pinned config version with `build_plan`, takes its
share of the pull budget from the run's counter (pull_counter.py), queues its
copies, prunes its entries' repositories, and reports like the scheduler.

Nothing is planned twice: a shard claims (run, shard) in the lease table and
marks it done at the end; a redelivered done shard is a no-op. A shard fails
(retried in a minute, after MAX_RECEIVES receives the PlanDeadLetterQueue and
its alarm) when its config version cannot be read, when it cannot plan or
queue, or while any entry has a planning error; on its last receive a shard
with entry errors queues what it planned and reports them, as the scheduler
does. A failed attempt queued nothing (entry errors are checked first).
When DynamoDB cannot be used the shard is planned anyway (leases only save work).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from .. import aws, queue
from ..errors import MirrorError, UsageError
from ..mirror import Mirror
from ..pull_counter import PullCounter, apply_shared_budget
from ..sync.config import ImageEntry, MirrorConfig
from ..sync.plan import build_plan, default_target
from ..sync.shards import estimate, part, split
from . import config_pin
from .common import logger, metrics
from .planning import finish
from .warm import mirror_settings

PLAN_QUEUE_ENV = "ECR_MIRROR_PLAN_QUEUE_URL"
FIELDS = {"run", "shard", "shards", "entries", "configVersion"}
#: A finished shard is remembered longer than its message can live (4 days).
DONE_SECONDS = 5 * 86400
#: A claimed shard is someone's for the longest a Lambda function runs.
CLAIM_SECONDS = 900

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class ShardFailed(Exception):
    """The shard's message goes back to the queue (and at last to the DLQ)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def plan_queue_url() -> str | None:
    return os.environ.get(PLAN_QUEUE_ENV) or None


def fan_out(config: MirrorConfig, version: str, parts: list[list[int]], url: str) -> dict[str, Any]:
    """Queue one message per part of `config` (as `parts_of` split it), each pinning `version`."""
    run = uuid.uuid4().hex
    bodies = [json.dumps({"run": run, "shard": i, "shards": len(parts), "entries": entries,
                          "configVersion": version}) for i, entries in enumerate(parts)]
    sent, send_errors = queue.send_bodies([(f"shard {i}", body, 0) for i, body in enumerate(bodies)], url)
    errors = [e.as_dict() for e in config.errors] + send_errors
    summary = {"run": run, "shards": sent, "estimatedTags": estimate(config), "queued": 0,
               "errors": len(errors), "dryRun": False}
    for item in errors:
        logger.warning("planning error", extra={"entry": item["entry"], "error": item["message"]})
    logger.info("sync split into shards", extra=summary)
    metrics.add_metric(name="PlanShardsQueued", unit=MetricUnit.Count, value=sent)
    metrics.add_metric(name="PlanErrors", unit=MetricUnit.Count, value=len(errors))
    return {**summary, "errorDetails": errors}


def parts_of(config: MirrorConfig, mirror: Mirror, limit: int) -> list[list[int]]:
    """The entry indexes of each shard a real run would plan this config in (one part,
    not split, when it is estimated within `limit`; a dry run plans it in one place)."""
    if estimate(config) <= limit:
        return [[entry.index for entry in config.images]]
    return split(config, limit, lambda entry: target_repository(entry, config, mirror))


def target_repository(entry: ImageEntry, config: MirrorConfig, mirror: Mirror) -> str | None:
    try:  # no request: the name alone, as planning and pruning compute it
        return mirror.target_for(entry.source, entry.target or default_target(entry.source, config, mirror))[0]
    except MirrorError:
        return None


def handle(event: dict, context: Any) -> Any:
    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=processor, context=context)


def _parse(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = None
    ints = ("shard", "shards")
    if not (isinstance(body, dict) and set(body) == FIELDS and isinstance(body["run"], str)
            and all(type(body[k]) is int for k in ints) and 0 <= body["shard"] < body["shards"]
            and isinstance(body["configVersion"], str) and isinstance(body["entries"], list)
            and all(type(i) is int for i in body["entries"])):
        raise UsageError(f"not a planning shard message (fields {', '.join(sorted(FIELDS))})")
    return body


def record_handler(record: SQSRecord, lambda_context: Any = None) -> dict[str, Any]:
    table = os.environ.get("ECR_MIRROR_LEASE_TABLE") or None
    ledger = owner = None
    try:
        shard = _parse(record.body)
        key = f"plan#{shard['run']}#{shard['shard']}"
        ledger = Ledger(table, key) if table else None
        if ledger and not ledger.claim():
            logger.info("shard already planned", extra={"run": shard["run"], "shard": shard["shard"]})
            metrics.add_metric(name="PlanShardsRepeated", unit=MetricUnit.Count, value=1)
            return {"status": "already planned", "shard": shard["shard"]}
        owner = ledger
        result = _plan(shard, table, last=queue.last_receive(record.raw_event.get("attributes") or {}))
    except Exception as exc:
        if owner:
            owner.release()
        _retry_sooner(record, getattr(exc, "retry_after", None) or queue.RETRY_DELAY_SECONDS)
        logger.error("shard not planned", extra={"error": str(exc)})
        metrics.add_metric(name="PlanShardsFailed", unit=MetricUnit.Count, value=1)
        raise ShardFailed(str(exc)) from exc
    if ledger:
        ledger.done()
    metrics.add_metric(name="PlanShards", unit=MetricUnit.Count, value=1)
    return result


def _plan(shard: dict[str, Any], table: str | None, *, last: bool) -> dict[str, Any]:
    config = part(config_pin.read_at(shard["configVersion"]), shard["entries"])
    with Mirror(mirror_settings(config)) as mirror:  # its connections closed with the shard
        url = queue.queue_url()
        if not url:
            raise UsageError("ECR_MIRROR_QUEUE_URL is not set: nowhere to queue the images")
        plan = build_plan(config, mirror)
        if plan.errors and not last:  # tried again before anything is queued
            raise ShardFailed(f"{len(plan.errors)} planning error(s), first {plan.errors[0]['entry']}: "
                              f"{plan.errors[0]['message']}")
        counter = PullCounter(table, shard["run"], region=mirror.settings.region) if table else None
        result = finish(config, plan, mirror, url, dry_run=False,
                        extra={k: shard[k] for k in ("run", "shard", "shards")},
                        budget=lambda p, m, now: apply_shared_budget(p, m, now, counter, shard["shards"]))
        if result["queued"] < len(plan.jobs) and not last:
            raise ShardFailed(f"{len(plan.jobs) - result['queued']} copies not queued")
    return result


def _retry_sooner(record: SQSRecord, seconds: float) -> None:
    url = plan_queue_url()
    try:
        if url:  # never the copy queue's: a shard's message is PlanQueue's
            queue.retry_sooner(record.receipt_handle, seconds, url=url)
    except (ClientError, BotoCoreError) as exc:  # the full visibility timeout still applies
        logger.warning("could not shorten the retry delay", extra={"error": str(exc)})


class Ledger:
    """A shard's item in the lease table: claimed while planned, then done."""

    def __init__(self, table: str, key: str) -> None:
        self.table, self.key, self.owner = table, {"lease": {"S": key}}, uuid.uuid4().hex

    def _update(self, expression: str, values: dict[str, Any], condition: str | None = None) -> None:
        extra = {"ConditionExpression": condition, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"} \
            if condition else {}
        aws.client("dynamodb").update_item(
            TableName=self.table, Key=self.key, UpdateExpression=expression,
            ExpressionAttributeNames={"#o": "owner", "#s": "state"}, ExpressionAttributeValues={
                ":me": {"S": self.owner}, **{k: {"N": str(int(v))} if isinstance(v, (int, float))
                                               else {"S": v} for k, v in values.items()}}, **extra)

    def claim(self) -> bool:
        """False when the shard is done; ShardFailed while another invocation plans it."""
        now = time.time()
        try:
            self._update("SET #o = :me, #s = :running, expires = :until",
                         {":running": "running", ":done": "done", ":until": now + CLAIM_SECONDS, ":now": now},
                         "attribute_not_exists(lease) OR #o = :me OR (#s <> :done AND expires < :now)")
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                old: Any = exc.response.get("Item") or {}
                if old.get("state", {}).get("S") == "done":
                    return False
                # Looked at again when that invocation must have finished (or died).
                until = float(old.get("expires", {}).get("N", now + CLAIM_SECONDS))
                raise ShardFailed("another invocation is planning this shard",
                                  retry_after=min(max(until - now, 1), CLAIM_SECONDS)) from None
            self._unavailable(exc)
        except BotoCoreError as exc:
            self._unavailable(exc)
        return True

    def done(self) -> None:
        try:
            self._update("SET #s = :done, expires = :until", {":done": "done", ":until": time.time() + DONE_SECONDS},
                         "#o = :me")
        except (ClientError, BotoCoreError) as exc:
            self._unavailable(exc)

    def release(self) -> None:
        try:
            self._update("SET expires = :zero", {":zero": 0, ":done": "done"}, "#o = :me AND #s <> :done")
        except (ClientError, BotoCoreError) as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> None:
        logger.warning("shard ledger unavailable; planning without it",
                       extra={"table": self.table, "error": str(exc)})
