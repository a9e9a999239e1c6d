"""Storage settings (issue 13, item 3): `prune`/`pruneMax` in the config, the
untagged expiry from the environment, the CLI and the config's repository defaults."""

from __future__ import annotations

import pytest

from ecr_mirror.cli import build_parser, main
from ecr_mirror.ecr.lifecycle import untagged_expiry_policy
from ecr_mirror.errors import UsageError
from ecr_mirror.settings import MirrorSettings
from ecr_mirror.sync.config import load_config


def test_prune_per_image_falls_back_on_the_defaults():
    config = load_config("""
defaults: {prune: true, pruneMax: 3}
images:
  - {source: nginx, tags: [stable]}
  - {source: redis, latest: 2, prune: false}
  - {source: busybox, latest: 2, pruneMax: 1}
""")
    assert not config.errors
    assert [(e.written, e.prune, e.prune_max) for e in config.images] == [
        ("nginx", True, 3), ("redis", False, 3), ("busybox", True, 1)]


def test_nothing_said_means_no_pruning_and_a_cap_of_ten():
    [entry] = load_config("images:\n  - {source: nginx, tags: [stable]}\n").images
    assert (entry.prune, entry.prune_max) == (False, 10)


@pytest.mark.parametrize("value, says", [("0", "pruneMax"), ("2.0", "whole number"),
                                         ("'5'", "pruneMax")])
def test_a_bad_prune_max_is_that_entrys_error_alone(value, says):
    config = load_config(f"""
images:
  - {{source: nginx, latest: 3, prune: true, pruneMax: {value}}}
  - {{source: redis, tags: ['7']}}
""")
    assert [e.written for e in config.images] == ["redis"]
    [error] = config.errors
    assert error.entry == "images[0] (nginx)" and says in error.message


def test_prune_must_be_true_or_false():
    [error] = load_config("images:\n  - {source: nginx, latest: 3, prune: 'yes'}\n").errors
    assert "prune" in error.message and "boolean" in error.message


def test_the_expiry_comes_from_the_environment_and_survives_the_configs_repository_defaults():
    settings = MirrorSettings.from_env({"ECR_MIRROR_UNTAGGED_EXPIRY_DAYS": "30"})
    assert settings.repository.untagged_expiry_days == 30
    config = load_config("defaults: {repository: {scanOnPush: false}}\n"
                         "images:\n  - {source: nginx, tags: [stable]}\n")
    merged = settings.merged_with(config).repository
    assert (merged.scan_on_push, merged.untagged_expiry_days) == (False, 30)


@pytest.mark.parametrize("value", ["-1", "two weeks"])
def test_a_bad_expiry_in_the_environment_is_one_line_naming_it(value):
    with pytest.raises(UsageError, match="ECR_MIRROR_UNTAGGED_EXPIRY_DAYS"):
        MirrorSettings.from_env({"ECR_MIRROR_UNTAGGED_EXPIRY_DAYS": value})


@pytest.mark.parametrize("command", [["copy", "nginx", "mirror/nginx"], ["sync", "--config", "x"]])
def test_the_cli_flag_sets_the_expiry(command):
    args = build_parser().parse_args([*command, "--untagged-expiry-days", "0"])
    assert MirrorSettings.from_args(args, env={}).repository.untagged_expiry_days == 0
    default = build_parser().parse_args(command)
    assert MirrorSettings.from_args(default, env={}).repository.untagged_expiry_days == 14


def test_a_negative_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["copy", "nginx", "mirror/nginx", "--untagged-expiry-days", "-3"])
    assert exited.value.code == 2
    assert "--untagged-expiry-days" in capsys.readouterr().err


def test_zero_days_is_no_policy():
    assert untagged_expiry_policy(0) is None
