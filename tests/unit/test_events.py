"""events.py without a network: which report is worth which event, PutEvents'
size limits, and the bus names a user may give."""

from __future__ import annotations

import json

import pytest

from ecr_mirror import events
from ecr_mirror.copy.report import COPIED, DEFERRED, FAILED, REJECTED, SUPERSEDED, UNCHANGED, CopyReport
from ecr_mirror.errors import UsageError
from ecr_mirror.settings import MirrorSettings


@pytest.mark.parametrize("status, final, expected", [
    (COPIED, False, "Image Mirrored"), (UNCHANGED, True, None), (DEFERRED, True, None),
    (FAILED, False, None), (FAILED, True, "Image Failed"),
    (REJECTED, False, "Image Failed"), (SUPERSEDED, False, "Image Failed")])
def test_which_report_is_worth_which_event(status, final, expected):
    report = CopyReport(source="docker.io/library/nginx:stable", target="mirror/nginx:stable",
                        status=status)
    assert events.detail_type(report, final=final) == expected


def test_a_failed_detail_carries_the_error_cut_short():
    report = CopyReport(source="docker.io/library/nginx:gone", target="mirror/nginx:gone")
    report.error = {"type": "ManifestUnknown", "message": "x" * 10_000, "temporary": False}
    detail = json.loads(events.entry(report, "default", "Image Failed")["Detail"])
    assert (detail["repository"], detail["tag"], detail["status"]) == ("mirror/nginx", "gone", "failed")
    assert len(detail["error"]["message"]) == events.MAX_MESSAGE
    assert detail["digest"] is None and detail["previousDigest"] is None


def test_calls_hold_ten_entries_and_256_kb_at_most():
    small = [{"Source": "ecr-mirror", "DetailType": "Image Mirrored", "Detail": "{}"}] * 23
    assert [len(b) for b in events.batches(small)] == [10, 10, 3]
    big = [{"Source": "ecr-mirror", "DetailType": "Image Mirrored", "Detail": "x" * 100_000}] * 5
    batches = list(events.batches(big))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(sum(map(events._size, b)) <= events.MAX_BYTES for b in batches)


@pytest.mark.parametrize("name", ["default", "ecr-mirror", "team.events_1",
                                  "arn:aws:events:eu-west-1:111122223333:event-bus/ecr-mirror"])
def test_bus_names_eventbridge_takes(name):
    assert MirrorSettings.from_env({"ECR_MIRROR_EVENT_BUS": name}).event_bus == name


@pytest.mark.parametrize("name", ["a b", "*", "default\n", "arn:aws:sqs:eu-west-1:111122223333:q",
                                  "x" * 257])
def test_a_bus_name_eventbridge_refuses_is_one_line(name):
    with pytest.raises(UsageError, match=r"ECR_MIRROR_EVENT_BUS .* is not an EventBridge bus") as err:
        MirrorSettings.from_env({"ECR_MIRROR_EVENT_BUS": name})
    assert "\n" not in str(err.value)


def test_no_bus_no_events():
    assert MirrorSettings.from_env({}).event_bus is None
    assert events.announce([(CopyReport(source="a", target="b", status=COPIED), True)], None) \
        == events.Outcome(0, 0)
