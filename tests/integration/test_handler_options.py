"""`referrers` and `verify` through every function: config → scheduler → SQS → worker,
CopyOne events, and a rejected image as a final outcome.

The engine is watched where `Mirror.copy` hands it the options (`copy_image`,
called for real): what it received is what the user configured, the keys read
from SSM / Secrets Manager by the worker, never by the scheduler. What lands in
ECR is then checked: images signed here with cosign's formats (ecr_mirror_testing.cosign)
are copied with their signatures, unsigned ones are rejected and left out.
"""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import keys, mirror
from ecr_mirror.copy.options import ReferrerPolicy
from ecr_mirror.copy.report import REJECTED, CopyReport
from ecr_mirror.handlers import worker
from ecr_mirror_testing.artifacts import make_sbom, push_fallback_index, subject_tag
from ecr_mirror_testing.cosign import Signer
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, deliver, sqs_record
from tests.integration.conftest import ecr_image
from tests.integration.test_schedule import EVENTS, PARAMETER, app, scheduled_run  # noqa: F401

pytestmark = pytest.mark.integration
SBOM = "application/spdx+json"
SIGNER, NEXT_SIGNER = Signer.generate(), Signer.generate()
PUBLIC, NEXT = SIGNER.public_pem, NEXT_SIGNER.public_pem


def ecr_digests(ecr, repository: str) -> dict[str, str]:
    """Digest → a tag of it ('' when untagged) for every image in an ECR repository."""
    held: dict[str, str] = {}
    for image in ecr.list_images(repositoryName=repository)["imageIds"]:
        if image.get("imageTag") or image["imageDigest"] not in held:
            held[image["imageDigest"]] = image.get("imageTag", "")
    return held


@pytest.fixture
def engine(monkeypatch):
    """The options each copy_image call received, in order (the real engine runs)."""
    seen = []
    real = mirror.copy_image

    def watched(client, ref, repository, tag, options, **kwargs):
        seen.append(options)
        return real(client, ref, repository, tag, options, **kwargs)

    monkeypatch.setattr(mirror, "copy_image", watched)
    monkeypatch.setattr(keys, "_cache", {})
    return seen


@pytest.fixture
def cosign_keys(app):
    """The public keys the events/ files name, where they name them."""
    boto3.client("ssm").put_parameter(Name="/ecr-mirror/cosign.pub", Value=PUBLIC.decode(),
                                      Type="SecureString", Overwrite=True)
    boto3.client("secretsmanager").create_secret(Name="ecr-mirror/cosign-next",
                                                 SecretString=NEXT.decode())


def test_the_scheduler_queues_each_entrys_options_and_the_worker_copies_with_them(
        app, registry, ecr, engine, cosign_keys):
    sqs, queue_url = app
    nginx = make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("opt-nginx")],
                       oci=True)
    sbom = make_sbom(registry.url, "library/nginx", nginx)
    push_fallback_index(registry.url, "library/nginx", nginx.digest, [sbom])
    redis = make_image(registry.url, "library/redis", "7", layers=[layer_bytes("opt-redis")])
    signature = SIGNER.push_sig_tag(registry.url, "library/redis", redis.digest)
    make_image(registry.url, "library/busybox", "1", layers=[layer_bytes("opt-busybox")])  # unsigned
    boto3.client("ssm").put_parameter(Name=PARAMETER, Overwrite=True, Type="String", Value=f"""
defaults:
  referrers: {{artifactTypes: [{SBOM}]}}
images:
  - source: nginx
    tags: [stable]
  - source: redis
    tags: ['7']
    referrers: false
    verify: {{cosignKey: "ssm:/ecr-mirror/cosign.pub"}}
  - source: busybox
    tags: ['1']
    verify: {{cosignKey: "ssm:/ecr-mirror/cosign.pub"}}
""")
    result = scheduled_run()
    assert (result["queued"], result["errors"]) == (3, 0), result
    assert not engine  # the scheduler plans; it neither copies nor reads keys
    bodies = {}
    while True:
        messages, failed = deliver(sqs, queue_url, worker.handler)
        if not messages:
            break
        assert not failed  # a rejected image is final: not handed back to SQS
        bodies.update({json.loads(m["Body"])["target"]: json.loads(m["Body"]) for m in messages})
    nginx_target, redis_target = "mirror/dockerhub/library/nginx:stable", "mirror/dockerhub/library/redis:7"
    assert bodies[nginx_target]["referrers"] == {"artifactTypes": [SBOM]}
    assert bodies[redis_target]["verify"] == {"cosignKey": "ssm:/ecr-mirror/cosign.pub"}  # the spec only
    gated = [o for o in engine if o.verify]
    assert [o.verify.keys for o in gated] == [(PUBLIC,), (PUBLIC,)]
    # busybox takes the defaults' referrers; redis turned them off.
    assert {o.referrers for o in engine} == {ReferrerPolicy((SBOM,)), None}
    # nginx arrived with its SBOM (subject intact) and the fallback tag listing it.
    nginx_repo = "mirror/dockerhub/library/nginx"
    assert ecr_image(ecr, nginx_repo, tag="stable")["imageId"]["imageDigest"] == nginx.digest
    assert ecr_image(ecr, nginx_repo, digest=sbom.digest)["imageManifest"] == sbom.raw.decode()
    assert subject_tag(nginx.digest) in ecr_digests(ecr, nginx_repo).values()
    # redis was signed by the key: copied, and without its signature (referrers: false).
    redis_repo = "mirror/dockerhub/library/redis"
    assert ecr_image(ecr, redis_repo, tag="7")["imageId"]["imageDigest"] == redis.digest
    assert signature.digest not in ecr_digests(ecr, redis_repo)
    # busybox is unsigned: rejected, nothing of it in ECR.
    assert not ecr.describe_repositories()["repositories"] or "mirror/dockerhub/library/busybox" not in {
        r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}


@pytest.mark.parametrize("name", ["copy-one-signed.json", "sqs-copy-signed.json"])
def test_the_signed_event_files_copy_a_signed_image_with_its_signature(app, registry, ecr, engine,
                                                                       cosign_keys, name):
    nginx = make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("signed-event")],
                       oci=True)
    legacy = NEXT_SIGNER.push_sig_tag(registry.url, "library/nginx", nginx.digest)  # the next key
    referrer = SIGNER.referrer(registry.url, "library/nginx", nginx)
    push_fallback_index(registry.url, "library/nginx", nginx.digest, [referrer])
    event = json.loads((EVENTS / name).read_text())
    answer = worker.handler(event, FakeContext())
    [options] = engine
    repository = event.get("target") or json.loads(event["Records"][0]["body"])["target"]
    repository = repository.rsplit(":", 1)[0]
    held = ecr_digests(ecr, repository)
    assert held.get(nginx.digest) == "stable"
    assert referrer.digest in held  # the OCI 1.1 signature, subject intact
    if name == "sqs-copy-signed.json":
        assert answer == {"batchItemFailures": []}
        assert options.referrers == ReferrerPolicy()
        assert options.verify.keys == (PUBLIC, NEXT)  # the current key and the next, for a rotation
        assert held.get(legacy.digest) == subject_tag(nginx.digest, ".sig")  # cosign verify finds it
    else:
        assert answer["status"] == "copied", answer.get("error")
        assert options.referrers.artifact_types == (
            "application/vnd.dev.cosign.artifact.sig.v1+json", SBOM)
        assert options.verify.keys == (PUBLIC,)


def test_an_unsigned_image_is_rejected_through_copyone_and_nothing_lands(app, registry, ecr, engine,
                                                                        cosign_keys):
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("unsigned-event")])
    answer = worker.handler(json.loads((EVENTS / "copy-one-signed.json").read_text()), FakeContext())
    assert answer["status"] == "rejected" and answer["rejectedReason"].startswith("no signature found")
    assert "mirror/nginx" not in {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}


def test_a_key_the_worker_cannot_read_fails_the_image_naming_the_key(app, registry, ecr, engine):
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("no-key")])
    body = json.dumps({"source": "docker.io/library/nginx:stable", "target": "mirror/nokey:stable",
                       "verify": {"cosignKey": "ssm:/ecr-mirror/absent.pub"}})
    answer = worker.handler({"Records": [sqs_record(body, "m-nokey")]}, FakeContext())
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m-nokey"}]  # retried, then the DLQ
    assert not engine  # nothing was copied without its gate
    direct = worker.handler(json.loads(body), FakeContext())
    assert direct["status"] == "failed" and direct["error"]["type"] == "CosignKeyError"
    assert "ssm:/ecr-mirror/absent.pub: ParameterNotFound" in direct["error"]["message"]


def test_a_rejected_image_is_final_and_counted(app, monkeypatch, capsys):
    """The worker's handling of the gate's answer (the engine's verdict is the gate's
    tests' business): a rejected report is not retried, it is recorded."""
    sqs, queue_url = app
    boto3.client("ssm").put_parameter(Name="/ecr-mirror/cosign.pub", Value=PUBLIC.decode(),
                                      Type="String", Overwrite=True)
    monkeypatch.setattr(keys, "_cache", {})

    def gate(client, ref, repository, tag, options, *, target_name):
        assert options.verify.keys == (PUBLIC,)
        return CopyReport(source=str(ref), target=target_name, status=REJECTED,
                          rejected_reason="no cosign signature verifies with ssm:/ecr-mirror/cosign.pub")

    monkeypatch.setattr(mirror, "copy_image", gate)
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({
        "source": "docker.io/library/nginx:stable", "target": "mirror/gated:stable",
        "verify": {"cosignKey": "ssm:/ecr-mirror/cosign.pub"}}))
    capsys.readouterr()
    messages, failed = deliver(sqs, queue_url, worker.handler)
    assert len(messages) == 1 and not failed  # deleted: another try finds the same signatures
    assert deliver(sqs, queue_url, worker.handler) == ([], set())
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{") and "_aws" in line]
    assert [m.get("ImagesRejected") for m in emitted if "ImagesRejected" in m] == [[1.0]]
    assert not any("ImagesFailed" in m for m in emitted)
