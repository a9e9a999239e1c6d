"""Opt-in: real Docker Hub into a real ECR repository (`pytest -m live`).

Needs AWS credentials with ECR rights on the target, network access, and
`ECR_MIRROR_LIVE_TARGET` (for example `mirror/live/busybox`). It copies a small
official image twice: the first run copies (or finds it unchanged), the
second must be unchanged without a counted pull.
"""

from __future__ import annotations

import os

import pytest

from ecr_mirror.mirror import Mirror, MirrorSettings

pytestmark = pytest.mark.live


@pytest.fixture
def live_target():
    target = os.environ.get("ECR_MIRROR_LIVE_TARGET")
    if not target:
        pytest.skip("set ECR_MIRROR_LIVE_TARGET (and AWS credentials) to run the live test")
    return target


def test_busybox_from_docker_hub_into_real_ecr(live_target):
    mirror = Mirror(MirrorSettings())
    first = mirror.copy("busybox:latest", f"{live_target}:latest")
    assert first.status in ("copied", "unchanged"), first.error
    assert first.target_digest == first.source_digest
    second = mirror.copy("busybox:latest", f"{live_target}:latest")
    assert second.status == "unchanged" and second.manifests_fetched == 0
