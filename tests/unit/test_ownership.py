"""ownership.py on moto's DynamoDB: the record of the tags ecr-mirror moved."""

from __future__ import annotations

import logging

import pytest

from ecr_mirror.errors import TargetError
from ecr_mirror.leases import DynamoLeases
from ecr_mirror.ownership import DynamoOwnership, owned_key
from tests.unit.test_leases import TABLE, dynamodb  # noqa: F401 (the fixture)

REPO = "mirror/dockerhub/library/nginx"
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.fixture
def ownership(dynamodb):
    return DynamoOwnership(DynamoLeases(TABLE, dynamodb))


def test_a_moved_tag_is_recorded_with_its_latest_digest_and_never_expires(ownership, dynamodb):
    ownership.record(REPO, "stable", A)
    ownership.record(REPO, "mainline", A)
    ownership.record(REPO, "stable", B)
    assert ownership.owned(REPO) == {"stable": B, "mainline": A}
    assert ownership.owned("mirror/other") == {}
    item = dynamodb.get_item(TableName=TABLE, Key={"lease": {"S": owned_key(REPO)}})["Item"]
    assert "expires" not in item  # the table's TTL attribute: absent, so never swept


def test_forgetting_many_tags_forgets_each(ownership):
    tags = [f"1.{i}.0" for i in range(45)]
    for tag in tags:
        ownership.record(REPO, tag, A)
    ownership.forget(REPO, tags[:44])
    assert ownership.owned(REPO) == {"1.44.0": A}


def test_an_unreadable_record_is_an_error_and_a_failed_write_only_a_warning(dynamodb, caplog):
    ownership = DynamoOwnership(DynamoLeases("absent-table", dynamodb))
    with pytest.raises(TargetError, match="ResourceNotFoundException"):
        ownership.owned(REPO)
    with caplog.at_level(logging.WARNING):
        ownership.record(REPO, "stable", A)
    assert "prune will leave it" in caplog.text
