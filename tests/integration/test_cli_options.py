"""`--referrers`, `--referrer-type` and `--cosign-key` on `copy` and `sync`, and the
config's `referrers`/`verify` under `sync`: they reach the engine (watched where
Mirror.copy calls it, the real engine running), a bad value is one line and exit 2
with nothing touched, and a rejected image exits 3."""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import cli
from ecr_mirror.copy.options import ReferrerPolicy
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.images import layer_bytes, make_image
from tests.integration.test_cli_errors import one_line_usage_error, run_cli
from tests.integration.test_handler_options import engine  # noqa: F401
from tests.unit.test_keys import dsa_public, key_pair

pytestmark = pytest.mark.integration
SBOM = "application/spdx+json"
PUBLIC, PRIVATE = key_pair()


@pytest.fixture
def ssm_key(ecr, ecr_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ecr_endpoint)
    boto3.client("ssm").put_parameter(Name="/ecr-mirror/cosign.pub", Value=PUBLIC.decode(),
                                      Type="SecureString", Overwrite=True)
    return "ssm:/ecr-mirror/cosign.pub"


@pytest.fixture
def image(registry, repo_name):
    return make_image(registry.url, repo_name, "1", layers=[layer_bytes(f"{repo_name}-opts")])


def test_copy_flags_reach_the_engine(source, image, repo_name, ecr, engine, tmp_path, capsys):
    key = tmp_path / "cosign.pub"
    key.write_bytes(PUBLIC)
    ref = f"{source.host}/{repo_name}:1"
    assert cli.main(["copy", ref, "mirror/flags", "--insecure", "--referrers", "--json"]) == 0
    assert cli.main(["copy", ref, "mirror/flags", "--insecure", "--json", "--referrer-type", SBOM,
                     "--referrer-type", "application/vnd.dev.cosign.artifact.sig.v1+json"]) == 0
    code = cli.main(["copy", ref, "mirror/flags:gated", "--insecure", "--json", "--cosign-key", str(key)])
    capsys.readouterr()
    first, typed, gated = engine
    assert (first.referrers, first.verify) == (ReferrerPolicy(), None)
    assert typed.referrers == ReferrerPolicy((SBOM, "application/vnd.dev.cosign.artifact.sig.v1+json"))
    # The gate brings its signatures along; the key is the file's bytes, named by its path.
    assert gated.referrers == ReferrerPolicy() and gated.verify.keys == (PUBLIC,)
    assert gated.verify.origin == str(key)
    assert code in (0, 3)  # unsigned: the gate, where the engine has it, rejects (exit 3)


def test_sync_takes_the_configs_options_and_the_flags_replace_them(
        source, image, repo_name, ecr, engine, ssm_key, tmp_path, capsys):
    config = tmp_path / "mirror.yaml"
    config.write_text(f"registries:\n  {source.host}: {{insecure: true}}\n"
                      f"defaults: {{targetPrefix: mirror, referrers: {{artifactTypes: [{SBOM}]}}}}\n"
                      f"images:\n  - source: {source.host}/{repo_name}\n    tags: ['1']\n"
                      f"    verify: {{cosignKey: '{ssm_key}'}}\n")
    cli.main(["sync", "--config", str(config), "--json"])
    output = json.loads(capsys.readouterr().out)
    assert output["plan"]["jobs"][0]["verify"] == {"cosignKey": ssm_key}
    assert "rejected" in output["summary"]
    [configured] = engine
    assert configured.referrers == ReferrerPolicy((SBOM,)) and configured.verify.keys == (PUBLIC,)
    assert configured.verify.origin == ssm_key

    key = tmp_path / "other.pub"
    other, _ = key_pair()
    key.write_bytes(other)
    engine.clear()
    # The image is unsigned, so the gate rejected it and nothing reached ECR:
    # the next sync plans it again (with the flags' options).
    assert output["summary"]["rejected"] == 1
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=[output["plan"]["jobs"][0]["target"].rsplit(":", 1)[0]])
    cli.main(["sync", "--config", str(config), "--json", "--referrers", "--cosign-key", str(key)])
    capsys.readouterr()
    [flagged] = engine
    assert flagged.referrers == ReferrerPolicy() and flagged.verify.keys == (other,)


def test_a_rejected_image_exits_3_with_its_reason(source, image, repo_name, ecr, tmp_path, capsys):
    key = tmp_path / "cosign.pub"
    key.write_bytes(PUBLIC)
    ref = f"{source.host}/{repo_name}:1"  # unsigned
    assert cli.main(["copy", ref, "mirror/gated", "--insecure", "--cosign-key", str(key)]) == 3
    out = capsys.readouterr().out
    assert out.startswith(f"REJECTED {ref} -> mirror/gated:1: no signature found for {image.digest}")
    assert out.endswith("nothing of it was copied or tagged\n") and out.count("\n") == 1
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["mirror/gated"])


@pytest.mark.parametrize("args, needle", [
    (["--referrer-type", ""], "--referrer-type: must be a media type"),
    (["--cosign-key", "/nonexistent/cosign.pub"], "cannot read the cosign key /nonexistent/cosign.pub"),
    (["--cosign-key", "ssm:"], "'ssm:' names no ssm resource"),
    (["--cosign-key", "PRIVATE"], "holds a private key"),
    (["--cosign-key", "NOT-A-KEY"], "is not a PEM public key"),
    (["--cosign-key", "DSA"], "holds a DSA public key, which is not a cosign key type; give ECDSA"),
])
def test_a_bad_flag_value_is_one_line_exit_2_and_touches_nothing(ecr, tmp_path, args, needle):
    private, junk, dsa = tmp_path / "cosign.key", tmp_path / "junk.pub", tmp_path / "dsa.pub"
    private.write_bytes(PRIVATE)
    junk.write_text("hunter2")
    dsa.write_bytes(dsa_public())
    args = [{"PRIVATE": str(private), "NOT-A-KEY": str(junk), "DSA": str(dsa)}.get(a, a) for a in args]
    result = run_cli("copy", "localhost:1/x:1", "mirror/x", *args,
                     env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1"})
    one_line_usage_error(result, needle)
    assert "hunter2" not in result.stderr and PRIVATE.decode().splitlines()[1] not in result.stderr
    assert sum(strict_ecr.calls.values()) == 0
