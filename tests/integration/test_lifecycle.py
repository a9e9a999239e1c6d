"""Repositories ecr-mirror creates expire their untagged images (item 3 of issue 13).

The real engine copies from the real registry into the strict ECR emulator; the
lifecycle policy is read back with ECR's own GetLifecyclePolicy.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from ecr_mirror.ecr import RepositorySettings
from ecr_mirror_testing.images import layer_bytes, make_image

pytestmark = pytest.mark.integration


def lifecycle_rules(ecr, repository: str) -> list[dict] | None:
    try:
        text = ecr.get_lifecycle_policy(repositoryName=repository)["lifecyclePolicyText"]
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "LifecyclePolicyNotFoundException"
        return None
    rules: list[dict] = json.loads(text)["rules"]
    return rules


def test_a_created_repository_expires_untagged_images_after_the_configured_days(
        copy, ecr, registry, repo_name):
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    report = copy(f"{repo_name}:1", "mirror/expiring:1",
                  repository=RepositorySettings(untagged_expiry_days=9))

    assert report.status == "copied" and report.repository_created
    [rule] = lifecycle_rules(ecr, "mirror/expiring")
    assert rule["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                 "countUnit": "days", "countNumber": 9}
    assert rule["action"] == {"type": "expire"}


def test_the_default_is_fourteen_days(copy, ecr, registry, repo_name):
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    assert copy(f"{repo_name}:1", "mirror/default-expiry:1").status == "copied"
    [rule] = lifecycle_rules(ecr, "mirror/default-expiry")
    assert rule["selection"]["countNumber"] == 14


def test_zero_days_puts_no_policy(copy, ecr, registry, repo_name):
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    report = copy(f"{repo_name}:1", "mirror/keep-all:1",
                  repository=RepositorySettings(untagged_expiry_days=0))
    assert report.status == "copied" and report.repository_created
    assert lifecycle_rules(ecr, "mirror/keep-all") is None


def test_an_existing_repository_is_not_touched(copy, ecr, registry, repo_name):
    mine = {"rules": [{"rulePriority": 1, "description": "the owner's own",
                       "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                     "countNumber": 500},
                       "action": {"type": "expire"}}]}
    ecr.create_repository(repositoryName="mirror/theirs")
    ecr.put_lifecycle_policy(repositoryName="mirror/theirs", lifecyclePolicyText=json.dumps(mine))
    ecr.create_repository(repositoryName="mirror/bare")
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])

    assert copy(f"{repo_name}:1", "mirror/theirs:1").status == "copied"
    assert copy(f"{repo_name}:1", "mirror/bare:1").status == "copied"

    assert lifecycle_rules(ecr, "mirror/theirs") == mine["rules"]
    assert lifecycle_rules(ecr, "mirror/bare") is None
