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


@pytest.fixture
def live_lease_table():
    table = os.environ.get("ECR_MIRROR_LIVE_LEASE_TABLE")
    if not table:
        pytest.skip("set ECR_MIRROR_LIVE_LEASE_TABLE (a DynamoDB table keyed by the string `lease`, "
                    "e.g. a stack's LeaseTable) to run the live blob-mount test")
    return table


def test_a_shared_layer_is_mounted_by_real_ecr(live_target, live_lease_table):
    """ECR's blob mount through its registry endpoint (never run in CI: needs the
    account setting BLOB_MOUNTING ENABLED in the region, and deletes what it made)."""
    import uuid

    from ecr_mirror import aws

    ecr = aws.client("ecr")
    if ecr.get_account_setting(name="BLOB_MOUNTING").get("value") != "ENABLED":
        pytest.skip("aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED first")
    mirror = Mirror(MirrorSettings(lease_table=live_lease_table, prefix=live_target.split("/")[0]))
    home = mirror.copy("busybox:latest", f"{live_target}:latest")
    assert home.status in ("copied", "unchanged"), home.error
    if home.status == "unchanged":  # where its blobs landed was not recorded by this copy
        pytest.skip(f"{live_target} held busybox:latest already: delete it and run again")
    other = f"{live_target}-mount-{uuid.uuid4().hex[:8]}"
    try:
        mounted = mirror.copy("busybox:latest", f"{other}:latest")
        assert mounted.status == "copied", mounted.error
        assert mounted.blobs_mounted >= 1 and mounted.bytes_uploaded == 0, mounted
        assert mounted.target_digest == home.target_digest
    finally:
        ecr.delete_repository(repositoryName=other, force=True)
