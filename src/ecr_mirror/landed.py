"""Where blobs landed: which mirrored repository holds a blob, for ECR blob mounts.

After an image is complete in repository R (its manifests put, so a manifest in
R references each of its blobs, which ECR's mount rule requires), the worker
records, for each blob it uploaded or mounted into R, that R holds it: one item
per blob in the lease table, written once when the blob is new in R:

    {lease: "landed#<region>#<digest>", repository: R, expires}

Before uploading a blob another repository needs, one BatchGetItem per 100
blobs says where they landed. The last repository written wins; an item
expires after `LANDED_DAYS` (a record only saves work: a mount ECR refuses is
an upload). Like leases (leases.py), a DynamoDB failure means "nowhere", never
a failed copy. A repository name never holds '#', so these keys never meet a
lease's or an ownership record's.

While an image uploads blobs that have no home yet, it holds a marker per blob,
{lease: "uploading#<region>#<digest>", repository, owner, expires}, taken in
digest order, all or nothing (`claim`): an image of another repository that
needs one of them hands itself back instead of uploading the blob a second
time, and mounts it once the first image is complete. Fixed order: of two
contenders one gets all its markers, neither waits for the other. The loser
marks its other blobs one by one, copies them, and waits for the marked ones
(copy/blobs.py). Waiting while holding markers can close a circle (an index's
children are marked one child at a time; two losers may mark blobs each other
needs), so a waiting image says what it waits for,

    {lease: "waiting#<region>#<owner>", owner, for: {digest, ...}, expires},

and an image waiting for a blob whose holder waits for one of its own markers
gives way when its repository's name is the later one (`waits_of`).
Longer circles end when a marker expires (its seconds: the blobs' lease time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from botocore.exceptions import BotoCoreError, ClientError

from .leases import DynamoLeases

log = logging.getLogger(__name__)

#: Days a record lasts (the table's TTL removes it afterwards).
LANDED_DAYS = 30
#: Keys per BatchGetItem (DynamoDB's limit).
BATCH_GET = 100


def landed_key(region: str, digest: str) -> str:
    return f"landed#{region}#{digest}"


def uploading_key(region: str, digest: str) -> str:
    return f"uploading#{region}#{digest}"


def waiting_key(region: str, owner: str) -> str:
    return f"waiting#{region}#{owner}"


class BlobHomes:
    """The records in the lease table (see the module doc)."""

    def __init__(self, leases: DynamoLeases) -> None:
        self.leases = leases

    def where(self, region: str, digests: Iterable[str]) -> dict[str, str]:
        """Digest → a repository of `region` that holds it, for those recorded."""
        found = {}
        for key, item in self._items(landed_key(region, d) for d in digests).items():
            if "repository" in item:
                found[key.rsplit("#", 1)[1]] = item["repository"]["S"]
        return found

    def _items(self, keys: Iterable[str]) -> dict[str, dict]:
        """Key → its unexpired item, for those found (BatchGetItem: no GetItem grant)."""
        keys = sorted(set(keys))
        found: dict[str, dict] = {}
        table = self.leases.table
        for i in range(0, len(keys), BATCH_GET):
            request = {table: {"Keys": [{"lease": {"S": k}} for k in keys[i:i + BATCH_GET]],
                               "ConsistentRead": True}}
            try:
                answer = self.leases.client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:  # no record: an upload, as before
                log.warning("where blobs landed is unavailable; uploading",
                            extra={"table": table, "error": str(exc)})
                return found
            now = self.leases.clock()
            for item in answer.get("Responses", {}).get(table, []):
                if float(item.get("expires", {}).get("N", "0")) > now:
                    found[item["lease"]["S"]] = item
        return found

    def record(self, region: str, repository: str, digests: Iterable[str]) -> None:
        """Note that `repository` holds these blobs (never fails: logged)."""
        expires = str(int(self.leases.clock()) + LANDED_DAYS * 86400)
        for digest in sorted(set(digests)):
            try:
                self.leases.client.put_item(
                    TableName=self.leases.table,
                    Item={"lease": {"S": landed_key(region, digest)},
                          "repository": {"S": repository}, "expires": {"N": expires}})
            except (ClientError, BotoCoreError) as exc:
                log.warning("could not record where a blob landed; it will be uploaded again "
                            "where needed", extra={"table": self.leases.table, "error": str(exc)})
                return

    def claim(self, region: str, repository: str, digests: Iterable[str], seconds: float) -> bool:
        """Mark these blobs as being uploaded into `repository`, all or none: False
        (nothing held) when another repository's image marked one of them first.
        DynamoDB failing: True (an upload, as without markers)."""
        taken = list[str]()
        for digest in sorted(set(digests)):
            written = self.leases.put_unless_held(uploading_key(region, digest), seconds,
                                                  attributes={"repository": repository}, same="repository")
            if written is None:  # DynamoDB unavailable (logged): an upload, as without markers
                return True
            if not written:
                self.unclaim(region, taken)
                return False
            taken.append(digest)
        return True

    def waiting(self, region: str, digest: str, seconds: float) -> None:
        """Say that this process's image waits for `digest` (never fails)."""
        try:
            self.leases.client.update_item(
                TableName=self.leases.table, Key={"lease": {"S": waiting_key(region, self.leases.owner)}},
                UpdateExpression="ADD #f :d SET #o = :me, expires = :e",
                ExpressionAttributeNames={"#f": "for", "#o": "owner"},
                ExpressionAttributeValues={":d": {"SS": [digest]}, ":me": {"S": self.leases.owner},
                                           ":e": {"N": str(int(self.leases.clock() + seconds))}})
        except (ClientError, BotoCoreError) as exc:  # a circle then ends when a marker expires
            log.warning("could not record a wait", extra={"table": self.leases.table, "error": str(exc)})

    def done_waiting(self, region: str) -> None:
        self.leases.release(waiting_key(region, self.leases.owner))

    def look(self, region: str, digest: str) -> tuple[str | None, dict | None]:
        """One read: (the repository `digest` landed in, the unexpired marker of the
        image uploading it), either None when there is none."""
        landed, marker = landed_key(region, digest), uploading_key(region, digest)
        items = self._items([landed, marker])
        home = items.get(landed, {}).get("repository", {}).get("S")
        return home, items.get(marker)

    def waits_of(self, region: str, owner: str) -> set[str]:
        """The blobs the image of `owner` (a process) said it waits for."""
        key = waiting_key(region, owner)
        return set(self._items([key]).get(key, {}).get("for", {}).get("SS", []))

    def unclaim(self, region: str, digests: Iterable[str]) -> None:
        """Drop this process's markers (never fails: a marker left behind expires)."""
        for digest in digests:
            self.leases.release(uploading_key(region, digest))
