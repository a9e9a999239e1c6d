"""Settings: one definition, three ways in, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from ecr_mirror import cli
from ecr_mirror.errors import UsageError
from ecr_mirror.settings import DEFAULT_CONCURRENCY, MirrorSettings, RepositorySettings, SourceRegistry
from ecr_mirror.sync.config import load_config


def test_the_environment_and_the_cli_start_from_the_same_defaults():
    from_env = MirrorSettings.from_env({})
    from_cli = MirrorSettings.from_args(cli.build_parser().parse_args(["copy", "a:1", "mirror/a"]), env={})
    assert from_env == dataclasses.replace(MirrorSettings(), enforce_prefix=True)
    assert from_cli == MirrorSettings()
    assert from_cli.concurrency == from_env.concurrency == DEFAULT_CONCURRENCY


def test_the_cli_help_shows_the_settings_default(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["sync", "--help"])
    assert f"(default {DEFAULT_CONCURRENCY})" in " ".join(capsys.readouterr().out.split())


def test_cli_options_and_environment_variables_reach_the_settings():
    args = cli.build_parser().parse_args(["copy", "a:1", "mirror/a", "--concurrency", "9", "--region",
                                          "eu-west-1", "--immutable-tags", "--kms-key", "k"])
    settings = MirrorSettings.from_args(args, env={"ECR_MIRROR_PREFIX": "team"})
    assert (settings.concurrency, settings.region, settings.prefix) == (9, "eu-west-1", "team")
    assert settings.repository == RepositorySettings(True, "IMMUTABLE", "KMS", "k")
    env = MirrorSettings.from_env({"ECR_MIRROR_CONCURRENCY": "7", "ECR_MIRROR_STOP_MARGIN_SECONDS": "30",
                                   "AWS_REGION": "us-west-2", "ECR_MIRROR_SCAN_ON_PUSH": "false"})
    assert (env.concurrency, env.stop_margin, env.region) == (7, 30.0, "us-west-2")
    assert env.repository.scan_on_push is False


def test_the_config_merges_in_and_an_environment_endpoint_wins():
    env = MirrorSettings.from_env({"ECR_MIRROR_REGISTRY_ENDPOINTS": "docker.io=http://127.0.0.1:5000"})
    config = load_config("registries:\n  docker.io: {credentials: hub, reserve: 5}\n"
                         "defaults:\n  repository: {tagMutability: IMMUTABLE}\nimages: []\n")
    merged = env.merged_with(config)
    assert merged.registries["docker.io"] == SourceRegistry(("hub",), 5, False, "http://127.0.0.1:5000")
    assert merged.repository == RepositorySettings(tag_mutability="IMMUTABLE")
    assert env.registries["docker.io"].credentials_secrets == ()  # merged_with changes nothing


def test_settings_are_frozen_and_checked():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MirrorSettings().region = "eu-west-1"  # type: ignore[misc]
    with pytest.raises(UsageError, match="concurrency"):
        MirrorSettings.from_env({"ECR_MIRROR_CONCURRENCY": "0"})


def test_the_plan_concurrency_comes_from_the_environment_and_sizes_the_pools():
    settings = MirrorSettings.from_env({"ECR_MIRROR_PLAN_CONCURRENCY": "24", "ECR_MIRROR_CONCURRENCY": "4"})
    assert (settings.plan_concurrency, settings.connections) == (24, 24)
    assert MirrorSettings(concurrency=32, plan_concurrency=8).connections == 32
    with pytest.raises(UsageError, match="plan concurrency must be at least 1"):
        MirrorSettings.from_env({"ECR_MIRROR_PLAN_CONCURRENCY": "0"})


def test_blob_mounting_comes_from_the_environment_and_a_plain_http_endpoint_only_on_loopback():
    assert MirrorSettings.from_env({}).blob_mounting is True
    off = MirrorSettings.from_env({"ECR_MIRROR_BLOB_MOUNTING": "disabled"})
    assert off.blob_mounting is False and off.ecr_registry_endpoint is None
    local = MirrorSettings.from_env({"ECR_MIRROR_ECR_REGISTRY_ENDPOINT": "http://127.0.0.1:5000/x"})
    assert local.ecr_registry_endpoint == "http://127.0.0.1:5000"
    for env in ({"ECR_MIRROR_BLOB_MOUNTING": "maybe"},
                {"ECR_MIRROR_ECR_REGISTRY_ENDPOINT": "http://registry.example"},
                {"ECR_MIRROR_ECR_REGISTRY_ENDPOINT": "ftp://127.0.0.1"}):
        with pytest.raises(UsageError, match=next(iter(env))):
            MirrorSettings.from_env(env)
