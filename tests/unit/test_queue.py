"""The SQS message contract: what the scheduler sends is what the worker reads,
and the requeue policy after a copy."""

from __future__ import annotations

import json

import pytest

from ecr_mirror import queue
from ecr_mirror.copy.options import ReferrerPolicy
from ecr_mirror.copy.report import CopyReport, Status
from ecr_mirror.errors import DeferReason, Deferred, TagBusy, UsageError
from ecr_mirror.registry.errors import RateLimited
from ecr_mirror.sync.plan import Job


def test_a_planned_job_round_trips_through_the_queue():
    job = Job(source="docker.io/library/nginx:1", target="mirror/nginx:1", platforms=["linux/amd64"],
              source_digest="sha256:" + "a" * 64, not_before=1234.5)
    body = json.dumps(job.message().body())
    assert json.loads(body) == {"source": job.source, "target": job.target, "platforms": job.platforms,
                                "sourceDigest": job.source_digest, "notBefore": 1234.5}
    assert queue.Message.parse(body) == job.message()


@pytest.mark.parametrize("body, needle", [
    ('{"source": "nginx:1", "extra": 1}', "unknown event field"),
    ('{"source": "nginx:1", "notBefore": true}', "notBefore"),
    ('{"source": "nginx:1", "timeouts": -1}', "timeouts"),
    ("not json", "not JSON")])
def test_a_malformed_message_is_a_usage_error(body, needle):
    with pytest.raises(UsageError, match=needle):
        queue.Message.parse(body)


def test_the_delay_is_clamped_to_what_sqs_allows():
    assert queue.delay_seconds(None, 100) == 0
    assert queue.delay_seconds(50, 100) == 0
    assert queue.delay_seconds(100 + 5000, 100) == queue.MAX_SQS_DELAY


def deferred_by(exc: Exception) -> CopyReport:
    report = CopyReport(source="nginx:1", target="mirror/nginx:1")
    report.stopped_by(exc)
    return report


def test_each_deferral_has_its_typed_reason_and_the_json_stays_strings():
    budget = deferred_by(RateLimited("spent", temporary=True, retry_after=30, pull_limit=True))
    assert (budget.status, budget.defer_reason, budget.retry_after) == (
        Status.DEFERRED, DeferReason.PULL_BUDGET, 30)
    assert deferred_by(TagBusy("busy", retry_after=5)).defer_reason is DeferReason.TAG_BUSY
    assert deferred_by(Deferred("late")).defer_reason is DeferReason.TIME
    failed = deferred_by(RateLimited("abuse", temporary=True))
    assert failed.status is Status.FAILED and failed.defer_reason is None
    data = budget.as_dict()
    assert data["status"] == "deferred" and type(data["status"]) is str
    assert data["error"] == {"type": "RateLimited", "message": "spent", "temporary": True,
                             "retryAfter": 30}
    assert "deferReason" not in data and "retryAfter" not in data


def test_the_requeue_policy(monkeypatch):
    monkeypatch.setattr(queue, "clock", lambda: 1000.0)
    message = queue.Message("nginx:1", "mirror/nginx:1")
    assert queue.requeue(message, CopyReport("nginx:1", "t", status=Status.COPIED)) is None
    again, when = queue.requeue(message, deferred_by(RateLimited("spent", temporary=True,
                                                                 retry_after=30, pull_limit=True)))
    assert (again, when) == (message, 1030.0)  # the budget: no timeout counted
    again, when = queue.requeue(message, deferred_by(Deferred("late")))
    assert again.timeouts == 1 and when == 1000.0 + queue.RETRY_DELAY_SECONDS
    worn = queue.Message("nginx:1", timeouts=queue.MAX_TIMEOUTS)
    with pytest.raises(queue.ImageNotCopied, match="lack of time"):
        queue.requeue(worn, deferred_by(Deferred("late")))


SPDX = "application/spdx+json"


@pytest.mark.parametrize("referrers, verify, fields", [
    (ReferrerPolicy(), (), {"referrers": True}),
    (ReferrerPolicy((SPDX,)), ("ssm:/k",), {"referrers": {"artifactTypes": [SPDX]},
                                              "verify": {"cosignKey": "ssm:/k"}}),
    # A gate with referrers turned off says so: a missing field would mean "all of them".
    (None, ("ssm:/a", "secretsmanager:b"), {"referrers": False,
                                             "verify": {"cosignKey": ["ssm:/a", "secretsmanager:b"]}}),
])
def test_the_referrer_policy_and_the_key_spec_travel_with_the_job(referrers, verify, fields):
    job = Job(source="docker.io/library/nginx:1", target="mirror/nginx:1", platforms=[],
              source_digest="sha256:" + "a" * 64, referrers=referrers, verify=verify)
    body = json.dumps(job.message().body())
    assert {k: v for k, v in json.loads(body).items() if k in ("referrers", "verify")} == fields
    parsed = queue.Message.parse(body)
    assert (parsed.referrers, parsed.verify) == (referrers, verify)
    assert parsed == job.message()
    assert {k: job.as_dict()[k] for k in fields} == fields  # the plan shows them the same way


def test_an_old_message_without_the_fields_still_parses():
    old = '{"source": "docker.io/library/nginx:1", "target": "mirror/nginx:1", "platforms": [], ' \
          '"sourceDigest": null}'
    message = queue.Message.parse(old)
    assert (message.source, message.referrers, message.verify) == ("docker.io/library/nginx:1", None, ())
    assert "referrers" not in message.body() and "verify" not in message.body()


@pytest.mark.parametrize("fields, needle", [
    ('"referrers": "yes"', 'referrers must be true, false or {"artifactTypes"'),
    ('"referrers": {"artifactTypes": "x"}', "referrers must be"),
    ('"verify": "ssm:/k"', 'verify must be {"cosignKey"'),
    ('"verify": {"cosignKey": "cosign.pub"}', "verify.cosignKey: 'cosign.pub' is not a PEM public key"),
    ('"verify": {"cosignKey": ["ssm:/a", 3]}', "verify.cosignKey[1]: give a PEM public key"),
])
def test_malformed_options_are_usage_errors_naming_the_field(fields, needle):
    with pytest.raises(UsageError) as err:
        queue.Message.parse('{"source": "nginx:1", ' + fields + "}")
    assert needle in str(err.value), str(err.value)


def test_an_upload_busy_image_is_handed_back_a_bounded_number_of_times(monkeypatch):
    from ecr_mirror.errors import UploadBusy
    from ecr_mirror.queue import MAX_HAND_BACKS, Message, requeue

    monkeypatch.setenv("ECR_MIRROR_QUEUE_URL", "http://127.0.0.1:1/q")
    message = Message("nginx:1")
    for n in range(MAX_HAND_BACKS):
        assert message.may_hand_back()
        message, _ = requeue(message, deferred_by(UploadBusy("busy", retry_after=15)))
        assert Message.parse(json.dumps(message.body())).hand_backs == n + 1
    assert not message.may_hand_back()  # the bound: it uploads the blob itself
    monkeypatch.delenv("ECR_MIRROR_QUEUE_URL")
    assert not Message("nginx:1").may_hand_back()  # no queue (the CLI): never handed back



def test_a_refused_batch_is_an_error_per_entry_not_a_crash(monkeypatch):
    """Shared by the copy queue (`send_batch`) and the planning shards (`send_bodies`):
    a batch SQS refuses (here: its queue is gone) is an error naming each of its
    entries; the other batches are still sent."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="copies")["QueueUrl"]
        bodies = [(f"shard {i}", json.dumps({"n": i}), 0) for i in range(12)]
        assert queue.send_bodies(bodies, url, sqs) == (12, [])
        gone = url.rsplit("/", 1)[0] + "/gone"
        sent, errors = queue.send_bodies(bodies, gone, sqs)
        assert sent == 0 and [e["entry"] for e in errors] == [b[0] for b in bodies]
        assert all(e["message"].startswith("SQS: ") and "exist" in e["message"].lower()
                   for e in errors), errors
