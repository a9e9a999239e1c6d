"""Leases: one worker at a time uploads a given blob, or copies a given tag.

ECR has no upload lock. Two worker instances copying two tags of one
repository that share a layer would both find it missing, and both would fetch
it from the source and upload it. A lease, a DynamoDB item per
(repository, blob) written with a conditional put, lets the first one copy it
while the others wait for it to land in ECR.

A tag has a lease too, per (repository, tag): while one worker copies a tag,
another one asked for the same tag (a duplicate SQS delivery, overlapping
scheduler runs) hands its image back for a short while instead of copying
alongside.

Leases only save work; they never decide correctness. ECR accepts the same
layer twice, and the engine checks upstream again before a tag moves, so when
DynamoDB fails (throttled, no permission) the copy goes ahead without a lease,
and a lease whose holder died expires on its own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .errors import TagBusy

log = logging.getLogger(__name__)

#: Seconds a lease lasts: long enough for the holder to upload the blob at a
#: slow 4 MiB/s, after which another worker may take it over.
MIN_LEASE_SECONDS = 120
SLOWEST_BYTES_PER_SECOND = 4 << 20
#: A tag's lease lasts the holder's time left, or this long without a deadline
#: (the longest a Lambda function runs).
TAG_LEASE_SECONDS = 900
#: When another worker holds a tag's lease: hand the image back for this long.
TAG_BUSY_RETRY_SECONDS = 30


def lease_seconds(size: int) -> int:
    return MIN_LEASE_SECONDS + size // SLOWEST_BYTES_PER_SECOND


def blob_key(repository: str, digest: str) -> str:
    return f"{repository}@{digest}"


def tag_key(repository: str, tag: str) -> str:
    """Repository names hold neither ':' nor '@': keys of tags and blobs never meet."""
    return f"{repository}:{tag}"


class Leases(Protocol):
    #: False when no other process can hold a lease (nothing to wait for).
    shared: bool

    def acquire(self, key: str, seconds: float) -> bool:
        """True if this process may do the work named by `key` now (and holds its lease)."""

    def release(self, key: str) -> None:
        """Let the others go (no-op if the lease is not ours)."""


class NoLeases:
    """One process alone (the CLI): the engine already copies a blob once per image."""

    shared = False

    def acquire(self, key: str, seconds: float) -> bool:
        return True

    def release(self, key: str) -> None:
        pass


class DynamoLeases:
    """Leases in a DynamoDB table whose partition key is the string `lease`.

    An item is {lease: "<repository>@<digest>" or "<repository>:<tag>", owner,
    expires (epoch seconds, also the table's TTL attribute)}. It can be taken when absent, expired, or
    already ours.
    """

    shared = True

    def __init__(self, table: str, client: Any = None, *, owner: str | None = None,
                 clock: Callable[[], float] = time.time, region: str | None = None) -> None:
        self.table = table
        self.region = region
        self.owner = owner or uuid.uuid4().hex
        self.clock = clock
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb", self.region)
        return self._client

    def acquire(self, key: str, seconds: float) -> bool:
        return self.put_unless_held(key, seconds) is not False

    def put_unless_held(self, key: str, seconds: float, *, attributes: dict[str, str] | None = None,
                        same: str = "owner") -> bool | None:
        """Write the item {lease: key, owner, expires, **attributes} unless another
        holds it: True written, False held (its `same` attribute differs from ours,
        `owner` by default, and it has not expired), None DynamoDB unavailable
        (logged: a lease is an optimisation, never a failure)."""
        now = int(self.clock())
        item = {"lease": key, "owner": self.owner, **(attributes or {})}
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**{k: {"S": v} for k, v in item.items()}, "expires": {"N": str(now + int(seconds))}},
                ConditionExpression="attribute_not_exists(lease) OR expires < :now OR #s = :same",
                ExpressionAttributeNames={"#s": same},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":same": {"S": item[same]}})
            return True
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            log.warning("lease unavailable; copying without one",
                        extra={"table": self.table, "error": str(exc)})
            return None

    def release(self, key: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table, Key={"lease": {"S": key}},
                ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}})
        except (ClientError, BotoCoreError) as exc:  # it expires anyway
            if not (isinstance(exc, ClientError) and aws.error_code(exc) == "ConditionalCheckFailedException"):
                log.warning("could not release a lease; it will expire",
                            extra={"table": self.table, "error": str(exc)})


@contextmanager
def hold_tag(leases: Leases, repository: str, tag: str, seconds: float, subject: str) -> Iterator[None]:
    """Hold the tag's lease inside the block; `TagBusy` when another worker holds it."""
    key = tag_key(repository, tag)
    if not leases.acquire(key, seconds):
        raise TagBusy(f"{subject}: another worker is copying {key}; handed back for "
                      f"{TAG_BUSY_RETRY_SECONDS}s", retry_after=TAG_BUSY_RETRY_SECONDS)
    try:
        yield
    finally:
        leases.release(key)
