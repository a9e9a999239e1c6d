"""The SQS message between the scheduler and the worker, and what is done with it.

One message is one image: `{"source", "target", "platforms", "sourceDigest"}`,
`referrers` and `verify` as the config spells them (policies.py; the key's spec,
never the key), plus `notBefore` (epoch seconds; the pull budget is spent until then) and
`timeouts` (how many times a worker ran out of time on it). The scheduler
sends messages in batches; the worker defers (a new, delayed message) or
retries sooner (a shorter visibility timeout) by the policy in `requeue`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from . import aws
from .copy.options import ReferrerPolicy
from .copy.report import DEFERRED, CopyReport
from .errors import DeferReason, UsageError
from .policies import image_options, referrers_value, verify_value

#: SendMessageBatch takes at most ten messages.
SQS_BATCH = 10
#: The longest DelaySeconds SQS allows; a later start is waited for by deferring again.
MAX_SQS_DELAY = 900
#: The longest visibility timeout SQS allows.
MAX_VISIBILITY = 43_200
#: Seconds before a failed or handed-back message is tried again.
RETRY_DELAY_SECONDS = 60
#: An image stopped this many times for lack of time fails normally (towards
#: the DLQ): each try keeps the blobs it finished, so only a blob too big for
#: one invocation gets here.
MAX_TIMEOUTS = 10
#: The CopyQueue's maxReceiveCount (template.yaml; a template test keeps them equal):
#: a message failed on its last receive goes to the DLQ, its failure is final.
MAX_RECEIVES = 3
FIELDS = {"source", "target", "platforms", "sourceDigest", "notBefore", "timeouts", "referrers", "verify",
          "handBacks"}
#: Times an image is handed back while another repository uploads a blob it needs
#: (copy/blobs.py); then it uploads the blob itself.
MAX_HAND_BACKS = 3
clock = time.time  # replaced in tests, to step past a rate-limit window


class ImageNotCopied(Exception):
    """A message whose image failed: the batch reports it, SQS delivers it again."""


@dataclass(frozen=True)
class Message:
    source: str
    target: str | None = None
    platforms: tuple[str, ...] = ()
    source_digest: str | None = None
    not_before: float | None = None
    timeouts: int = 0
    referrers: ReferrerPolicy | None = None
    #: The signature gate's key specs (keys.py), not the keys; (): no gate.
    verify: tuple[str, ...] = ()
    #: Times handed back for a blob another repository was uploading (a new message each
    #: time: SQS's receive count starts again, so the count travels in the body).
    hand_backs: int = 0

    def may_hand_back(self) -> bool:
        return bool(queue_url()) and self.hand_backs < MAX_HAND_BACKS

    def body(self) -> dict[str, Any]:
        """The JSON body (the fields a message leaves out stay out)."""
        body: dict[str, Any] = {"source": self.source}
        if self.target is not None:
            body["target"] = self.target
        body["platforms"] = list(self.platforms)
        for key, value in (("sourceDigest", self.source_digest), ("notBefore", self.not_before)):
            if value is not None:
                body[key] = value
        if self.timeouts:
            body["timeouts"] = self.timeouts
        if self.hand_backs:
            body["handBacks"] = self.hand_backs
        body.update(options_body(self.referrers, self.verify))
        return body

    @classmethod
    def parse(cls, text: str) -> Message:
        """A queued message's body; UsageError when it is malformed."""
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"the message body is not JSON ({type(exc).__name__}); the scheduler "
                             'sends {"source": ..., "target": ...}') from exc
        source, target, platforms = parse_image(body, FIELDS)
        not_before, timeouts = body.get("notBefore"), body.get("timeouts", 0)
        if not_before is not None and (isinstance(not_before, bool) or not isinstance(
                not_before, (int, float)) or not math.isfinite(not_before)):
            raise UsageError(f'"notBefore" must be a time in epoch seconds, got {json.dumps(not_before)}')
        for name, count in (("timeouts", timeouts), ("handBacks", hand_backs := body.get("handBacks", 0))):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise UsageError(f'"{name}" must be a whole number of at least 0, got {json.dumps(count)}')
        digest = body.get("sourceDigest")
        referrers, verify = image_options(body)
        return cls(source, target, tuple(platforms), digest if isinstance(digest, str) else None,
                   float(not_before) if not_before is not None else None, timeouts, referrers, verify,
                   hand_backs)


def options_body(referrers: ReferrerPolicy | None, verify: tuple[str, ...]) -> dict[str, Any]:
    """The `referrers` and `verify` fields of a message or a job ({} when neither is on).
    `referrers: false` is said when there is a gate: without it, the worker would copy them all."""
    body: dict[str, Any] = {}
    if referrers is not None or verify:
        body["referrers"] = referrers_value(referrers)
    if verify:
        body["verify"] = verify_value(verify)
    return body


def parse_image(event: Any, allowed: set[str]) -> tuple[str, str | None, list[str]]:
    """(source, target, platforms) of a message or a direct event; UsageError if malformed."""
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


def is_sqs_batch(records: Any) -> bool:
    """Is this a Lambda SQS event's `Records` (each with messageId, receiptHandle, body)?"""
    keys = ("messageId", "receiptHandle", "body")
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and all(isinstance(r.get(k), str) for k in keys) for r in records)


def delay_seconds(not_before: float | None, now: float) -> int:
    """SQS DelaySeconds for a start time: 0 to MAX_SQS_DELAY."""
    if not_before is None:
        return 0
    return int(min(MAX_SQS_DELAY, max(0, not_before - now)))


def queue_url() -> str | None:
    return os.environ.get("ECR_MIRROR_QUEUE_URL") or None


def send_batch(messages: list[Message], url: str, sqs: Any = None, now: float | None = None
               ) -> tuple[int, list[dict[str, str]]]:
    """Send ten per SendMessageBatch, each delayed until its `not_before` (at most
    MAX_SQS_DELAY: the worker defers it again); (sent, errors by source)."""
    now = clock() if now is None else now
    return send_bodies([(m.source, json.dumps(m.body()), delay_seconds(m.not_before, now))
                        for m in messages], url, sqs)


def send_bodies(bodies: list[tuple[str, str, int]], url: str, sqs: Any = None
                ) -> tuple[int, list[dict[str, str]]]:
    """Send (entry, JSON body, delay in seconds) ten per SendMessageBatch; (sent,
    errors by entry): a refused batch or message is an error, not a crash."""
    from botocore.exceptions import BotoCoreError, ClientError

    sqs = sqs or aws.client("sqs")
    sent, errors = 0, []
    for start in range(0, len(bodies), SQS_BATCH):
        batch = bodies[start:start + SQS_BATCH]
        try:
            answer = sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": body, "DelaySeconds": delay}
                for i, (_, body, delay) in enumerate(batch)])
        except (ClientError, BotoCoreError) as exc:  # e.g. AccessDenied: plan errors, not a crash
            code = aws.error_code(exc) if isinstance(exc, ClientError) else ""
            errors += [{"entry": entry, "message": f"SQS: {code or type(exc).__name__}: {exc}"}
                       for entry, _, _ in batch]
            continue
        sent += len(answer.get("Successful", []))
        errors += [{"entry": batch[int(f["Id"])][0],
                    "message": f"SQS: {f.get('Code')}: {f.get('Message', '')}"}
                   for f in answer.get("Failed", [])]
    return sent, errors


def defer(message: Message, not_before: float, why: str) -> int:
    """Put the image back on the queue to start at `not_before`; the delay sent.

    A new message, delayed as long as SQS allows; the current one then counts
    as processed. So a deferral never adds to the receive count that sends a
    message to the DLQ: the rate limit alone never dead-letters an image.
    """
    url = queue_url()
    if not url:
        raise ImageNotCopied(f"{message.source}: deferred ({why}) but ECR_MIRROR_QUEUE_URL "
                             "is not set; left for the queue's own retry")
    delay = delay_seconds(not_before, clock())
    aws.client("sqs").send_message(QueueUrl=url, DelaySeconds=delay, MessageBody=json.dumps(
        replace(message, not_before=not_before).body()))
    return delay


def retry_sooner(receipt_handle: str, seconds: float | None = None, url: str | None = None) -> None:
    """Make a failed message of the queue `url` (by default the copy queue) visible
    again after `seconds` (RETRY_DELAY_SECONDS) instead of the full visibility
    timeout (six times the function timeout): a temporary failure gets its retries
    soon, a permanent one reaches the DLQ (and its alarm) after 3 receives within
    minutes. Raises on failure."""
    url = url or queue_url()
    if url:
        seconds = RETRY_DELAY_SECONDS if seconds is None else seconds
        aws.client("sqs").change_message_visibility(
            QueueUrl=url, ReceiptHandle=receipt_handle,
            VisibilityTimeout=int(min(max(seconds, 0), MAX_VISIBILITY)))


def last_receive(attributes: dict[str, Any]) -> bool:
    """Is this the message's last receive before the DLQ (its SQS record's attributes)?"""
    count = attributes.get("ApproximateReceiveCount")
    return isinstance(count, str) and count.isdigit() and int(count) >= MAX_RECEIVES


def requeue(message: Message, report: CopyReport) -> tuple[Message, float] | None:
    """The policy after a copy: (the message to defer, when) for a deferred
    image; None when the report is final. `ImageNotCopied` when an image ran
    out of time more than MAX_TIMEOUTS times."""
    if report.status != DEFERRED:
        return None
    if report.defer_reason is DeferReason.TIME:  # out of time, not out of budget
        message = replace(message, timeouts=message.timeouts + 1)
        if message.timeouts > MAX_TIMEOUTS:
            raise ImageNotCopied(f"{message.source}: stopped for lack of time {MAX_TIMEOUTS} times; "
                                 "a single blob may be too large for one invocation")
    elif report.defer_reason is DeferReason.UPLOAD_BUSY:
        message = replace(message, hand_backs=message.hand_backs + 1)
    return message, clock() + (report.retry_after or RETRY_DELAY_SECONDS)
