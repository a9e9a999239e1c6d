"""One JSON dialect (camelCase) for every machine-readable output, described by
docs/schema/output.schema.json (issue 11): the CLI's, in a subprocess, here; the
handlers' and the in-process CLI's in every test (tests/integration/conftest.py)."""

from __future__ import annotations

import re
import uuid

import fastjsonschema
import pytest

from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.outputs import KINDS, json_output, schema, validated
from tests.integration.test_cli_errors import run_cli

pytestmark = pytest.mark.integration

SNAKE = re.compile(r"^[a-z]+_[a-z_]+$")


def keys(data) -> set[str]:
    """Every key in `data`, at every depth."""
    if isinstance(data, dict):
        return set(data) | {k for v in data.values() for k in keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in keys(v)}
    return set()


def test_the_schema_is_draft_07_and_describes_every_output():
    document = schema()
    assert document["$schema"] == "http://json-schema.org/draft-07/schema#"
    fastjsonschema.compile(document)
    assert set(KINDS) <= set(document["definitions"])
    with pytest.raises(AssertionError, match="manifests_fetched"):
        validated("copyReport", {"source": "a", "target": "b", "status": "copied",
                                 "manifests_fetched": 1})


def test_copy_and_sync_json_are_one_camel_case_dialect(registry, ecr, ecr_endpoint, tmp_path):
    repo = f"out/{uuid.uuid4().hex[:8]}"
    make_image(registry.url, repo, "1", layers=[layer_bytes(repo)])
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_ECR": ecr_endpoint}
    source = f"{registry.host}/{repo}:1"
    first = run_cli("copy", source, "mirror/out", "--insecure", "--json", env=env)
    copied = json_output("copyReport", first.stdout)
    assert copied["status"] == "copied" and copied["blobsUploaded"] == 2
    assert copied["requests"]["manifestGet"] == copied["manifestsFetched"] == 1
    again = json_output("copyReport", run_cli("copy", source, "mirror/out", "--insecure", "--json",
                                              env=env).stdout)
    assert again["status"] == "unchanged" and again["mediaType"] == copied["mediaType"]

    config = tmp_path / "mirror.yaml"
    config.write_text(f"registries:\n  {registry.host}: {{insecure: true}}\n"
                      f"images:\n  - source: {registry.host}/{repo}\n    tags: ['1']\n"
                      "    target: mirror/out-sync\n")
    for args in (["--dry-run"], []):
        result = run_cli("sync", "--config", str(config), "--json", *args, env=env)
        assert result.returncode == 0, result.stderr
        output = json_output("syncOutput", result.stdout)
        assert not {k for k in keys(output) if SNAKE.match(k)}, keys(output)
    assert output["reports"][0]["manifestsFetched"] == 1
    assert output["summary"]["copied"] == 1 and output["plan"]["toCopy"] == 1
