"""What Lambda hands a handler: a context, and SQS batches from the event source."""

from __future__ import annotations

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:ecr-mirror-copy"


class FakeContext:
    function_name = "ecr-mirror-test"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ecr-mirror-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sqs_record(body: str, message_id: str = "m1", receipt_handle: str = "r1",
               attributes: dict | None = None) -> dict:
    return {"messageId": message_id, "receiptHandle": receipt_handle, "body": body,
            "attributes": attributes or {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": QUEUE_ARN, "awsRegion": "us-east-1"}


def sqs_event(messages: list[dict]) -> dict:
    """An event for messages as ReceiveMessage returned them."""
    return {"Records": [sqs_record(m["Body"], m["MessageId"], m["ReceiptHandle"], m.get("Attributes"))
                        for m in messages]}


def deliver(sqs, queue_url: str, handler, batch_size: int = 10) -> tuple[list[dict], set[str]]:
    """One poll of the event source: up to `batch_size` messages through `handler`;
    the ones it did not report as failed are deleted. Returns (messages, failed ids)."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch_size,
                                   WaitTimeSeconds=0, AttributeNames=["ApproximateReceiveCount"]
                                   ).get("Messages", [])
    if not messages:
        return [], set()
    answer = handler(sqs_event(messages), FakeContext())
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return messages, failed
