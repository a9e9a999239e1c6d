"""Never lose a sync to Docker Hub's rate limit: the scenarios, end to end.

The source is the Docker Hub simulator (bearer tokens, a pull budget per
window with Docker Hub's headers and 429 body, blobs on a "CDN" that refuses
Authorization) in front of the real distribution registry. The scheduler and
the worker are the real handlers on moto's SSM and SQS (with a DLQ after 3
receives) and the strict ECR. The window never passes by wall time: the test
resets the simulator's budget and moves the handlers' clocks past it.
"""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import queue
from ecr_mirror.handlers import common, copy_one, scheduler, warm, worker
from ecr_mirror_testing.dockerhub import DockerHubSimulator
from ecr_mirror_testing.images import layer_bytes, make_image, make_index
from ecr_mirror_testing.lambdas import FakeContext, deliver
from tests.integration.conftest import MiB, ecr_image, tags_in_ecr

pytestmark = pytest.mark.integration
PARAMETER = "/ecr-mirror/config"
WINDOW = 3600


class Clock:
    """The handlers' wall clock, stepped by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(queue, "clock", c)  # the scheduler's and the worker's
    # SQS delays are real time: keep them at zero so the test sees every message.
    monkeypatch.setattr(queue, "MAX_SQS_DELAY", 0)
    return c


@pytest.fixture
def hub(registry):
    with DockerHubSimulator(registry.url, limits={"anonymous": 5}, window=WINDOW) as sim:
        yield sim


@pytest.fixture
def stack(monkeypatch, hub, ecr, ecr_endpoint, clock):
    """The deployed stack's queue (with its DLQ) and environment, on the emulator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="ecr-mirror-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName="ecr-mirror-copy", Attributes={
        "VisibilityTimeout": "0",  # a failed message is back at once, to count receives
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    for name, value in {"ECR_MIRROR_CONFIG_PARAMETER": PARAMETER, "ECR_MIRROR_QUEUE_URL": queue_url,
                        "ECR_MIRROR_PREFIX": "mirror", "ECR_MIRROR_REGISTRY_ENDPOINTS": f"docker.io={hub.url}",
                        "POWERTOOLS_METRICS_NAMESPACE": "EcrMirrorTest"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(warm, "_mirror", None)
    monkeypatch.setattr(common, "_cache", {})
    return sqs, queue_url, dlq_url


def write_config(text: str) -> None:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=text, Type="String", Overwrite=True)


def schedule() -> dict:
    return scheduler.handler({"source": "ecr-mirror.schedule"}, FakeContext())


def drain(sqs, queue_url, clock) -> dict[str, int]:
    """Run every message that is due through the worker, as Lambda would; stop
    when only messages waiting for a later window are left."""
    failures = 0
    for _ in range(200):
        messages, failed = deliver(sqs, queue_url, worker.handler)
        failures += len(failed)
        due = [m for m in messages if float(json.loads(m["Body"]).get("notBefore") or 0) <= clock()]
        if not due:  # empty, or everything left waits for the window: the next run's job
            return {"failed": failures}
    raise AssertionError("the queue never drained")


def test_fifty_unchanged_tags_cost_no_counted_pull(stack, hub, registry, ecr, clock):
    sqs, queue_url, _ = stack
    hub_limit = 200
    hub.set_remaining("anonymous", hub_limit)
    tags = [f"1.{i}.0" for i in range(50)]
    for tag in tags:
        make_image(registry.url, "library/fifty", tag, layers=[layer_bytes(f"fifty-{tag}", 512)])
    write_config("images:\n  - source: library/fifty\n    semver: '>=1'\n")
    hub.reset_window()
    hub.set_remaining("anonymous", hub_limit)
    assert schedule()["queued"] == 50
    drain(sqs, queue_url, clock)
    assert len(tags_in_ecr(ecr, "mirror/dockerhub/library/fifty")) == 50

    hub.reset_counts()
    result = schedule()
    drain(sqs, queue_url, clock)
    assert (result["planned"], result["unchanged"], result["queued"]) == (50, 50, 0)
    assert hub.pulls() == 0 and hub.counts["GET manifest"] == 0 and hub.counts["GET blob"] == 0


def test_a_small_budget_copies_what_it_can_defers_the_rest_and_completes_later(
        stack, hub, registry, ecr, clock):
    sqs, queue_url, dlq_url = stack
    upstream = {}
    for i in range(12):
        tag = f"2.{i}.0"
        upstream[tag] = make_image(registry.url, "library/budget", tag,
                                   layers=[layer_bytes("budget-base"), layer_bytes(f"budget-{tag}")]).digest
    write_config("registries:\n  docker.io: {reserve: 1}\n"
                 "images:\n  - source: library/budget\n    tags: ['2.*']\n")
    hub.reset_window()  # 5 pulls per window, 1 kept in reserve: 4 images a window

    first = schedule()
    assert (first["queued"], first["deferred"]) == (12, 8)
    drain(sqs, queue_url, clock)
    assert len(tags_in_ecr(ecr, "mirror/dockerhub/library/budget")) == 4
    assert hub.remaining() == 1  # the reserve was kept

    windows = 1
    while len(tags_in_ecr(ecr, "mirror/dockerhub/library/budget")) < 12:
        assert windows < 6, "the deferred images never completed"
        hub.reset_window()
        clock.now += WINDOW + 1
        drain(sqs, queue_url, clock)
        assert hub.remaining() >= 1
        windows += 1
    assert windows == 3  # 4 + 4 + 4

    assert tags_in_ecr(ecr, "mirror/dockerhub/library/budget") == upstream
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    assert schedule()["queued"] == 0


def test_a_429_in_the_middle_of_an_index_moves_no_tag_and_completes_later(
        stack, hub, registry, ecr, clock):
    sqs, queue_url, dlq_url = stack
    old = make_index(registry.url, "library/multi", "stable",
                     platforms=[("linux", "amd64", None), ("linux", "arm64", None)])
    write_config("images:\n  - source: library/multi\n    tags: [stable]\n")
    hub.reset_window()
    hub.set_remaining("anonymous", 100)
    schedule()
    drain(sqs, queue_url, clock)
    assert tags_in_ecr(ecr, "mirror/dockerhub/library/multi")["stable"] == old.digest

    new = make_index(registry.url, "library/multi", "stable", layer_size=5000,
                     platforms=[("linux", "amd64", None), ("linux", "arm64", None), ("linux", "s390x", None)])
    hub.reset_counts()
    hub.fail_manifest_get_after(2)  # the index and one child, then 429 TOOMANYREQUESTS
    assert schedule()["queued"] == 1
    outcome = drain(sqs, queue_url, clock)
    assert outcome["failed"] == 0  # deferred, not failed
    # Children are fetched in parallel: each one started before the first 429 stopped
    # the rest may meet one (how many depends on the threads), but none is retried.
    gets = [path for _, method, path, _ in hub.requests if method == "GET" and "/manifests/" in path]
    assert len(gets) == len(set(gets)), gets
    assert 1 <= hub.counts["pull-limit"] <= len(new.children) - 1
    assert tags_in_ecr(ecr, "mirror/dockerhub/library/multi")["stable"] == old.digest

    hub.reset_window()
    hub.set_remaining("anonymous", 100)
    hub.reset_counts()
    clock.now += WINDOW + 1
    drain(sqs, queue_url, clock)
    assert tags_in_ecr(ecr, "mirror/dockerhub/library/multi")["stable"] == new.digest
    # the child finished before the 429 was kept: the retry did not pull it again
    assert hub.pulls() < 1 + len(new.children)
    got = ecr_image(ecr, "mirror/dockerhub/library/multi", tag="stable")
    assert got["imageManifest"].encode() == new.raw
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)


def test_a_token_expiring_during_a_large_blob_is_refreshed_and_the_copy_completes(
        stack, hub, registry, ecr):
    big = layer_bytes("token-expiry", 16 * MiB + 321)
    image = make_image(registry.url, "library/large", "1", layers=[big])
    layer = image.json["layers"][0]["digest"]
    write_config("images: []\n")
    hub.reset_window()
    hub.drop_blob_once(layer, after_bytes=6 * MiB + 7, expire_tokens=True)
    tokens_before = hub.counts["token"]

    report = copy_one.handler({"source": "library/large:1", "target": "mirror/large:1"}, FakeContext())

    assert report["status"] == "copied", report["error"]
    assert report["targetDigest"] == image.digest
    assert hub.counts["token"] >= tokens_before + 2  # the first token, then the refresh
    assert hub.counts["cdn-auth-refused"] == 0
    assert hub.counts["cdn-dropped"] == 1
    assert ecr_image(ecr, "mirror/large", tag="1")["imageManifest"].encode() == image.raw


def test_credentials_from_secrets_manager_are_used_and_never_logged(
        stack, registry, ecr, clock, capsys, caplog, monkeypatch):
    import base64
    import logging

    password = "s3cr3t-Pa55-w0rd"
    sqs, queue_url, _ = stack
    # Our own logs at every level (botocore's DEBUG output is not ours: it
    # prints request bodies, the test's own CreateSecret included).
    caplog.set_level(logging.DEBUG, logger="ecr_mirror")
    caplog.set_level(logging.DEBUG, logger="ecr-mirror")
    import io

    lambda_log = io.StringIO()  # what CloudWatch Logs would receive from Powertools
    monkeypatch.setattr(common.logger.registered_handler, "stream", lambda_log)
    with DockerHubSimulator(registry.url, accounts={"alice": password, "bob": password},
                            limits={"alice": 1, "bob": 5}, window=WINDOW) as hub:
        monkeypatch.setenv("ECR_MIRROR_REGISTRY_ENDPOINTS", f"docker.io={hub.url}")
        for name, user in (("ecr-mirror/hub-a", "alice"), ("ecr-mirror/hub-b", "bob")):
            boto3.client("secretsmanager").create_secret(
                Name=name, SecretString=json.dumps({"username": user, "password": password}))
        for tag in ("1", "2"):
            make_image(registry.url, "library/secret", tag, layers=[layer_bytes(f"secret-{tag}")])
        capsys.readouterr()
        write_config("registries:\n  docker.io:\n    credentials: [ecr-mirror/hub-a, ecr-mirror/hub-b]\n"
                     "images:\n  - source: library/secret\n    tags: ['1', '2']\n")
        assert schedule()["queued"] == 2
        drain(sqs, queue_url, clock)
        # alice's single pull went first, then bob took over
        assert (hub.pulls("alice"), hub.pulls("bob")) == (1, 1)
        assert hub.counts["cdn-auth-refused"] == 0
        tokens = {h.get("Authorization", "").split(" ", 1)[-1] for (where, _, _, h) in hub.requests
                  if where == "registry" and h.get("Authorization", "").startswith("Bearer ")}
        assert tokens
    assert set(tags_in_ecr(ecr, "mirror/dockerhub/library/secret")) == {"1", "2"}
    out = capsys.readouterr()
    # every field of every record our loggers made (Powertools puts keys in extras)
    records = [json.dumps(r.__dict__, default=str) for r in caplog.records]
    assert any("copy finished" in r and "mirror/dockerhub/library/secret" in r for r in records)
    assert '"copy finished"' in lambda_log.getvalue()
    logged = out.out + out.err + "\n".join(records) + lambda_log.getvalue()
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    for secret in [password, basic, *tokens]:
        assert secret not in logged
