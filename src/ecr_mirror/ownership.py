"""Which ECR tags ecr-mirror itself put there: `prune` untags only those.

A tag set by hand in a mirrored repository is not ecr-mirror's to remove. So
each time a copy moves a tag, the worker (or the CLI with a table) records
(tag → digest) in the lease table, in one item per repository:

    {lease: "owned#<repository>", tags: {<tag>: <digest>, ...}}

The item has no `expires` attribute, so the table's TTL never removes it
(lease items have one; a repository name never holds '#', so the keys never
meet). A tag whose ECR digest is no longer the recorded one was moved by
someone else since: it is forgotten, never pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .errors import TargetError
from .leases import DynamoLeases

log = logging.getLogger(__name__)


#: Tags forgotten per UpdateItem: an update expression holds at most 4 KB.
FORGET_BATCH = 20


def owned_key(repository: str) -> str:
    return f"owned#{repository}"


class Ownership(Protocol):
    #: False when nothing is recorded (no table): nothing can be pruned.
    recorded: bool

    def record(self, repository: str, tag: str, digest: str) -> None:
        """Note that ecr-mirror moved `tag` to `digest` (never fails: logged)."""

    def owned(self, repository: str) -> dict[str, str]:
        """Tag → digest of the tags ecr-mirror put there; `TargetError` when unreadable."""

    def forget(self, repository: str, tags: Iterable[str]) -> None:
        """Drop these tags' records (never fails: logged)."""


class NoOwnership:
    """No table (the CLI by default): nothing recorded, so nothing is ever pruned."""

    recorded = False

    def record(self, repository: str, tag: str, digest: str) -> None:
        pass

    def owned(self, repository: str) -> dict[str, str]:
        return {}

    def forget(self, repository: str, tags: Iterable[str]) -> None:
        pass


class DynamoOwnership:
    """The records in the lease table, through the leases' own client."""

    recorded = True

    def __init__(self, leases: DynamoLeases) -> None:
        self.leases = leases
        self.table = leases.table

    @property
    def client(self) -> Any:
        return self.leases.client

    def record(self, repository: str, tag: str, digest: str) -> None:
        key = {"lease": {"S": owned_key(repository)}}
        names = {"#t": "tags", "#tag": tag}
        try:
            try:  # the usual case: the repository's item exists
                self.client.update_item(
                    TableName=self.table, Key=key, UpdateExpression="SET #t.#tag = :d",
                    ConditionExpression="attribute_exists(#t)", ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":d": {"S": digest}})
            except ClientError as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                # The repository's first tag; another worker may be writing it too.
                self.client.update_item(
                    TableName=self.table, Key=key, UpdateExpression="SET #t = if_not_exists(#t, :m)",
                    ExpressionAttributeNames={"#t": "tags"},
                    ExpressionAttributeValues={":m": {"M": {}}})
                self.client.update_item(
                    TableName=self.table, Key=key, UpdateExpression="SET #t.#tag = :d",
                    ExpressionAttributeNames=names, ExpressionAttributeValues={":d": {"S": digest}})
        except (ClientError, BotoCoreError) as exc:  # the copy stands; this tag is never pruned
            log.warning("could not record the tag as ecr-mirror's; prune will leave it",
                        extra={"table": self.table, "tag": f"{repository}:{tag}", "error": str(exc)})

    def owned(self, repository: str) -> dict[str, str]:
        try:
            answer = self.client.get_item(
                TableName=self.table, Key={"lease": {"S": owned_key(repository)}},
                ConsistentRead=True, ProjectionExpression="#t", ExpressionAttributeNames={"#t": "tags"})
        except (ClientError, BotoCoreError) as exc:
            code = aws.error_code(exc) if isinstance(exc, ClientError) else ""
            raise TargetError(f"cannot read which tags of {repository} ecr-mirror put there "
                              f"(DynamoDB {self.table}): {code or exc}", code=code,
                              temporary=True) from exc
        tags = answer.get("Item", {}).get("tags", {}).get("M", {})
        return {tag: value["S"] for tag, value in tags.items() if "S" in value}

    def forget(self, repository: str, tags: Iterable[str]) -> None:
        tags = sorted(set(tags))
        for start in range(0, len(tags), FORGET_BATCH):
            self._forget(repository, tags[start:start + FORGET_BATCH])

    def _forget(self, repository: str, tags: list[str]) -> None:
        names = {"#t": "tags", **{f"#g{i}": tag for i, tag in enumerate(tags)}}
        try:
            self.client.update_item(
                TableName=self.table, Key={"lease": {"S": owned_key(repository)}},
                UpdateExpression="REMOVE " + ", ".join(f"#t.#g{i}" for i in range(len(tags))),
                ConditionExpression="attribute_exists(#t)", ExpressionAttributeNames=names)
        except (ClientError, BotoCoreError) as exc:  # the next run finds them gone from ECR
            if not (isinstance(exc, ClientError)
                    and aws.error_code(exc) == "ConditionalCheckFailedException"):
                log.warning("could not forget pruned tags", extra={
                    "table": self.table, "repository": repository, "error": str(exc)})
