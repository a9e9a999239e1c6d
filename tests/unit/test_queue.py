"""The SQS message contract: what the scheduler sends is what the worker reads,
and the requeue policy after a copy."""

from __future__ import annotations

import json

import pytest

from ecr_mirror import queue
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
