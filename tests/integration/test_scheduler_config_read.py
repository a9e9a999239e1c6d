"""A scheduler run reads its config once, with its version, and splits it once.

The config that decides the shards and builds the Mirror is the one split and the
one whose version the shards pin, even when it is written during the run. The
reads counted are the ones the store served to the function's own clients
(botocore's after-call event), nothing mocked.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import boto3
import pytest

from ecr_mirror import aws
from ecr_mirror.handlers import config_s3, scheduler
from ecr_mirror.handlers import shards as shard_handler
from ecr_mirror_testing.lambdas import FakeContext
from tests.integration.test_plan_shards import CONFIG, PARAMETER, hub, stack  # noqa: F401

pytestmark = pytest.mark.integration
BUCKET, KEY = "config-bucket", "mirror.yaml"
#: CONFIG's four shards at 3 tags a shard (c and d write to one repository).
SPLIT = [[0], [1], [2, 4], [3]]
#: Within one shard: what a writer puts in the store while the scheduler runs.
SMALL = "images:\n  - source: library/e\n    tags: ['1', '2']\n"
OPERATIONS = {"s3": "GetObject", "ssm": "GetParameter"}


def use_s3(monkeypatch) -> str:
    """The config in a versioned S3 object (ConfigStore=s3); its ETag."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv(config_s3.ENV, f"s3://{BUCKET}/{KEY}")
    monkeypatch.setattr(config_s3, "_cache", {})
    return write("s3", CONFIG)


def write(store: str, text: str) -> str:
    """Write the config as a user would (another client); the version it got."""
    if store == "s3":
        return "s3:" + boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=text.encode())["ETag"]
    answer = boto3.client("ssm").put_parameter(Name=PARAMETER, Value=text, Type="String", Overwrite=True)
    return f"ssm:{answer['Version']}"


@contextlib.contextmanager
def served(service: str, then=None) -> Iterator[list[int]]:
    """The status of each config read the store answers the function's client; `then()` after each."""
    statuses: list[int] = []
    event = f"after-call.{service}.{OPERATIONS[service]}"

    def record(http_response, **_):
        statuses.append(http_response.status_code)
        if then:
            then()

    client = aws.client(service)  # the process's client: the one the handlers use
    client.meta.events.register(event, record)
    try:
        yield statuses
    finally:
        client.meta.events.unregister(event, record)


def sent_shards(stack) -> list[dict]:
    return sorted(stack.drain(stack.plan_url), key=lambda body: body["shard"])


@pytest.mark.parametrize("store", ["s3", "ssm"])
def test_a_sharded_run_reads_its_config_once_and_splits_it_once(stack, monkeypatch, store):
    if store == "s3":
        use_s3(monkeypatch)
    real_split, splits = shard_handler.split, []
    monkeypatch.setattr(shard_handler, "split", lambda *args: splits.append(args) or real_split(*args))
    with served("s3") as s3_reads, served("ssm") as ssm_reads:
        answer = scheduler.handler({}, FakeContext())
    assert (answer["shards"], answer["estimatedTags"], answer["errors"]) == (4, 11, 0), answer
    assert {"s3": len(s3_reads), "ssm": len(ssm_reads)} == {"s3": int(store == "s3"), "ssm": int(store == "ssm")}
    assert len(splits) == 1  # the parts counted are the parts sent
    assert [body["entries"] for body in sent_shards(stack)] == SPLIT


def test_a_run_of_an_unchanged_s3_config_is_answered_304(stack, monkeypatch):
    """The scheduler's one read still asks with the ETag it has: no transfer when unchanged."""
    use_s3(monkeypatch)
    with served("s3") as statuses:
        first = scheduler.handler({}, FakeContext())
        again = scheduler.handler({}, FakeContext())
    assert statuses == [200, 304]
    assert first["shards"] == again["shards"] == 4
    bodies = stack.drain(stack.plan_url)
    assert len({body["configVersion"] for body in bodies}) == 1 and len(bodies) == 8


@pytest.mark.parametrize("store", ["s3", "ssm"])
def test_a_config_written_during_the_run_is_not_split_under_another_version(stack, monkeypatch, store):
    read = use_s3(monkeypatch) if store == "s3" else write("ssm", CONFIG)
    written: list[str] = []
    # Someone writes a small config right after the scheduler's first read is served.
    with served(store, then=lambda: written or written.append(write(store, SMALL))):
        answer = scheduler.handler({}, FakeContext())
    assert written and written[0] != read
    # What was decided on (4 shards, 11 tags) is what was split and what the shards pin.
    assert (answer["shards"], answer["estimatedTags"]) == (4, 11), answer
    bodies = sent_shards(stack)
    assert [body["entries"] for body in bodies] == SPLIT
    assert {body["configVersion"] for body in bodies} == {read}
    if store == "ssm":
        return  # SSM cannot hold that version again: the shards refuse it (test_plan_shards)
    # The object is written back (same bytes, same ETag): the shards plan what was split.
    assert write("s3", CONFIG) == read
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.plan_url, MessageBody=json.dumps(body))
    delivered, failures = stack.plan_shards()
    assert (len(delivered), failures) == (4, 0)
    copies = stack.drain(stack.copy_url)
    assert len(copies) == len({c["target"] for c in copies}) == 11  # every tag of CONFIG, once


@pytest.mark.parametrize("store,expected", [
    ("ssm", f"SSM parameter {PARAMETER} (ECR_MIRROR_CONFIG_PARAMETER) does not exist; "
            "write the mirror config into it"),
    ("s3", f"s3://{BUCKET}/{KEY} ({config_s3.ENV}) does not exist; upload the mirror config: "
           f"aws s3 cp mirror.yaml s3://{BUCKET}/{KEY}"),
    (None, "ECR_MIRROR_CONFIG_PARAMETER is not set: the scheduler has no mirror config")])
def test_a_config_that_cannot_be_read_is_one_plan_error_saying_what_to_do(stack, monkeypatch, store, expected):
    if store == "s3":
        use_s3(monkeypatch)
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=KEY)
    elif store == "ssm":
        boto3.client("ssm").delete_parameter(Name=PARAMETER)
    else:
        monkeypatch.delenv("ECR_MIRROR_CONFIG_PARAMETER")
    for event in ({}, {"dryRun": True}):
        answer = scheduler.handler(event, FakeContext())
        assert (answer["errors"], answer["queued"]) == (1, 0), answer
        assert answer["errorDetails"] == [{"entry": "config", "message": expected}]
    assert stack.drain(stack.plan_url) == []


@pytest.mark.parametrize("store", ["s3", "ssm"])
def test_an_unreachable_config_store_is_one_plan_error_naming_it(stack, monkeypatch, store):
    if store == "s3":
        use_s3(monkeypatch)
    with socket.socket() as closed:  # a port nothing listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{store.upper()}", f"http://127.0.0.1:{closed.getsockname()[1]}")
        answer = scheduler.handler({}, FakeContext())
    assert (answer["errors"], answer["queued"]) == (1, 0), answer
    message = answer["errorDetails"][0]["message"]
    where = f"s3://{BUCKET}/{KEY}" if store == "s3" else f"SSM parameter {PARAMETER}"
    assert message.startswith(f"cannot read the config from {where}: ") and "127.0.0.1" in message, message
