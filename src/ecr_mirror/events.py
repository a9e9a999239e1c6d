"""EventBridge events about mirrored images: what to announce, and putting it.

`Image Mirrored`: the ECR tag moved (status copied, a retag included).
`Image Failed`: the image will not be in ECR under its tag until someone acts:
it failed for good, the signature gate rejected it, or it was superseded (the
tag was left alone; a copy of the newer image follows). Nothing is announced
for an unchanged or deferred image, nor for a failure that will be tried again.

Who decides "for good" is the caller (`final`): the CLI and a direct
invocation try once, so every failure is final; the worker's failure is final
on the message's last receive before the dead-letter queue (queue.py).

Sending never fails a copy: an entry that cannot be put (AccessDenied,
throttling, an outage, `FailedEntryCount`) is logged once per call, without
the event's content, and counted (`Outcome.failed`, metric EventsFailed).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import aws
from .copy.report import COPIED, FAILED, REJECTED, SUPERSEDED, CopyReport
from .errors import UsageError

log = logging.getLogger(__name__)

SOURCE = "ecr-mirror"
MIRRORED, FAILED_TYPE = "Image Mirrored", "Image Failed"
#: PutEvents takes at most ten entries and 256 KB per call.
MAX_ENTRIES, MAX_BYTES = 10, 256 * 1024
#: An error message in an event is cut to this many characters.
MAX_MESSAGE = 2048
#: A bus name or ARN as EventBridge takes it (EventBusName of PutEvents).
_BUS = re.compile(r"[/.\-_A-Za-z0-9]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:"
                  r"event-bus/[/.\-_A-Za-z0-9]{1,256}")


def check_bus(name: str, what: str) -> str:
    """`name` when EventBridge would take it as a bus; else one UsageError line."""
    if not _BUS.fullmatch(name):
        raise UsageError(f"{what} {name!r} is not an EventBridge bus: expected a name such as "
                         "default or ecr-mirror (letters, digits, . - _ /) or an event-bus ARN")
    return name


def detail_type(report: CopyReport, *, final: bool) -> str | None:
    """The event this report is worth, if any (see the module doc)."""
    if report.status == COPIED:
        return MIRRORED
    if report.status in (REJECTED, SUPERSEDED) or (report.status == FAILED and final):
        return FAILED_TYPE
    return None


def detail(report: CopyReport) -> dict[str, Any]:
    """The event's `detail`: what moved (or did not), and the report's counts."""
    repository, _, tag = report.target.partition(":")
    data: dict[str, Any] = {
        "source": report.source, "repository": repository, "tag": tag or None,
        "status": report.status.value, "digest": report.target_digest,
        "previousDigest": report.previous_digest, "sourceDigest": report.source_digest,
        "mediaType": report.media_type, "platforms": report.platforms,
        "counts": {"blobsUploaded": report.blobs_uploaded, "bytesUploaded": report.bytes_uploaded,
                   "blobsSkipped": report.blobs_skipped, "manifestsPut": report.manifests_put,
                   "manifestsFetched": report.manifests_fetched,
                   "referrersCopied": report.referrers_copied}}
    if report.status == SUPERSEDED:
        data["supersededBy"] = report.superseded_by
    if report.rejected_reason:
        data["rejectedReason"] = report.rejected_reason[:MAX_MESSAGE]
    if report.error:
        data["error"] = {"type": report.error.get("type"),
                         "message": str(report.error.get("message", ""))[:MAX_MESSAGE],
                         "temporary": report.error.get("temporary")}
    return data


def entry(report: CopyReport, bus: str, kind: str) -> dict[str, Any]:
    return {"Source": SOURCE, "DetailType": kind, "EventBusName": bus,
            "Detail": json.dumps(detail(report), separators=(",", ":"))}


def _size(item: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it (the Time field's 14 bytes included)."""
    return 14 + sum(len(item[k].encode()) for k in ("Source", "DetailType", "Detail"))


def batches(entries: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """The entries in PutEvents calls: ten at most, 256 KB at most."""
    batch: list[dict[str, Any]] = []
    for item in entries:
        if batch and (len(batch) == MAX_ENTRIES or
                      sum(map(_size, batch)) + _size(item) > MAX_BYTES):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0


def announce(reports: Iterable[tuple[CopyReport, bool]], bus: str | None,
             region: str | None = None, client: Any = None) -> Outcome:
    """Put the events (report, final) are worth on `bus` (None: no events). Never raises."""
    outcome = Outcome()
    if not bus:
        return outcome
    entries = [entry(r, bus, kind) for r, final in reports if (kind := detail_type(r, final=final))]
    for batch in batches(entries):
        outcome.sent += len(batch) - _put(batch, bus, region, client, outcome)
    return outcome


def _put(batch: list[dict[str, Any]], bus: str, region: str | None, client: Any,
         outcome: Outcome) -> int:
    """One PutEvents call; how many of its entries failed (also added to `outcome`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = (client or aws.client("events", region)).put_events(Entries=batch)
    except (ClientError, BotoCoreError, UsageError) as exc:
        code = aws.error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        why = f"{code}: {aws.error_message(exc)}" if isinstance(exc, ClientError) else str(exc)
        log.warning("could not send %d event(s) to EventBridge bus %s: %s", len(batch), bus, why,
                    extra={"bus": bus, "events": len(batch), "error": why})
        outcome.failed += len(batch)
        return len(batch)
    failed = [e for e in answer.get("Entries", []) if e.get("ErrorCode")]
    if failed:
        why = f"{failed[0]['ErrorCode']}: {failed[0].get('ErrorMessage', '')}"
        log.warning("EventBridge bus %s refused %d event(s): %s", bus, len(failed), why,
                    extra={"bus": bus, "events": len(failed), "error": why})
    outcome.failed += len(failed)
    return len(failed)
