"""One pull budget across planning shards: the DynamoDB counter (pull_counter.py)
on the emulator's DynamoDB, with shards reserving at the same time."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import boto3
import pytest

from ecr_mirror.pull_counter import PullCounter, apply_shared_budget
from ecr_mirror.sync.plan import Job, Plan
from tests.integration.conftest import create_lease_table

pytestmark = pytest.mark.integration
TABLE = "ecr-mirror-leases"


@pytest.fixture
def table(aws_env, ecr, ecr_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    create_lease_table(TABLE)
    return TABLE


@dataclass
class Budget:
    """What a shard's HEADs saw of a registry's rate limit."""
    left: int

    def headroom(self) -> int:
        return self.left

    def wait_seconds(self) -> float:
        return 3600.0


class Shard:
    """A shard's plan and mirror: `jobs` copies of cost `cost` from docker.io."""

    def __init__(self, name: str, jobs: int, cost: int, headroom: int) -> None:
        self.plan = Plan(jobs=[Job(source=f"docker.io/{name}:{i}", target=f"mirror/{name}:{i}", platforms=[],
                                   source_digest="sha256:0", cost=cost) for i in range(jobs)])
        self.budget = Budget(headroom)

    def pull_budgets(self) -> dict:
        return {"docker.io": self.budget}

    def spent(self) -> int:
        return sum(j.cost for j in self.plan.jobs if j.not_before is None)


def run_shards(shards: list[Shard], counter_for) -> None:
    barrier = threading.Barrier(len(shards))

    def one(shard: Shard) -> None:
        barrier.wait()  # all reserve at once
        apply_shared_budget(shard.plan, shard, 1000.0, counter_for(), len(shards))

    threads = [threading.Thread(target=one, args=(s,)) for s in shards]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def test_shards_reserving_at_once_never_spend_more_than_one_planner(table):
    # Eight shards each see a headroom of 20 and want 4 jobs of 2 pulls (64 in all):
    # one planner would have spent 20 at most, and so do they together.
    shards = [Shard(f"s{i}", 4, 2, 20) for i in range(8)]
    run_shards(shards, lambda: PullCounter(table, "run-1", clock=lambda: 1000.0))
    assert sum(s.spent() for s in shards) == 20
    assert sum(s.plan.deferred for s in shards) == 32 - 10
    assert all(j.not_before == 1000.0 + 3600 for s in shards for j in s.plan.jobs if j.not_before)
    item = boto3.client("dynamodb").get_item(TableName=table, Key={"lease": {"S": "pulls#run-1#docker.io"}})["Item"]
    # ...and the counter goes with the registry's window (the table's TTL attribute).
    assert (item["cap"]["N"], item["spent"]["N"], item["expires"]["N"]) == ("20", "20", "4600")


def test_a_shard_seeing_less_headroom_spends_no_more_than_it_sees(table):
    first, second = Shard("a", 3, 1, 10), Shard("b", 10, 1, 4)  # workers pulled meanwhile
    for shard in (first, second):
        apply_shared_budget(shard.plan, shard, 0.0, PullCounter(table, "run-2"), 2)
    assert (first.spent(), second.spent()) == (3, 4)


def test_without_dynamodb_each_shard_spends_its_share(table):
    shards = [Shard(f"s{i}", 5, 1, 9) for i in range(3)]
    run_shards(shards, lambda: PullCounter("no-such-table", "run-3"))
    assert [s.spent() for s in shards] == [3, 3, 3]  # 9 // 3 each: never more than 9 in all
