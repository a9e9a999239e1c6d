"""EventBridge events (events.py): `Image Mirrored` when an ECR tag moves, `Image
Failed` when an image failed for good, was rejected or superseded; never a failed
copy because an event could not be sent.

moto's EventBridge (server mode, the same emulator as ECR) with a rule on the bus
that forwards ecr-mirror's events to an SQS queue: the events are read back there,
as a user's rule would receive them.
"""

from __future__ import annotations

import pytest

from ecr_mirror_testing.images import layer_bytes, make_image

pytestmark = pytest.mark.integration


def test_the_report_says_what_the_tag_held_before(registry, copy, repo_name):
    first = make_image(registry.url, "events/prev", "v1", layers=[layer_bytes("prev-1")])
    report = copy("events/prev:v1", f"{repo_name}:stable")
    assert report.status == "copied" and report.previous_digest is None
    assert report.as_dict()["previousDigest"] is None
    second = make_image(registry.url, "events/prev", "v2", layers=[layer_bytes("prev-2")])
    report = copy("events/prev:v2", f"{repo_name}:stable")
    assert report.status == "copied"
    assert (report.previous_digest, report.target_digest) == (first.digest, second.digest)
    again = copy("events/prev:v2", f"{repo_name}:stable")
    assert again.status == "unchanged" and again.previous_digest == second.digest
