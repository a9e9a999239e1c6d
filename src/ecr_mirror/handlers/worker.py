"""Lambda handler: copy the images the scheduler queued (SQS), one per message.

Failed messages are reported with `ReportBatchItemFailures`, so the others in
the batch are not retried. An image that cannot finish in the time left is
stopped before its tag moves and handed back to the queue for a retry. The
same function takes the direct one-image event of `copy_one` (console tests).
"""

from __future__ import annotations

import json
import os
from typing import Any

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
MESSAGE_KEYS = {"source", "target", "platforms", "sourceDigest"}
#: Seconds before a handed-back message is visible again.
RETRY_DELAY_SECONDS = 60
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


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, Any]:
    try:
        body = json.loads(record.body)
        source, target, platforms = one.parse_event(body, MESSAGE_KEYS)
        platform_set = parse_platforms(platforms)
    except (ValueError, UsageError) as exc:
        raise ImageNotCopied(f"malformed message {record.message_id}: {exc}") from exc
    mirror = one.get_mirror()
    if _context is not None:
        mirror.settings.time_left = lambda: _context.get_remaining_time_in_millis() / 1000
    logger.append_keys(image=source, digest=body.get("sourceDigest"))
    report = mirror.copy(source, target, platforms=platform_set)
    record_copy_metrics(report)
    logger.info("copy finished", extra={"status": report.status, "target": report.target,
                                        "target_digest": report.target_digest})
    if not report.ok:
        error = report.error or {}
        if error.get("temporary"):
            _retry_sooner(record, RETRY_DELAY_SECONDS)
        raise ImageNotCopied(f"{source}: {error.get('type')}: {error.get('message')}")
    return report.as_dict()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    global _context
    _context = context
    if isinstance(event, dict) and "Records" in event:
        return process_partial_response(event=event, record_handler=record_handler,
                                        processor=processor, context=context)
    mirror = one.get_mirror()
    mirror.settings.time_left = lambda: context.get_remaining_time_in_millis() / 1000
    return one.copy_one(event, mirror)
