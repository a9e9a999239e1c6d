"""Lambda handler: copy the images the scheduler queued (SQS), one per message.

Failed messages are reported with `ReportBatchItemFailures`, so the others in
the batch are not retried. An image that cannot finish in the time left is
stopped before its tag moves and handed back to the queue for a retry. The
same function takes the direct one-image event of `copy_one` (console tests).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (BatchProcessor, EventType,
                                                   process_partial_response)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..errors import UsageError
from ..mirror import parse_platforms
from . import copy_one as one
from .common import logger, metrics, record_copy_metrics, tracer

# Report failures item by item, also when the whole batch failed (one image a
# batch is the norm): a failed image is not a failed invocation.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
MESSAGE_KEYS = {"source", "target", "platforms", "sourceDigest", "notBefore", "timeouts"}
#: An image stopped this many times for lack of time fails normally (towards
#: the DLQ): each try keeps the blobs it finished, so only a blob too big for
#: one invocation gets here.
MAX_TIMEOUTS = 10
#: Seconds before a handed-back message is visible again.
RETRY_DELAY_SECONDS = 60
MAX_SQS_DELAY = 900
clock = time.time  # replaced in tests, to step past a rate-limit window
_context: Any = None


class ImageNotCopied(Exception):
    """Raised for a message whose image failed, so the batch reports it."""


def _retry_sooner(record: SQSRecord, seconds: float) -> None:
    """Make a failed message visible again after `seconds` instead of the full
    visibility timeout (six times the function timeout)."""
    queue_url = os.environ.get("ECR_MIRROR_QUEUE_URL")
    if not queue_url:
        return
    import boto3

    try:
        boto3.client("sqs").change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=int(min(max(seconds, 0), 43_200)))
    except Exception as exc:  # the full visibility timeout still applies
        logger.warning("could not shorten the retry delay", extra={"error": str(exc)})


def _defer(body: dict[str, Any], not_before: float, why: str) -> dict[str, Any]:
    """Put the image back on the queue to start at `not_before`.

    A new message, delayed as long as SQS allows; the current one then counts
    as processed. So a deferral never adds to the receive count that sends a
    message to the DLQ: the rate limit alone never dead-letters an image.
    """
    queue_url = os.environ.get("ECR_MIRROR_QUEUE_URL")
    if not queue_url:
        raise ImageNotCopied(f"{body.get('source')}: deferred ({why}) but ECR_MIRROR_QUEUE_URL "
                             "is not set; left for the queue's own retry")
    import boto3

    delay = int(min(MAX_SQS_DELAY, max(0, not_before - clock())))
    boto3.client("sqs").send_message(QueueUrl=queue_url, DelaySeconds=delay,
                                     MessageBody=json.dumps({**body, "notBefore": not_before}))
    logger.info("image deferred", extra={"why": why, "not_before": not_before, "delay": delay})
    metrics.add_metric(name="ImagesDeferred", unit=MetricUnit.Count, value=1)
    return {"status": "deferred", "source": body.get("source"), "notBefore": not_before}


def _time_left(context: Any):
    """This invocation's remaining seconds, as a callable (None outside Lambda)."""
    if context is None:
        return None
    return lambda: context.get_remaining_time_in_millis() / 1000


def parse_message(text: str) -> tuple[dict[str, Any], tuple[str, str | None, list[str]], float]:
    """(body, (source, target, platforms), notBefore) of a queued message; UsageError if malformed."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"the message body is not JSON ({type(exc).__name__}); the scheduler "
                         'sends {"source": ..., "target": ...}') from exc
    parsed = one.parse_event(body, MESSAGE_KEYS)
    not_before, timeouts = body.get("notBefore"), body.get("timeouts", 0)
    if not_before is not None and (isinstance(not_before, bool) or not isinstance(not_before, (int, float))
                                   or not math.isfinite(not_before)):
        raise UsageError(f'"notBefore" must be a time in epoch seconds, got {json.dumps(not_before)}')
    if isinstance(timeouts, bool) or not isinstance(timeouts, int) or timeouts < 0:
        raise UsageError(f'"timeouts" must be a whole number of at least 0, got {json.dumps(timeouts)}')
    return body, parsed, float(not_before or 0)


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, Any]:
    try:
        body, (source, target, platforms), not_before = parse_message(record.body)
        platform_set = parse_platforms(platforms)
        mirror = one.get_mirror()
        mirror.resolve(source, target)  # the one target check, before any request or deferral
    except UsageError as exc:
        one.rejected(exc, what=f"message {record.message_id}")
        _retry_sooner(record, RETRY_DELAY_SECONDS)  # permanent: on to the DLQ and its alarm
        raise ImageNotCopied(f"message {record.message_id} rejected: {exc}") from exc
    if not_before > clock():
        return _defer(body, not_before, "waiting for the pull budget to reset")
    logger.append_keys(image=source, digest=body.get("sourceDigest"))
    report = mirror.copy(source, target, platforms=platform_set, time_left=_time_left(_context))
    record_copy_metrics(report)
    logger.info("copy finished", extra={"status": report.status, "target": report.target,
                                        "target_digest": report.target_digest})
    if report.status == "deferred":
        error = report.error or {}
        if error.get("type") == "Deferred":  # out of time, not out of budget
            body = {**body, "timeouts": int(body.get("timeouts") or 0) + 1}
            if body["timeouts"] > MAX_TIMEOUTS:
                raise ImageNotCopied(f"{source}: stopped for lack of time {MAX_TIMEOUTS} times; "
                                     "a single blob may be too large for one invocation")
        wait = error.get("retry_after") or RETRY_DELAY_SECONDS
        return _defer(body, clock() + wait, error.get("message", ""))
    if not report.ok:
        error = report.error or {}
        # Back on the queue in a minute, not after the 90-minute visibility
        # timeout: a temporary failure gets its retries soon, a permanent one
        # reaches the DLQ (and its alarm) after 3 receives within minutes.
        _retry_sooner(record, RETRY_DELAY_SECONDS)
        raise ImageNotCopied(f"{source}: {error.get('type')}: {error.get('message')}")
    return report.as_dict()


def _is_sqs_batch(records: Any) -> bool:
    keys = ("messageId", "receiptHandle", "body")
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and all(isinstance(r.get(k), str) for k in keys) for r in records)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    global _context
    _context = context
    if isinstance(event, dict) and "Records" in event:
        if not _is_sqs_batch(event["Records"]):
            return one.rejected(UsageError(
                '"Records" must be a non-empty list of SQS messages (each with messageId, '
                'receiptHandle and body); for one image send {"source": "nginx:stable"}'))
        return process_partial_response(event=event, record_handler=record_handler,
                                        processor=processor, context=context)
    try:
        mirror = one.get_mirror()
    except UsageError as exc:  # the config cannot be read: a failed report, not a crash
        return one.rejected(exc)
    return one.copy_one(event, mirror, time_left=_time_left(context))
