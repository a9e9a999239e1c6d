"""One pull budget per registry across the shards of a planning run.

One planner spends each registry's headroom (pulls left above the reserve, as
its HEADs saw them) on its jobs in plan order (`sync.plan.apply_budget`).
Shards would each see the whole headroom and spend it once each; so they
reserve from one counter instead: a DynamoDB item per (run, registry) in the
lease table, {cap: the headroom the first shard to reserve saw, spent}, whose
`expires` (the table's TTL) is the registry's rate-limit window. A shard takes
the longest prefix of its jobs that fits in min(cap - spent, its own headroom)
with a conditional update (`spent <= cap - cost`, so two shards never take the
same pulls), and defers the rest as one planner would have.

The counter is per run, not per window: the headroom a HEAD shows already
counts the pulls earlier runs' copies made, so a counter shared with them would
count those pulls twice. When DynamoDB cannot be used, a shard spends at most
its share of its own headroom (headroom // shards) and logs it: never more in
total than one planner, perhaps less.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .sync.plan import apply_budget, fitting

if TYPE_CHECKING:
    from .mirror import Mirror
    from .sync.plan import Plan

log = logging.getLogger(__name__)

#: Attempts at a reservation when other shards keep reserving in between.
ATTEMPTS = 8


class PullCounter:
    def __init__(self, table: str, run: str, *, region: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.table, self.run, self.region, self.clock = table, run, region, clock

    @property
    def client(self) -> Any:
        return aws.client("dynamodb", self.region)  # the process's, cached

    def key(self, registry: str) -> dict[str, Any]:
        return {"lease": {"S": f"pulls#{self.run}#{registry}"}}

    def reserve(self, registry: str, headroom: int, costs: list[int], window: float) -> list[bool]:
        """Which of `costs` (in order) this shard may spend; raises ClientError /
        BotoCoreError when DynamoDB cannot be used."""
        item = self.client.update_item(
            TableName=self.table, Key=self.key(registry), ReturnValues="ALL_NEW",
            UpdateExpression="SET cap = if_not_exists(cap, :h), spent = if_not_exists(spent, :z), "
                             "expires = if_not_exists(expires, :e)",
            ExpressionAttributeValues={":h": {"N": str(headroom)}, ":z": {"N": "0"},
                                       ":e": {"N": str(int(self.clock() + window))}})["Attributes"]
        cap = int(item["cap"]["N"])
        spent = int(item["spent"]["N"])
        for _ in range(ATTEMPTS):
            paid = fitting(costs, min(cap - spent, headroom))
            total = sum(c for c, ok in zip(costs, paid, strict=True) if ok)
            if total == 0:
                return paid
            try:
                self.client.update_item(
                    TableName=self.table, Key=self.key(registry),
                    UpdateExpression="ADD spent :t", ConditionExpression="spent <= :most",
                    ExpressionAttributeValues={":t": {"N": str(total)}, ":most": {"N": str(cap - total)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD")
                return paid
            except ClientError as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                old: Any = exc.response.get("Item") or {}
                spent = int(old.get("spent", {}).get("N", cap))
        return fitting(costs, 0)  # the others kept taking it: only what costs nothing


def apply_shared_budget(plan: Plan, mirror: Mirror, now: float, counter: PullCounter | None,
                        shards: int) -> None:
    """`apply_budget` across shards: each registry's jobs reserve from the counter,
    the ones it cannot pay for wait for the window (`not_before`)."""

    def pay(registry: str, headroom: int, costs: list[int], window: float) -> list[bool]:
        try:
            if counter is None:
                raise RuntimeError("no lease table (ECR_MIRROR_LEASE_TABLE)")
            return counter.reserve(registry, headroom, costs, window)
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            log.warning("shared pull budget unavailable; this shard spends its share of the headroom",
                        extra={"registry": registry, "share": headroom // max(shards, 1),
                               "error": str(exc)})
            return fitting(costs, headroom // max(shards, 1))

    apply_budget(plan, mirror, now, pay)
