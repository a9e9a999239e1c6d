"""The CLI and the one-image Lambda handler, over the same engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_mirror import cli
from ecr_mirror.handlers import copy_one, warm
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.images import layer_bytes, make_image, make_index
from ecr_mirror_testing.lambdas import FakeContext
from tests.integration.conftest import ecr_image

pytestmark = pytest.mark.integration
EVENTS = Path(__file__).resolve().parents[2] / "events"


# -- CLI ------------------------------------------------------------------------

def test_cli_json_prints_one_object_and_exits_0(source, registry, ecr, repo_name, capsys):
    image = make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    code = cli.main(["copy", f"{source.host}/{repo_name}:1", "mirror/cli", "--insecure", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    report = json.loads(out)  # the whole of stdout is one JSON object
    assert report["status"] == "copied" and report["target"] == "mirror/cli:1"
    assert report["targetDigest"] == image.digest and report["blobsUploaded"] == 2
    assert report["requests"]["manifestGet"] == 1
    assert "\r" not in err  # no progress bar when --json

    assert cli.main(["copy", f"{source.host}/{repo_name}:1", "mirror/cli", "--insecure", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "unchanged"


def test_cli_accepts_a_full_ecr_uri(source, registry, ecr, repo_name, capsys):
    image = make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name)])
    target = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/uri:pinned"
    assert cli.main(["copy", f"{source.host}/{repo_name}:1", target, "--insecure"]) == 0
    assert "copied" in capsys.readouterr().out
    assert ecr_image(ecr, "mirror/uri", tag="pinned")["imageId"]["imageDigest"] == image.digest


def test_cli_failed_copy_exits_1(source, ecr, repo_name, capsys):
    code = cli.main(["copy", f"{source.host}/{repo_name}:absent", "mirror/cli", "--insecure", "--json"])
    assert code == 1
    assert json.loads(capsys.readouterr().out)["status"] == "failed"


@pytest.mark.parametrize("argv,needle", [
    (["copy", "Nginx:1", "mirror/x"], '"Nginx:1"'),
    (["copy", "nginx:1", "Mirror/X"], '"Mirror/X"'),
    (["copy", "nginx:1", "mirror/x", "--platform", "linux"], '"linux"'),
])
def test_cli_usage_errors_exit_2_and_touch_nothing(ecr, argv, needle, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and needle in err
    assert sum(strict_ecr.calls.values()) == 0


@pytest.mark.parametrize("argv", [["copy", "nginx"], ["copy", "a", "b", "--concurrency", "0"], ["nope"]])
def test_cli_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


# -- Lambda handler ---------------------------------------------------------------

@pytest.fixture
def lambda_env(monkeypatch, source, ecr):
    """The function's environment, with Docker Hub served by the local registry."""
    monkeypatch.setenv("ECR_MIRROR_PREFIX", "mirror")
    monkeypatch.setenv("ECR_MIRROR_REGISTRY_ENDPOINTS", f"docker.io={source.url}")
    monkeypatch.setattr(warm, "_mirror", None)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "EcrMirrorTest")
    return source


def test_copy_one_event_file_runs_through_the_real_handler(lambda_env, registry, ecr):
    event = json.loads((EVENTS / "copy-one.json").read_text())
    index = make_index(registry.url, "library/nginx", "stable",
                       platforms=[("linux", "amd64", None), ("linux", "arm64", None)])
    report = copy_one.handler(event, FakeContext())
    assert report["status"] == "copied", report["error"]
    assert report["source"] == "docker.io/library/nginx:stable"
    assert report["sourceDigest"] == report["targetDigest"] == index.digest
    assert ecr_image(ecr, "mirror/nginx", tag="stable")["imageManifest"].encode() == index.raw
    assert copy_one.handler(event, FakeContext())["status"] == "unchanged"


def test_without_target_the_naming_rule_applies(lambda_env, registry, ecr):
    image = make_image(registry.url, "bitnami/redis", "7", layers=[layer_bytes("redis")])
    report = copy_one.handler({"source": "bitnami/redis:7"}, FakeContext())
    assert report["status"] == "copied" and report["target"] == "mirror/dockerhub/bitnami/redis:7"
    assert ecr_image(ecr, "mirror/dockerhub/bitnami/redis", tag="7")["imageId"]["imageDigest"] == image.digest


@pytest.mark.parametrize("event,needle", [
    ("nginx", "JSON object"),
    ({}, '"source"'),
    ({"source": ""}, '"source"'),
    ({"source": "nginx", "tartget": "mirror/x"}, "tartget"),
    ({"source": "NGINX"}, '"NGINX"'),
    ({"source": "nginx", "target": "other/nginx"}, '"mirror/"'),
    ({"source": "nginx", "platforms": "linux/amd64"}, '"platforms"'),
    ({"source": "nginx", "platforms": ["amd64"]}, '"amd64"'),
])
def test_malformed_event_returns_a_clear_error_and_touches_nothing(lambda_env, ecr, event, needle):
    report = copy_one.handler(event, FakeContext())
    assert report["status"] == "failed" and report["error"]["type"] in ("UsageError", "InvalidReference")
    assert needle in report["error"]["message"]
    assert sum(strict_ecr.calls.values()) == 0
    assert sum(lambda_env.counts.values()) == 0


def test_cli_sync_copies_what_the_config_lists_then_nothing(source, registry, ecr, repo_name,
                                                           tmp_path, capsys):
    for tag in ("1.0.0", "1.1.0", "2.0.0"):
        make_image(registry.url, repo_name, tag, layers=[layer_bytes(f"{repo_name}-{tag}")])
    config = tmp_path / "mirror.yaml"
    config.write_text(f"""
registries:
  {source.host}: {{insecure: true}}
images:
  - source: {source.host}/{repo_name}
    target: mirror/synced
    semver: "^1"
""")
    assert cli.main(["sync", "--config", str(config), "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["summary"]["toCopy"] == 2 and dry["reports"] == []
    assert sum(strict_ecr.calls[c] for c in ("PutImage", "InitiateLayerUpload")) == 0

    assert cli.main(["sync", "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["copied"] == 2
    assert sorted(r["target"] for r in result["reports"]) == ["mirror/synced:1.0.0", "mirror/synced:1.1.0"]

    source.reset_counts()
    assert cli.main(["sync", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count("\nunchanged ") + out.startswith("unchanged ") == 2
    assert "toCopy=0" in out and source.counts["GET manifest"] == 0


def test_cli_sync_reports_a_bad_config_entry_and_exits_1(source, registry, ecr, tmp_path, capsys):
    config = tmp_path / "mirror.yaml"
    config.write_text("images:\n  - source: Bad\n    tags: [x]\n")
    assert cli.main(["sync", "--config", str(config)]) == 1
    assert 'images[0] (Bad)' in capsys.readouterr().out
    assert cli.main(["sync", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_cli_shows_a_progress_bar_per_blob_on_a_terminal(source, registry, ecr, repo_name,
                                                          capsys, monkeypatch):
    make_image(registry.url, repo_name, "1", layers=[layer_bytes(repo_name, 300_000)])
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
    assert cli.main(["copy", f"{source.host}/{repo_name}:1", "mirror/bars", "--insecure"]) == 0
    out, err = capsys.readouterr()
    assert "copied" in out
    assert "%|" in err and "B/s" in err  # tqdm's bar, on stderr only
