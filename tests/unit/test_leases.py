"""Blob leases in DynamoDB (moto): who may upload a blob into a repository now."""

from __future__ import annotations

import logging

import boto3
import pytest
from moto import mock_aws

from ecr_mirror.leases import DynamoLeases, NoLeases, blob_key, lease_seconds
from ecr_mirror.settings import MirrorSettings

TABLE = "ecr-mirror-leases"


@pytest.fixture
def dynamodb(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "lease", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "lease", "AttributeType": "S"}])
        yield client


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_worker_at_a_time_per_repository_and_blob(dynamodb):
    a, b = DynamoLeases(TABLE, dynamodb, owner="a"), DynamoLeases(TABLE, dynamodb, owner="b")
    assert a.acquire(blob_key("mirror/app", "sha256:1"), 300)
    assert not b.acquire(blob_key("mirror/app", "sha256:1"), 300)  # a is uploading it
    assert a.acquire(blob_key("mirror/app", "sha256:1"), 300)  # its own lease, taken again
    assert b.acquire(blob_key("mirror/app", "sha256:2"), 300)  # another blob
    assert b.acquire(blob_key("mirror/other", "sha256:1"), 300)  # the same blob, another repository
    b.release(blob_key("mirror/app", "sha256:1"))  # not b's: changes nothing
    assert not b.acquire(blob_key("mirror/app", "sha256:1"), 300)
    a.release(blob_key("mirror/app", "sha256:1"))
    assert b.acquire(blob_key("mirror/app", "sha256:1"), 300)


def test_a_lease_whose_holder_died_expires(dynamodb):
    clock = Clock()
    a = DynamoLeases(TABLE, dynamodb, owner="a", clock=clock)
    b = DynamoLeases(TABLE, dynamodb, owner="b", clock=clock)
    assert a.acquire(blob_key("mirror/app", "sha256:1"), 120)
    clock.now += 119
    assert not b.acquire(blob_key("mirror/app", "sha256:1"), 120)
    clock.now += 2
    assert b.acquire(blob_key("mirror/app", "sha256:1"), 120)
    item = dynamodb.get_item(TableName=TABLE, Key={"lease": {"S": "mirror/app@sha256:1"}})["Item"]
    assert item["owner"]["S"] == "b" and int(item["expires"]["N"]) == int(clock.now) + 120  # the TTL attribute


def test_without_dynamodb_the_copy_goes_ahead_and_says_why(dynamodb, caplog):
    leases = DynamoLeases("no-such-table", dynamodb, owner="a")
    with caplog.at_level(logging.WARNING, logger="ecr_mirror.ecr.leases"):
        assert leases.acquire(blob_key("mirror/app", "sha256:1"), 120)
        leases.release(blob_key("mirror/app", "sha256:1"))
    assert [r.getMessage() for r in caplog.records] == [
        "lease unavailable; copying without one", "could not release a lease; it will expire"]


def test_one_copy_of_a_tag_at_a_time_and_the_other_is_handed_back_shortly(dynamodb):
    from ecr_mirror.errors import TagBusy
    from ecr_mirror.leases import TAG_BUSY_RETRY_SECONDS, hold_tag

    a, b = DynamoLeases(TABLE, dynamodb, owner="a"), DynamoLeases(TABLE, dynamodb, owner="b")
    with hold_tag(a, "mirror/app", "1", 900, "nginx:1"):
        with pytest.raises(TagBusy) as busy:
            with hold_tag(b, "mirror/app", "1", 900, "nginx:1"):
                pytest.fail("b copied while a held the tag")
        assert busy.value.retry_after == TAG_BUSY_RETRY_SECONDS and busy.value.temporary
        assert "mirror/app:1" in str(busy.value)
        with hold_tag(b, "mirror/app", "2", 900, "nginx:2"):  # another tag: no wait
            pass
    with hold_tag(b, "mirror/app", "1", 900, "nginx:1"):  # released when a's block ended
        pass


def test_a_lease_lasts_longer_for_bigger_blobs():
    assert lease_seconds(0) == 120
    assert lease_seconds(4 << 30) == 120 + 1024  # 4 GiB at 4 MiB/s


def test_the_cli_needs_no_leases_and_the_worker_takes_its_table_from_the_environment():
    assert NoLeases().acquire(blob_key("r", "d"), 1) and not NoLeases.shared
    assert MirrorSettings.from_env({}).lease_table is None
    assert MirrorSettings.from_env({"ECR_MIRROR_LEASE_TABLE": TABLE}).lease_table == TABLE
