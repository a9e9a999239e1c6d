"""Immutable tags (issue 13, item 2): a release tag already in ECR is not asked
about upstream again. Requests to the source are counted at the proxy in front
of the real distribution registry; ECR is moto's with ECR's rules enforced."""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import cli
from ecr_mirror.handlers import scheduler
from ecr_mirror_testing.images import layer_bytes, make_image, make_index
from ecr_mirror_testing.lambdas import FakeContext
from tests.integration.conftest import ecr_image
from tests.integration.test_schedule import EVENTS, PARAMETER, app, drain  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def write_config(tmp_path, source, repo: str, selection: str, immutable: str = '["1.*"]'):
    config = tmp_path / "mirror.yaml"
    config.write_text(f"""
registries:
  {source.host}: {{insecure: true}}
defaults:
  immutableTags: {immutable}
images:
  - source: {source.host}/{repo}
    target: mirror/pinned
    {selection}
""")
    return str(config)


def sync(capsys, config: str, *args: str) -> tuple[int, dict]:
    code = cli.main(["sync", "--config", config, "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def heads(source) -> list[str]:
    """The tags (or digests) the source was asked about with HEAD."""
    return sorted(path.rsplit("/", 1)[1] for method, path, _ in source.requests
                  if method == "HEAD" and "/manifests/" in path)


def test_a_warm_run_over_pinned_exact_tags_sends_nothing_to_the_source(source, registry, ecr, repo_name,
                                                                       tmp_path, capsys):
    images = {tag: make_image(registry.url, repo_name, tag, layers=[layer_bytes(f"{repo_name}-{tag}")])
              for tag in ("1.0.0", "1.1.0")}
    config = write_config(tmp_path, source, repo_name, 'tags: ["1.0.0", "1.1.0"]')
    code, first = sync(capsys, config)
    assert code == 0 and first["summary"]["copied"] == 2 and first["summary"]["pinned"] == 0

    source.reset_counts()
    code, dry = sync(capsys, config, "--dry-run")
    assert code == 0
    assert sum(source.counts.values()) == 0, source.counts  # no ping, token, tag list or HEAD
    assert (dry["summary"]["pinned"], dry["summary"]["unchanged"], dry["summary"]["toCopy"]) == (2, 0, 0)
    assert dry["summary"]["planned"] == 2
    assert dry["plan"]["pinnedImages"] == [
        {"source": f"{source.host}/{repo_name}:{tag}", "target": f"mirror/pinned:{tag}",
         "digest": images[tag].digest} for tag in ("1.0.0", "1.1.0")]

    # An immutable tag moved upstream anyway: the mirror keeps what it has (it never asks).
    make_image(registry.url, repo_name, "1.0.0", layers=[layer_bytes(f"{repo_name}-moved")])
    assert cli.main(["sync", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"pinned {source.host}/{repo_name}:1.0.0 -> mirror/pinned:1.0.0" in out
    assert "pinned=2" in out and sum(source.counts.values()) == 0
    assert ecr_image(ecr, "mirror/pinned", tag="1.0.0")["imageId"]["imageDigest"] == images["1.0.0"].digest


def test_a_missing_pinned_tag_is_copied_once_then_pinned_and_others_are_still_headed(
        source, registry, ecr, repo_name, tmp_path, capsys):
    make_image(registry.url, repo_name, "1.0.0", layers=[layer_bytes(f"{repo_name}-1.0.0")])
    make_image(registry.url, repo_name, "stable", layers=[layer_bytes(f"{repo_name}-stable")])
    config = write_config(tmp_path, source, repo_name, 'tags: ["1.*", "stable"]')
    assert sync(capsys, config)[1]["summary"]["copied"] == 2

    new = make_image(registry.url, repo_name, "1.1.0", layers=[layer_bytes(f"{repo_name}-1.1.0")])
    source.reset_counts()
    code, second = sync(capsys, config)
    assert code == 0 and [r["target"] for r in second["reports"]] == ["mirror/pinned:1.1.0"]
    assert [p["target"] for p in second["plan"]["pinnedImages"]] == ["mirror/pinned:1.0.0"]
    assert source.counts["GET tags"] == 1  # a glob needs the listing
    # The missing one is looked at (by the plan, then by its copy), and stable; 1.0.0 is not.
    assert set(heads(source)) == {"1.1.0", "stable"}, heads(source)
    assert ecr_image(ecr, "mirror/pinned", tag="1.1.0")["imageId"]["imageDigest"] == new.digest

    source.reset_counts()
    code, third = sync(capsys, config)
    assert code == 0 and third["summary"]["copied"] == 0
    assert (third["summary"]["pinned"], third["summary"]["unchanged"]) == (2, 1)
    assert heads(source) == ["stable"]  # not immutable: still asked about every run
    assert source.counts["GET manifest"] == 0


def test_platform_subsets_and_the_scheduler_report_pinned_tags(app, source, registry, ecr, capsys):
    """With platforms configured, a tag in ECR is still pinned (its platforms were
    chosen when it was copied); the scheduler counts it and emits ImagesPinned."""
    sqs, queue_url = app
    index = make_index(registry.url, "library/postgres", "16.4",
                       platforms=[("linux", "amd64", None), ("linux", "arm64", None)])
    boto3.client("ssm").put_parameter(Name=PARAMETER, Type="String", Overwrite=True, Value="""
images:
  - source: postgres
    tags: ["16.4"]
    platforms: [linux/amd64]
    immutableTags: ["16.*"]
""")
    run = json.loads((EVENTS / "scheduled.json").read_text())
    first = scheduler.handler(run, FakeContext())
    assert (first["queued"], first["pinned"]) == (1, 0)
    assert drain(sqs, queue_url) == ["mirror/dockerhub/library/postgres:16.4"]
    held = ecr_image(ecr, "mirror/dockerhub/library/postgres", tag="16.4")["imageId"]["imageDigest"]
    assert held != index.digest  # the amd64 subset, not the source's index
    capsys.readouterr()
    source.reset_counts()
    second = scheduler.handler(run, FakeContext())
    assert (second["planned"], second["pinned"], second["unchanged"], second["queued"]) == (1, 1, 0, 0)
    assert sum(source.counts.values()) == 0, source.counts
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{") and "_aws" in line]
    assert [m["ImagesPinned"] for m in emitted if "ImagesPinned" in m] == [[1.0]]
