"""The scheduled application end to end: SSM config → scheduler → SQS → worker → ECR.

Every AWS service is moto's (server mode; ECR with ECR's rules enforced), the
source is the real distribution registry standing in for Docker Hub, and the
queue is drained through the real worker handler the way Lambda's SQS event
source does: a batch of records in, failed ones left on the queue.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from ecr_mirror import queue
from ecr_mirror.handlers import common, scheduler, warm, worker
from ecr_mirror_testing.images import layer_bytes, make_image, make_index
from ecr_mirror_testing.lambdas import FakeContext, deliver, sqs_record
from tests.integration.conftest import ecr_image

pytestmark = pytest.mark.integration
EVENTS = Path(__file__).resolve().parents[2] / "events"
PARAMETER = "/ecr-mirror/config"
CONFIG = """
registries:
  docker.io:
    credentials: ecr-mirror/dockerhub
defaults:
  targetPrefix: mirror
images:
  - source: nginx
    tags: [stable, mainline]
  - source: library/redis
    tags: ["7.*"]
  - source: bitnami/app
    semver: ">=1.0 <2"
"""


@pytest.fixture
def app(monkeypatch, source, ecr, ecr_endpoint):
    """The stack's environment and AWS resources, on the emulator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="ecr-mirror-copy")["QueueUrl"]
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=CONFIG, Type="String", Overwrite=True)
    boto3.client("secretsmanager").create_secret(
        Name="ecr-mirror/dockerhub", SecretString=json.dumps({"username": "u", "password": "p"}))
    for name, value in {"ECR_MIRROR_CONFIG_PARAMETER": PARAMETER, "ECR_MIRROR_QUEUE_URL": queue_url,
                        "ECR_MIRROR_PREFIX": "mirror", "POWERTOOLS_METRICS_NAMESPACE": "EcrMirrorTest",
                        "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={source.url}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(warm, "_mirror", None)
    monkeypatch.setattr(common, "_cache", {})
    return sqs, queue_url


def seed(registry) -> dict[str, str]:
    """Seven tags in three repositories; returns source (familiar) -> digest."""
    images = {
        "nginx:stable": make_index(registry.url, "library/nginx", "stable",
                                   platforms=[("linux", "amd64", None), ("linux", "arm64", None)]),
        "nginx:mainline": make_image(registry.url, "library/nginx", "mainline",
                                     layers=[layer_bytes("mainline")]),
    }
    for tag in ("7.2.1", "7.2.2", "7.4.0", "8.0.0"):
        images[f"redis:{tag}"] = make_image(registry.url, "library/redis", tag,
                                            layers=[layer_bytes("redis-base"), layer_bytes(tag)])
    for tag in ("0.9.0", "1.0.0", "1.1.0", "2.0.0"):
        images[f"bitnami/app:{tag}"] = make_image(registry.url, "bitnami/app", tag,
                                                  layers=[layer_bytes(f"app-{tag}")])
    return {k: v.digest for k, v in images.items()}


EXPECTED = {  # what the config selects, and where it lands
    "nginx:stable": "mirror/dockerhub/library/nginx:stable",
    "nginx:mainline": "mirror/dockerhub/library/nginx:mainline",
    "redis:7.2.1": "mirror/dockerhub/library/redis:7.2.1",
    "redis:7.2.2": "mirror/dockerhub/library/redis:7.2.2",
    "redis:7.4.0": "mirror/dockerhub/library/redis:7.4.0",
    "bitnami/app:1.0.0": "mirror/dockerhub/bitnami/app:1.0.0",
    "bitnami/app:1.1.0": "mirror/dockerhub/bitnami/app:1.1.0",
}


def scheduled_run() -> dict:
    return scheduler.handler(json.loads((EVENTS / "scheduled.json").read_text()), FakeContext())


def queued_targets(sqs, queue_url) -> list[str]:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def drain(sqs, queue_url) -> list[str]:
    """Feed every message to the worker, as Lambda's event source would."""
    copied = []
    while True:
        messages, failed = deliver(sqs, queue_url, worker.handler)
        if not messages:
            return copied
        assert not failed, failed
        copied += [json.loads(m["Body"])["target"] for m in messages]


def test_schedule_queues_what_changed_and_the_worker_copies_it(app, registry, ecr, source):
    sqs, queue_url = app
    digests = seed(registry)

    dry = scheduler.handler(json.loads((EVENTS / "dry-run.json").read_text()), FakeContext())
    assert dry["dryRun"] and dry["queued"] == 0 and queued_targets(sqs, queue_url) == 0
    assert sorted(j["target"] for j in dry["jobs"]) == sorted(EXPECTED.values())

    source.reset_counts()
    first = scheduled_run()
    assert (first["planned"], first["unchanged"], first["queued"], first["errors"]) == (7, 0, 7, 0)
    assert source.counts["GET manifest"] == 0  # planning never pulls
    assert sorted(drain(sqs, queue_url)) == sorted(EXPECTED.values())
    for name, target in EXPECTED.items():
        repository, tag = target.rsplit(":", 1)
        assert ecr_image(ecr, repository, tag=tag)["imageId"]["imageDigest"] == digests[name]

    source.reset_counts()
    second = scheduled_run()
    assert (second["planned"], second["unchanged"], second["queued"]) == (7, 7, 0)
    assert queued_targets(sqs, queue_url) == 0
    assert source.counts["GET manifest"] == 0 and source.counts["GET blob"] == 0

    moved = make_image(registry.url, "library/redis", "7.2.2",
                       layers=[layer_bytes("redis-base"), layer_bytes("7.2.2-fix")])
    third = scheduled_run()
    assert (third["unchanged"], third["queued"]) == (6, 1)
    assert drain(sqs, queue_url) == ["mirror/dockerhub/library/redis:7.2.2"]
    assert ecr_image(ecr, "mirror/dockerhub/library/redis", tag="7.2.2")["imageId"]["imageDigest"] \
        == moved.digest


def test_a_failing_image_is_reported_alone_and_stays_queued(app, registry, ecr):
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("ok")])
    good = json.dumps({"source": "docker.io/library/nginx:stable", "target": "mirror/ok:stable"})
    bad = json.dumps({"source": "docker.io/library/nginx:absent", "target": "mirror/bad:absent"})
    event = {"Records": [sqs_record(good, "good", "r1"), sqs_record(bad, "bad", "r2")]}
    answer = worker.handler(event, FakeContext())
    assert answer["batchItemFailures"] == [{"itemIdentifier": "bad"}]
    assert ecr_image(ecr, "mirror/ok", tag="stable")


def test_config_errors_are_reported_and_good_entries_still_run(app, registry, monkeypatch):
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("cfg")])
    boto3.client("ssm").put_parameter(Name=PARAMETER, Overwrite=True, Type="String", Value="""
images:
  - source: nginx
    tags: [stable]
  - source: NotValid
    tags: [x]
  - source: library/missing
    tags: ["*"]
  - source: busybox
    target: elsewhere/busybox
    tags: [latest]
""")
    result = scheduled_run()
    assert result["queued"] == 1
    entries = " ".join(e["entry"] + " " + e["message"] for e in result["errorDetails"])
    assert "images[1] (NotValid)" in entries and "lowercase" in entries
    assert "images[2] (library/missing)" in entries
    assert "images[3] (busybox)" in entries and "prefix" in entries


@pytest.mark.parametrize("name", ["copy-one.json", "sqs-copy.json"])
def test_worker_event_files_run_through_the_worker(app, registry, ecr, name):
    index = make_index(registry.url, "library/nginx", "stable", platforms=[("linux", "amd64", None)])
    answer = worker.handler(json.loads((EVENTS / name).read_text()), FakeContext())
    if name == "sqs-copy.json":
        assert answer == {"batchItemFailures": []}
        assert ecr_image(ecr, "mirror/dockerhub/library/nginx", tag="stable")["imageId"]["imageDigest"] \
            == index.digest
    else:
        assert answer["status"] == "copied" and answer["targetDigest"] == index.digest


def test_time_running_out_hands_the_image_back_untagged(app, registry, ecr, monkeypatch):
    monkeypatch.setattr(queue, "RETRY_DELAY_SECONDS", 0)  # to read the message back at once
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("late")])
    body = json.dumps({"source": "docker.io/library/nginx:stable", "target": "mirror/late:stable"})
    record = sqs_record(body)
    sqs, queue_url = app
    answer = worker.handler({"Records": [record]}, FakeContext(remaining_ms=30_000))  # < 60 s margin
    assert answer["batchItemFailures"] == []  # handed back as a new message, not failed
    again = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(again[0]["Body"])
    assert body["source"] == "docker.io/library/nginx:stable" and body["timeouts"] == 1
    assert body["notBefore"] > 0
    images = ecr.list_images(repositoryName="mirror/late")["imageIds"] if _exists(ecr, "mirror/late") else []
    assert not [i for i in images if i.get("imageTag") == "stable"]


def _exists(ecr, name: str) -> bool:
    try:
        ecr.describe_repositories(repositoryNames=[name])
        return True
    except ecr.exceptions.RepositoryNotFoundException:
        return False


def test_every_event_file_is_exercised_by_these_tests():
    """A new file in events/ must get a test through its handler here."""
    exercised = {"scheduled.json", "dry-run.json", "copy-one.json", "sqs-copy.json",
                 "copy-one-signed.json", "sqs-copy-signed.json"}  # test_handler_options.py
    assert {p.name for p in EVENTS.glob("*.json")} == exercised


def test_a_failed_image_comes_back_in_a_minute_and_reaches_the_dlq_after_three(app, ecr, monkeypatch):
    sqs, queue_url = app
    dlq = sqs.create_queue(QueueName="ecr-mirror-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={
        "VisibilityTimeout": "5400",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})
    monkeypatch.setattr(queue, "RETRY_DELAY_SECONDS", 0)  # a minute on AWS; now, here
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(
        {"source": "docker.io/library/nginx:absent", "target": "mirror/absent:absent"}))
    for _ in range(3):
        messages, failed = deliver(sqs, queue_url, worker.handler)
        assert len(messages) == 1 and len(failed) == 1  # back at once, not after 90 minutes
    assert deliver(sqs, queue_url, worker.handler) == ([], set())
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(dead[0]["Body"])["source"] == "docker.io/library/nginx:absent"
