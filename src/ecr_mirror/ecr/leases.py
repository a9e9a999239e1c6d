"""Blob leases: one worker at a time uploads a given blob into a given repository.

ECR has no upload lock. Two worker instances copying two tags of one
repository that share a layer would both find it missing, and both would fetch
it from the source and upload it. A lease, a DynamoDB item per
(repository, blob) written with a conditional put, lets the first one copy it
while the others wait for it to land in ECR.

Leases only save work; they never decide correctness. ECR accepts the same
layer twice, so when DynamoDB fails (throttled, no permission) the copy goes
ahead without a lease, and a lease whose holder died expires on its own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from .target import error_code

log = logging.getLogger(__name__)

#: Seconds a lease lasts: long enough for the holder to upload the blob at a
#: slow 4 MiB/s, after which another worker may take it over.
MIN_LEASE_SECONDS = 120
SLOWEST_BYTES_PER_SECOND = 4 << 20


def lease_seconds(size: int) -> int:
    return MIN_LEASE_SECONDS + size // SLOWEST_BYTES_PER_SECOND


class Leases(Protocol):
    #: False when no other process can hold a lease (nothing to wait for).
    shared: bool

    def acquire(self, repository: str, digest: str, seconds: float) -> bool:
        """True if this process may upload the blob now (and holds the lease)."""

    def release(self, repository: str, digest: str) -> None:
        """Let the others go (no-op if the lease is not ours)."""


class NoLeases:
    """One process alone (the CLI): the engine already copies a blob once per image."""

    shared = False

    def acquire(self, repository: str, digest: str, seconds: float) -> bool:
        return True

    def release(self, repository: str, digest: str) -> None:
        pass


class DynamoLeases:
    """Leases in a DynamoDB table whose partition key is the string `lease`.

    An item is {lease: "<repository>@<digest>", owner, expires (epoch seconds,
    also the table's TTL attribute)}. It can be taken when absent, expired, or
    already ours.
    """

    shared = True

    def __init__(self, table: str, client=None, *, owner: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.owner = owner or uuid.uuid4().hex
        self.clock = clock
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    def acquire(self, repository: str, digest: str, seconds: float) -> bool:
        now = int(self.clock())
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"lease": {"S": f"{repository}@{digest}"}, "owner": {"S": self.owner},
                      "expires": {"N": str(now + int(seconds))}},
                ConditionExpression="attribute_not_exists(lease) OR expires < :now OR #o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": self.owner}})
            return True
        except (ClientError, BotoCoreError) as exc:  # a lease is an optimisation, never a failure
            if isinstance(exc, ClientError) and error_code(exc) == "ConditionalCheckFailedException":
                return False
            log.warning("blob lease unavailable; copying without one",
                        extra={"table": self.table, "error": str(exc)})
            return True

    def release(self, repository: str, digest: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table, Key={"lease": {"S": f"{repository}@{digest}"}},
                ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}})
        except (ClientError, BotoCoreError) as exc:  # it expires anyway
            if not (isinstance(exc, ClientError) and error_code(exc) == "ConditionalCheckFailedException"):
                log.warning("could not release a blob lease; it will expire",
                            extra={"table": self.table, "error": str(exc)})
