"""`ecr-mirror sync` with `prune: true`: it prunes with the stack's table only.

In process (`cli.main`), against the real registry and the strict ECR emulator;
DynamoDB is moto's.
"""

from __future__ import annotations

import json

import pytest

from ecr_mirror import cli
from ecr_mirror_testing.images import layer_bytes, make_image
from tests.integration.conftest import create_lease_table, tags_in_ecr

pytestmark = pytest.mark.integration
TABLE = "ecr-mirror-LeaseTable-cli"
TAGS = ["2.0", "2.1", "2.2"]


@pytest.fixture
def upstream(registry, repo_name):
    for tag in TAGS:
        make_image(registry.url, repo_name, tag, layers=[layer_bytes(f"{repo_name}-{tag}")])
    return repo_name


def sync(source, tmp_path, capsys, repo: str, *flags: str, **entry) -> tuple[int, dict, str]:
    config = tmp_path / "mirror.yaml"
    config.write_text(json.dumps({"registries": {source.host: {"insecure": True}},
                                  "images": [{"source": f"{source.host}/{repo}",
                                              "target": "mirror/cli-prune", **entry}]}))
    code = cli.main(["sync", "--config", str(config), "--json", *flags])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def tags(ecr) -> set[str]:
    return set(tags_in_ecr(ecr, "mirror/cli-prune"))


def test_sync_prunes_with_the_stacks_table_and_its_dry_run_lists_first(
        source, ecr, ecr_endpoint, upstream, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    monkeypatch.setenv("ECR_MIRROR_LEASE_TABLE", TABLE)
    create_lease_table(TABLE)
    code, first, _ = sync(source, tmp_path, capsys, upstream, latest=3, prune=True)
    assert code == 0 and first["summary"]["copied"] == 3 and first["pruned"] == []

    code, dry, _ = sync(source, tmp_path, capsys, upstream, "--dry-run", latest=1, prune=True)
    assert code == 0 and [p["target"] for p in dry["pruned"]] == [
        "mirror/cli-prune:2.0", "mirror/cli-prune:2.1"]
    assert tags(ecr) == set(TAGS)

    code, real, _ = sync(source, tmp_path, capsys, upstream, latest=1, prune=True)
    assert code == 0 and real["pruned"] == dry["pruned"] and real["pruneLater"] == []
    assert tags(ecr) == {"2.2"}


def test_without_a_table_sync_prunes_nothing_and_says_why(source, ecr, upstream, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.delenv("ECR_MIRROR_LEASE_TABLE", raising=False)
    assert sync(source, tmp_path, capsys, upstream, latest=3, prune=True)[0] == 0

    code, answer, err = sync(source, tmp_path, capsys, upstream, latest=1, prune=True)

    assert code == 0 and answer["pruned"] == []
    assert "ECR_MIRROR_LEASE_TABLE" in err and "nothing was pruned" in err
    assert tags(ecr) == set(TAGS)
