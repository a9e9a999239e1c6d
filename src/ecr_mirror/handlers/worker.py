"""Lambda handler: copy the images the scheduler queued (SQS), one per message.

Failures are reported with `ReportBatchItemFailures`, a deferred image goes back to
the queue (`queue.requeue`); `copy_one`'s direct event is taken too (console tests).
An image the signature gate rejected is final: the message is deleted (another
try would find the same signatures), the ImagesRejected metric and its alarm say so.
Each report is announced on ECR_MIRROR_EVENT_BUS (events.py); a failure counts as
final ("Image Failed") on the message's last receive before the DLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from .. import queue
from ..copy.report import REJECTED
from ..errors import UsageError
from ..mirror import parse_platforms
from .common import announce, copy_with, logger, metrics, record_copy_metrics, tracer
from .copy_one import copy_one, rejected, time_left
from .warm import get_mirror

# Failures item by item, also of a whole batch: a failed image is not a failed invocation.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _retry_sooner(record: SQSRecord) -> None:
    try:
        queue.retry_sooner(record.receipt_handle)
    except Exception as exc:  # the full visibility timeout still applies
        logger.warning("could not shorten the retry delay", extra={"error": str(exc)})


def _defer(message: queue.Message, not_before: float, why: str) -> dict[str, Any]:
    delay = queue.defer(message, not_before, why)
    logger.info("image deferred", extra={"why": why, "not_before": not_before, "delay": delay})
    metrics.add_metric(name="ImagesDeferred", unit=MetricUnit.Count, value=1)
    return {"status": "deferred", "source": message.source, "notBefore": not_before}


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: Any = None) -> dict[str, Any]:
    try:
        message = queue.Message.parse(record.body)
        platforms = parse_platforms(message.platforms)
        mirror = get_mirror()
        mirror.resolve(message.source, message.target)  # the one target check, first
    except UsageError as exc:
        rejected(exc, what=f"message {record.message_id}")
        _retry_sooner(record)  # permanent: on to the DLQ and its alarm
        raise queue.ImageNotCopied(f"message {record.message_id} rejected: {exc}") from exc
    if message.not_before and message.not_before > queue.clock():
        return _defer(message, message.not_before, "waiting for the pull budget to reset")
    logger.append_keys(image=message.source, digest=message.source_digest)
    report = copy_with(mirror, message.source, message.target, platforms=platforms,
                       referrers=message.referrers, verify=message.verify,
                       time_left=time_left(lambda_context), hand_back=message.may_hand_back())
    record_copy_metrics(report)
    # A failure is final on the message's last receive (next stop: the DLQ).
    announce(report, mirror, final=queue.last_receive(record.raw_event.get("attributes") or {}))
    logger.info("copy finished", extra={"status": report.status.value, "target": report.target,
                                        "target_digest": report.target_digest})
    if report.status == REJECTED:  # final: not retried, not dead-lettered; the alarm says so
        logger.error("image rejected by the signature gate",
                     extra={"target": report.target, "reason": report.rejected_reason})
        return report.as_dict()
    again = queue.requeue(message, report)
    if again:
        return _defer(*again, (report.error or {}).get("message", ""))
    if not report.ok:
        _retry_sooner(record)
        raise queue.ImageNotCopied(f"{message.source}: {report.error_line()}")
    return report.as_dict()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any] | PartialItemFailureResponse:
    if not (isinstance(event, dict) and "Records" in event):
        return copy_one(event, context)
    if not queue.is_sqs_batch(event["Records"]):
        return rejected(UsageError(
            '"Records" must be a non-empty list of SQS messages (each with messageId, '
            'receiptHandle and body); for one image send {"source": "nginx:stable"}'))
    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=processor, context=context)
