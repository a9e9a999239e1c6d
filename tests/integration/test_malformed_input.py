"""Malformed input and refused reads at the entry points: a clear failed report
(the functions), a plan error (the scheduler) or one line and exit 2 (the CLI),
never an exception out of a handler nor a traceback."""

from __future__ import annotations

import json

import pytest

from ecr_mirror.handlers import copy_one, scheduler, worker
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.aws_errors import FailingAws
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, sqs_record
from tests.integration.test_schedule import app  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


@pytest.fixture
def denied_secrets(app, monkeypatch):
    """Secrets Manager refuses GetSecretValue (the role lacks the grant)."""
    with FailingAws() as aws:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", aws.url)
        yield aws


def nothing_sent(source) -> None:
    assert sum(source.counts.values()) == 0, dict(source.counts)
    assert sum(strict_ecr.calls.values()) == 0, dict(strict_ecr.calls)


@pytest.mark.parametrize("handler", [copy_one.handler, worker.handler])
def test_a_refused_secret_is_a_failed_report_from_a_direct_event(denied_secrets, source, ecr, handler):
    report = handler({"source": "nginx:stable", "target": "mirror/nginx:stable"}, FakeContext())
    assert report["status"] == "failed"
    assert report["error"]["type"] == "SecretError" and report["error"]["temporary"] is False
    message = report["error"]["message"]
    assert "ecr-mirror/dockerhub" in message and "AccessDenied" in message
    assert "secretsmanager:GetSecretValue" in message  # what to grant
    assert denied_secrets.calls == ["secretsmanager.GetSecretValue"]
    nothing_sent(source)


def test_a_refused_secret_fails_the_sqs_record_alone(denied_secrets, registry, source, ecr):
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("denied")])
    source.reset_counts()
    body = json.dumps({"source": "docker.io/library/nginx:stable", "target": "mirror/nginx:stable"})
    answer = worker.handler({"Records": [sqs_record(body, "m1")]}, FakeContext())
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    nothing_sent(source)


def test_a_refused_secret_is_a_plan_error_not_an_exception(denied_secrets, source, ecr):
    result = scheduler.handler({}, FakeContext())
    assert result["queued"] == 0 and result["errors"] >= 1
    messages = " ".join(e["message"] for e in result["errorDetails"])
    assert "SecretError" in messages and "ecr-mirror/dockerhub" in messages


@pytest.mark.parametrize("value,needle", [
    ("images: " + "[" * 1000, "nested"),
    ("images:\n  - source: nginx\n    latest: " + "9" * 5000, "5000 digits"),
    ("images:\n  - source: nginx\n    tags: [x]\n    target: other/x", '"mirror/"'),
])
def test_a_malformed_config_in_ssm_is_a_plan_error(app, source, ecr, value, needle):
    import boto3

    from tests.integration.test_schedule import PARAMETER

    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=value, Type="String", Overwrite=True,
                                      Tier="Advanced")
    result = scheduler.handler({}, FakeContext())
    assert result["queued"] == 0 and result["errors"] == 1
    assert needle in result["errorDetails"][0]["message"]
    assert "\n" not in result["errorDetails"][0]["message"]
    nothing_sent(source)


@pytest.mark.parametrize("event", [{}, {"source": "nginx:stable"}])
def test_a_refused_config_parameter_is_a_plan_error_or_a_failed_report(app, monkeypatch, source,
                                                                        ecr, event):
    with FailingAws(message="not authorized to perform: ssm:GetParameter") as ssm:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
        if event:
            report = worker.handler(event, FakeContext())
            assert report["status"] == "failed"
            message = report["error"]["message"]
        else:
            result = scheduler.handler(event, FakeContext())
            assert result["errors"] == 1 and result["queued"] == 0
            message = result["errorDetails"][0]["message"]
    assert ssm.calls == ["AmazonSSM.GetParameter"]
    assert "AccessDenied" in message and "/ecr-mirror/config" in message
    nothing_sent(source)


def _manifest(**fields) -> dict:
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": "sha256:" + "a" * 64, "size": 12}
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {**layer, "mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [layer], **fields}


@pytest.mark.parametrize("raw,needle", [
    (json.dumps(_manifest()).encode("utf-16"), "UTF-8"),
    (json.dumps(_manifest(layers="sha256:abc")).encode(), "layers must be a list"),
    (json.dumps(_manifest(layers=[{"mediaType": "x", "size": 1}])).encode(), "layers[0].digest"),
    (json.dumps(_manifest(layers=[{"digest": "sha256:" + "a" * 64, "size": "12abc"}])).encode(),
     "layers[0].size"),
])
def test_a_malformed_manifest_is_a_failed_report_naming_the_field(ecr, raw, needle):
    from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
    from ecr_mirror_testing.fixed_registry import FixedRegistry
    from tests.integration.conftest import FAST_RETRY

    with FixedRegistry({"bad/image:1": (raw, "application/vnd.oci.image.manifest.v1+json")}) as reg:
        mirror = Mirror(MirrorSettings(registries={reg.host: SourceRegistry(insecure=True)},
                                       region="us-east-1", retry=FAST_RETRY), ecr_client=ecr)
        report = mirror.copy(f"{reg.host}/bad/image:1", "mirror/bad:1")
    assert report.status == "failed" and report.error["type"] == "InvalidManifest"
    assert report.error["temporary"] is False and reg.counts["GET manifest"] == 1  # not retried
    assert f"{reg.host}/bad/image:1" in report.error["message"] and needle in report.error["message"]
    written = ("CreateRepository", "InitiateLayerUpload", "PutImage")
    assert not any(strict_ecr.calls[c] for c in written), dict(strict_ecr.calls)


@pytest.mark.parametrize("event", [{"dryRun": "false"}, {"dryRun": 1}])
def test_a_scheduler_event_with_a_malformed_dry_run_is_a_plan_error(app, source, ecr, event):
    sqs, queue_url = app
    result = scheduler.handler(event, FakeContext())
    assert result["errors"] == 1 and result["queued"] == 0
    assert "dryRun" in result["errorDetails"][0]["message"]
    assert not sqs.receive_message(QueueUrl=queue_url).get("Messages")
    nothing_sent(source)
