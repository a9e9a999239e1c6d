"""Acceptance 2: a config large enough to shard, planned through PlanQueue.

The real scheduler handler splits the config; its shard messages come back to
the same handler as Lambda's event source would deliver them (lambdas.deliver);
the source is the Docker Hub simulator (pull budget headers) in front of the
real distribution registry; ECR is the strict emulator; SQS, SSM and DynamoDB
are moto's. A small PlanShardTags makes a small config shard.
"""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import queue
from ecr_mirror.handlers import common, config_s3, scheduler, warm
from ecr_mirror_testing.dockerhub import DockerHubSimulator
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, deliver
from tests.integration.conftest import create_lease_table

pytestmark = pytest.mark.integration
PARAMETER = "/ecr-mirror/config"
TABLE = "ecr-mirror-leases"
#: Five entries, eleven tags; c and d write to one repository (they share a shard).
CONFIG = """
images:
  - source: library/a
    tags: ['1', '2', '3']
  - source: library/b
    tags: ['1', '2', '3']
  - source: library/c
    tags: [c1, c2]
    target: mirror/shared
  - source: library/e
    tags: ['1', '2']
  - source: library/d
    tags: [d1]
    target: mirror/shared
"""
IMAGES = {"a": ["1", "2", "3"], "b": ["1", "2", "3"], "c": ["c1", "c2"], "d": ["d1"], "e": ["1", "2"]}


@pytest.fixture
def hub(registry):
    for name, tags in IMAGES.items():
        for tag in tags:
            make_image(registry.url, f"library/{name}", tag, layers=[layer_bytes(f"shard-{name}-{tag}", 256)])
    with DockerHubSimulator(registry.url, limits={"anonymous": 100}, window=3600) as sim:
        yield sim


class Stack:
    def __init__(self, monkeypatch, hub, ecr_endpoint) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
        self.sqs = boto3.client("sqs")
        self.dynamodb = boto3.client("dynamodb")
        dlq = self.sqs.create_queue(QueueName="plan-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.plan_dlq = dlq
        self.plan_url = self.sqs.create_queue(QueueName="plan", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
        self.copy_url = self.sqs.create_queue(QueueName="copy")["QueueUrl"]
        create_lease_table(TABLE, self.dynamodb)
        boto3.client("ssm").put_parameter(Name=PARAMETER, Value=CONFIG, Type="String", Overwrite=True)
        for name, value in {"ECR_MIRROR_CONFIG_PARAMETER": PARAMETER, "ECR_MIRROR_QUEUE_URL": self.copy_url,
                            "ECR_MIRROR_PLAN_QUEUE_URL": self.plan_url, "ECR_MIRROR_LEASE_TABLE": TABLE,
                            "ECR_MIRROR_PLAN_SHARD_TAGS": "3", "ECR_MIRROR_PREFIX": "mirror",
                            "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={hub.url}",
                            "POWERTOOLS_METRICS_NAMESPACE": "EcrMirrorTest"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv(config_s3.ENV, raising=False)
        monkeypatch.setattr(warm, "_mirror", None)
        monkeypatch.setattr(common, "_cache", {})
        monkeypatch.setattr(queue, "MAX_SQS_DELAY", 0)  # SQS delays are real time
        monkeypatch.setattr(queue, "RETRY_DELAY_SECONDS", 0)  # a failed shard is back at once

    def drain(self, url: str) -> list[dict]:
        bodies = []
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return bodies
            for m in got:
                bodies.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def plan_shards(self) -> tuple[list[dict], int]:
        """Deliver PlanQueue to the scheduler handler until it is empty: (messages, failures)."""
        delivered, failures = [], 0
        for _ in range(50):
            messages, failed = deliver(self.sqs, self.plan_url, scheduler.handler, batch_size=1)
            if not messages:
                return delivered, failures
            delivered += messages
            failures += len(failed)
        raise AssertionError("PlanQueue never drained")


@pytest.fixture
def stack(monkeypatch, hub, ecr, ecr_endpoint):
    return Stack(monkeypatch, hub, ecr_endpoint)


def key(job: dict) -> tuple[str, str, str]:
    return job["source"], job["target"], job["sourceDigest"]


def test_a_sharded_plan_queues_what_one_planner_would_once_within_one_budget(stack, hub):
    # One planner, in place (a dry run): the reference plan, and the shards a run would use.
    hub.set_remaining("anonymous", 6)  # one planner spends 6 pulls now, defers 5
    single = scheduler.handler({"dryRun": True}, FakeContext())
    assert (single["toCopy"], single["deferred"], single["shards"]) == (11, 5, 4), single
    assert single["queued"] == 0 and stack.drain(stack.plan_url) == []

    answer = scheduler.handler({"source": "ecr-mirror.schedule"}, FakeContext())
    assert (answer["shards"], answer["estimatedTags"], answer["errors"]) == (4, 11, 0), answer
    assert stack.drain(stack.copy_url) == []  # the scheduler itself planned nothing

    hub.fail_next("HEAD manifest", 404, times=1)  # the first shard fails once...
    delivered, failures = stack.plan_shards()
    assert failures == 1 and len(delivered) == 5  # ...and is retried: 4 shards, 5 deliveries
    shards = [json.loads(m["Body"]) for m in delivered]
    assert sorted({s["shard"] for s in shards}) == [0, 1, 2, 3]
    assert sorted(len(s["entries"]) for s in shards[1:]) == [1, 1, 1, 2]
    assert [2, 4] in [s["entries"] for s in shards]  # c and d (one repository) in one shard

    copies = stack.drain(stack.copy_url)
    assert len(copies) == len({c["target"] for c in copies}) == 11  # every tag planned once
    assert sorted(map(key, copies)) == sorted(map(key, single["jobs"]))  # as one planner
    # One budget: no more copies start now than one planner would have let start.
    now = [c for c in copies if "notBefore" not in c]
    assert len(now) == len([j for j in single["jobs"] if "notBefore" not in j]) == 6
    assert "Messages" not in stack.sqs.receive_message(QueueUrl=stack.plan_dlq)

    # A finished shard delivered again (SQS delivers at least once) queues nothing.
    stack.sqs.send_message(QueueUrl=stack.plan_url, MessageBody=delivered[-1]["Body"])
    again, failed = deliver(stack.sqs, stack.plan_url, scheduler.handler, batch_size=1)
    assert len(again) == 1 and not failed
    assert stack.drain(stack.copy_url) == []


@pytest.mark.parametrize("store", ["s3", "ssm"])
def test_shards_never_plan_a_config_changed_since_the_split(stack, hub, monkeypatch, store):
    changed = CONFIG.replace("[d1]", "[d1, d2]")
    if store == "s3":
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="config-bucket")
        s3.put_object(Bucket="config-bucket", Key="mirror.yaml", Body=CONFIG.encode())
        monkeypatch.setenv(config_s3.ENV, "s3://config-bucket/mirror.yaml")
        monkeypatch.setattr(config_s3, "_cache", {})
    assert scheduler.handler({}, FakeContext())["shards"] == 4
    # The config changes before the shards run: they must not plan the new one.
    if store == "s3":
        s3.put_object(Bucket="config-bucket", Key="mirror.yaml", Body=changed.encode())
    else:
        boto3.client("ssm").put_parameter(Name=PARAMETER, Value=changed, Type="String", Overwrite=True)
    delivered, failures = stack.plan_shards()
    assert failures == len(delivered) == 12  # 4 shards x 3 receives, loudly
    assert stack.drain(stack.copy_url) == []
    assert len(stack.drain(stack.plan_dlq)) == 4  # on to the DLQ (and its alarm)
    # The next run splits and plans the new config.
    assert scheduler.handler({}, FakeContext())["estimatedTags"] == 12


def test_a_config_within_the_limit_is_planned_in_place_as_before(stack, hub, monkeypatch):
    monkeypatch.setenv("ECR_MIRROR_PLAN_SHARD_TAGS", "11")
    answer = scheduler.handler({}, FakeContext())
    assert (answer["planned"], answer["queued"], answer["shards"]) == (11, 11, 1), answer
    assert stack.drain(stack.plan_url) == [] and len(stack.drain(stack.copy_url)) == 11


def test_an_entry_error_retries_its_shard_and_its_last_receive_queues_the_rest(stack, hub):
    boto3.client("ssm").put_parameter(Name=PARAMETER, Type="String", Overwrite=True, Value="""
images:
  - source: library/a
    tags: ['1', '2', absent]
  - source: library/b
    tags: ['1']
""")
    assert scheduler.handler({}, FakeContext())["shards"] == 2
    delivered, failures = stack.plan_shards()
    # Shard a: two receives fail (nothing queued by them), the third queues a:1 and a:2
    # and reports the absent tag, as one planner would; shard b plans at once.
    assert (len(delivered), failures) == (4, 2)
    assert sorted(c["target"] for c in stack.drain(stack.copy_url)) == [
        "mirror/dockerhub/library/a:1", "mirror/dockerhub/library/a:2", "mirror/dockerhub/library/b:1"]
    assert stack.drain(stack.plan_dlq) == []


def test_a_shard_another_invocation_is_planning_waits_for_it_and_then_plans_nothing(stack, hub):
    import time

    run = scheduler.handler({}, FakeContext())["run"]
    got = stack.sqs.receive_message(QueueUrl=stack.plan_url, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(got[0]["Body"])
    for m in got:  # only this one shard, delivered twice (SQS delivers at least once)
        stack.sqs.delete_message(QueueUrl=stack.plan_url, ReceiptHandle=m["ReceiptHandle"])
    key = {"lease": {"S": f"plan#{run}#{body['shard']}"}}
    stack.dynamodb.put_item(TableName=TABLE, Item={**key, "owner": {"S": "the-other-invocation"},
                                                   "state": {"S": "running"},
                                                   "expires": {"N": str(int(time.time()) + 600)}})
    stack.sqs.send_message(QueueUrl=stack.plan_url, MessageBody=got[0]["Body"])
    messages, failed = deliver(stack.sqs, stack.plan_url, scheduler.handler, batch_size=1)
    assert len(messages) == len(failed) == 1
    # Not tried again in a minute but when the other's claim ends; meanwhile nothing queued.
    assert deliver(stack.sqs, stack.plan_url, scheduler.handler)[0] == []
    assert stack.drain(stack.copy_url) == []
    # The other invocation finishes; the waiting delivery then plans nothing.
    stack.dynamodb.update_item(TableName=TABLE, Key=key, UpdateExpression="SET #s = :d",
                               ExpressionAttributeNames={"#s": "state"},
                               ExpressionAttributeValues={":d": {"S": "done"}})
    stack.sqs.change_message_visibility(QueueUrl=stack.plan_url, ReceiptHandle=messages[0]["ReceiptHandle"],
                                        VisibilityTimeout=0)  # the delay's end, without waiting for it
    again, failed = deliver(stack.sqs, stack.plan_url, scheduler.handler, batch_size=1)
    assert len(again) == 1 and not failed
    assert stack.drain(stack.copy_url) == []
