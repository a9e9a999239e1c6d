"""One target check for every entry point: the whole string is validated, the
functions' prefix is enforced, and a refused target costs no request at all,
neither to the source registry nor to ECR."""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import cli
from ecr_mirror.handlers import copy_one, scheduler, worker
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, sqs_record
from tests.integration.test_entrypoints import lambda_env  # noqa: F401 (fixture)
from tests.integration.test_schedule import PARAMETER, app  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

NEWLINE_TARGET = "mirror/x\n:v1"  # `re.match(...$)` accepted it
OUTSIDE = "outside/pwned:v1"


def nothing_sent(source) -> None:
    assert sum(source.counts.values()) == 0, dict(source.counts)
    assert sum(strict_ecr.calls.values()) == 0, dict(strict_ecr.calls)


def sqs_body(target: str, **extra) -> str:
    return json.dumps({"source": "docker.io/library/nginx:stable", "target": target, **extra})


@pytest.mark.parametrize("target,needle", [(OUTSIDE, '"mirror/"'), (NEWLINE_TARGET, r'"mirror/x\n:v1"')])
@pytest.mark.parametrize("extra", [{}, {"notBefore": 4_102_444_800}])  # also before a deferral
def test_an_sqs_record_with_a_bad_target_fails_before_any_request(app, registry, source, ecr,
                                                                    caplog, target, needle, extra):
    sqs, queue_url = app
    make_image(registry.url, "library/nginx", "stable", layers=[layer_bytes("pwned")])
    source.reset_counts()
    strict_ecr.reset_calls()
    answer = worker.handler({"Records": [sqs_record(sqs_body(target, **extra), "bad")]}, FakeContext())
    assert answer["batchItemFailures"] == [{"itemIdentifier": "bad"}]
    nothing_sent(source)
    assert not sqs.receive_message(QueueUrl=queue_url).get("Messages")  # not deferred either
    failed = [r.report for r in caplog.records if getattr(r, "report", {}).get("status") == "failed"]
    assert failed and needle in failed[0]["error"]["message"]  # a clear failed report, logged


@pytest.mark.parametrize("target,needle", [(OUTSIDE, '"mirror/"'), (NEWLINE_TARGET, r'"mirror/x\n:v1"')])
@pytest.mark.parametrize("handler", [copy_one.handler, worker.handler])
def test_a_direct_event_with_a_bad_target_fails_before_any_request(lambda_env, ecr, handler,
                                                                     target, needle):
    report = handler({"source": "nginx:stable", "target": target}, FakeContext())
    assert report["status"] == "failed" and report["error"]["type"] == "UsageError"
    assert needle in report["error"]["message"]
    nothing_sent(lambda_env)


def test_the_cli_validates_the_whole_target_and_sends_nothing(source, ecr, capsys):
    assert cli.main(["copy", f"{source.host}/x:1", NEWLINE_TARGET, "--insecure"]) == 2
    assert r'"mirror/x\n:v1"' in capsys.readouterr().err
    nothing_sent(source)


def test_the_cli_writes_outside_the_functions_prefix(source, registry, ecr, repo_name,
                                                     monkeypatch, capsys):
    """The CLI runs with the user's own credentials: ECR_MIRROR_PREFIX names the
    functions' repositories, it does not restrict where a user copies."""
    monkeypatch.setenv("ECR_MIRROR_PREFIX", "mirror")
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    assert cli.main(["copy", f"{source.host}/{repo_name}:1", "team/app", "--insecure"]) == 0


@pytest.mark.parametrize("entry,needle", [
    ("  - source: nginx\n    target: other/nginx\n    tags: [stable]\n", '"mirror/"'),
    ('  - source: nginx\n    target: "mirror/x\\n"\n    tags: [stable]\n', r'"mirror/x\n"'),
    ("  - source: nginx\n    target: mirror/x:v1\n    tags: [stable]\n", "tag"),
])
def test_a_bad_config_target_is_a_plan_error_and_costs_no_request(app, source, ecr, entry, needle):
    boto3.client("ssm").put_parameter(Name=PARAMETER, Overwrite=True, Type="String",
                                      Value="images:\n" + entry)
    source.reset_counts()
    strict_ecr.reset_calls()
    result = scheduler.handler({}, FakeContext())
    assert result["queued"] == 0 and result["errors"] == 1
    assert needle in result["errorDetails"][0]["message"], result["errorDetails"]
    assert "images[0] (nginx)" in result["errorDetails"][0]["entry"]
    nothing_sent(source)


@pytest.mark.parametrize("prefix,needle", [("elsewhere", '"mirror/"'), ("Mirror", "targetPrefix")])
def test_a_target_prefix_outside_the_functions_prefix_costs_no_request(app, source, ecr, prefix, needle):
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Overwrite=True, Type="String",
        Value=f"defaults:\n  targetPrefix: {prefix}\nimages:\n  - source: nginx\n    tags: ['*']\n")
    source.reset_counts()
    strict_ecr.reset_calls()
    result = scheduler.handler({}, FakeContext())
    assert result["queued"] == 0 and result["errors"] == 1
    assert needle in " ".join(e["message"] for e in result["errorDetails"])
    nothing_sent(source)


@pytest.mark.parametrize("body,needle", [
    ("not json", "not JSON"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),             # RecursionError in json.loads
    ('["nginx"]', "JSON object"),
    (sqs_body("mirror/x:1", notBefore="soon"), "notBefore"),
    (sqs_body("mirror/x:1", notBefore=True), "notBefore"),
    ('{"source": "nginx", "target": "mirror/x:1", "notBefore": Infinity}', "notBefore"),
    (sqs_body("mirror/x:1", timeouts="x"), "timeouts"),
    (sqs_body("mirror/x:1", colour="blue"), "colour"),
])
def test_a_malformed_sqs_message_fails_alone_with_a_report(app, source, ecr, caplog, body, needle):
    good = sqs_body("mirror/ok:stable", notBefore=4_102_444_800)  # deferred: a new message
    answer = worker.handler({"Records": [sqs_record(body, "bad"), sqs_record(good, "good")]},
                            FakeContext())
    assert answer["batchItemFailures"] == [{"itemIdentifier": "bad"}]
    failed = [r.report for r in caplog.records if getattr(r, "report", {}).get("status") == "failed"]
    assert len(failed) == 1 and needle in failed[0]["error"]["message"]
    nothing_sent(source)


@pytest.mark.parametrize("event", [{"Records": "x"}, {"Records": []}, {"Records": None},
                                   {"Records": [{"body": "{}"}]}, {"Records": [5]}])
def test_a_malformed_sqs_batch_is_a_failed_report(lambda_env, ecr, event):
    report = worker.handler(event, FakeContext())
    assert report["status"] == "failed" and report["error"]["type"] == "UsageError"
    assert "Records" in report["error"]["message"]
    nothing_sent(lambda_env)
