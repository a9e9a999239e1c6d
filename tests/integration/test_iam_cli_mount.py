"""The CLI with a lease table under the README's two policies: it shares the
workers' leases and mounts shared layers; without a mount grant it uploads."""

from __future__ import annotations

import json
import re

import pytest

from ecr_mirror import cli
from ecr_mirror_testing.ecr_mount import EcrMount
from ecr_mirror_testing.iam import ACCOUNT
from ecr_mirror_testing.images import layer_bytes, make_image
from tests.integration.conftest import MiB, create_lease_table
from tests.integration.test_iam_enforced import REPO, TABLE, _without, cli_policy, iam  # noqa: F401

pytestmark = pytest.mark.integration
SHARED = layer_bytes("cli-mount-shared", 1 * MiB + 33)  # big enough to take a blob lease too
MOUNT_GRANTS = ["ecr:GetAuthorizationToken", "ecr:GetAccountSetting", "ecr:GetDownloadUrlForLayer",
                "dynamodb:BatchGetItem"]


def cli_lease_policy() -> list[dict]:
    """The README's second CLI policy (with ECR_MIRROR_LEASE_TABLE), for the emulator's account."""
    section = (REPO / "README.md").read_text().split("### IAM policy for the CLI", 1)[1].split("\n## ", 1)[0]
    document = re.findall(r"```json\n(.*?)```", section, re.S)[1]
    return json.loads(document.replace("111122223333", ACCOUNT).replace("LEASE-TABLE", TABLE))["Statement"]


@pytest.fixture
def shared_images(registry):
    for name, own in (("team/first", "cli-mount-a"), ("team/second", "cli-mount-b")):
        make_image(registry.url, name, "v1", layers=[SHARED, layer_bytes(own)])


@pytest.fixture
def lease_env(monkeypatch, ecr, ecr_endpoint, iam):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    create_lease_table(TABLE)
    ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    with EcrMount(authorize=iam.authorize) as mount:
        monkeypatch.setenv("ECR_MIRROR_LEASE_TABLE", TABLE)
        monkeypatch.setenv("ECR_MIRROR_ECR_REGISTRY_ENDPOINT", mount.url)
        yield mount


def copy_both(iam, source, capsys, statements) -> list[tuple[int, dict]]:
    outputs = []
    with iam.acting_as("ecr-mirror CLI", statements):
        for image, target in (("team/first", "mirror/cli/a"), ("team/second", "mirror/cli/b")):
            code = cli.main(["copy", f"{source.host}/{image}:v1", target, "--insecure", "--json"])
            outputs.append((code, json.loads(capsys.readouterr().out)))
    return outputs


def test_the_cli_mounts_with_the_readmes_lease_table_policy(
        source, shared_images, lease_env, iam, capsys):
    outputs = copy_both(iam, source, capsys, cli_policy() + cli_lease_policy())
    iam.assert_clean()
    assert [(code, out["status"]) for code, out in outputs] == [(0, "copied")] * 2, outputs
    assert outputs[1][1]["blobsMounted"] == 1 and outputs[1][1]["bytesMounted"] == len(SHARED)
    assert [(home, target) for home, target, _ in lease_env.server.mounted] == [("mirror/cli/a", "mirror/cli/b")]


@pytest.mark.parametrize("action", MOUNT_GRANTS)
def test_without_a_mount_grant_the_cli_uploads_and_succeeds(
        source, shared_images, lease_env, iam, capsys, action):
    outputs = copy_both(iam, source, capsys, _without(cli_policy() + cli_lease_policy(), action))
    assert {d.action for d in iam.denials} == {action}, [str(d) for d in iam.denials]
    assert [(code, out["status"]) for code, out in outputs] == [(0, "copied")] * 2, outputs
    assert outputs[1][1].get("blobsMounted", 0) == 0 and outputs[1][1]["bytesUploaded"] >= len(SHARED)
    assert lease_env.server.mounted == []
