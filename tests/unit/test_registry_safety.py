"""The small rules behind issue 9's registry fixes: digest grammar, redaction, whose
credentials the environment holds, which addresses count as internal."""

import pytest

from ecr_mirror import digest
from ecr_mirror.errors import DigestMismatch
from ecr_mirror.registry.credentials import Credentials, load_credentials
from ecr_mirror.registry.errors import ConnectionFailed, redact
from ecr_mirror.registry.redirects import address_kind

HEX64, HEX128 = "a" * 64, "b" * 128


@pytest.mark.parametrize("good", [f"sha256:{HEX64}", f"sha512:{HEX128}"])
def test_well_formed_digests_pass(good):
    assert digest.check(good, "x") == good


@pytest.mark.parametrize("bad,needle", [
    (f"sha256:{HEX64}/../../v2/x", "not a digest"),
    (f"sha256:{HEX64}\n", "not a digest"),
    ("sha256:" + "A" * 64, "lowercase hex"),
    (f"sha512:{HEX64}", "128 lowercase hex"),
    ("md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
    (None, "not a digest"),
])
def test_malformed_digests_are_refused_clearly(bad, needle):
    with pytest.raises(digest.InvalidDigest, match=needle):
        digest.check(bad, "blob")


def test_verify_uses_the_algorithm_the_digest_names():
    digest.verify(b"abc", digest.of(b"abc", "sha512"), "m")
    with pytest.raises(DigestMismatch, match="sha512"):
        digest.verify(b"abd", digest.of(b"abc", "sha512"), "m")


def test_query_strings_are_redacted_but_prose_is_kept():
    text = ("url: /l?X-Amz-Signature=S (Caused by x) 'https://cdn:1/a?verify=V' "
            "(is the repository name right?)")
    assert redact(text) == "url: /l?… (Caused by x) 'https://cdn:1/a?…' (is the repository name right?)"
    assert "tok" not in str(ConnectionFailed("GET https://h/p?access_token=tok failed"))


@pytest.mark.parametrize("registry,named,gets", [
    ("docker.io", None, True),
    ("evil.example", None, False),
    ("ghcr.io", "ghcr.io", True),
    ("docker.io", "ghcr.io", False),
    ("docker.io", "https://index.docker.io/v1/", True),
])
def test_environment_credentials_belong_to_one_registry(registry, named, gets):
    env = {"ECR_MIRROR_SOURCE_USERNAME": "u", "ECR_MIRROR_SOURCE_PASSWORD": "p",
           "DOCKER_CONFIG": "/nonexistent"}
    if named:
        env["ECR_MIRROR_SOURCE_REGISTRY"] = named
    assert load_credentials(registry, env) == (Credentials("u", "p") if gets else None)


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("10.0.0.1", "private"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("93.184.215.14", None),
])
def test_internal_addresses(address, kind):
    assert address_kind(address) == kind


class _Secrets:
    """A Secrets Manager client that records which secrets were read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict:  # boto3's spelling
        self.read.append(SecretId)
        return {"SecretString": '{"username": "hub-user", "password": "hub-token"}'}


@pytest.mark.parametrize("registry, named, gets", [
    ("docker.io", None, True),
    ("evil.example", None, False),          # the Docker Hub secret stays with Docker Hub
    ("ghcr.io", "ghcr.io", True),
    ("docker.io", "ghcr.io", False),
])
def test_the_environment_secret_belongs_to_one_registry(monkeypatch, registry, named, gets):
    from ecr_mirror.mirror import Mirror, MirrorSettings
    from ecr_mirror.reference import parse

    monkeypatch.setenv("ECR_MIRROR_SOURCE_SECRET_ARN", "ecr-mirror/dockerhub")
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-docker-config")
    for name in ("ECR_MIRROR_SOURCE_USERNAME", "ECR_MIRROR_SOURCE_PASSWORD", "ECR_MIRROR_SOURCE_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    if named:
        monkeypatch.setenv("ECR_MIRROR_SOURCE_REGISTRY", named)
    secrets = _Secrets()
    client = Mirror(MirrorSettings(), secrets_client=secrets).source_client(parse(f"{registry}/o/r:t"))
    assert secrets.read == (["ecr-mirror/dockerhub"] if gets else [])
    assert (client.transport.credentials is not None) is gets
