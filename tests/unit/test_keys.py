"""Cosign public keys for the signature gate: inline, a file, SSM, Secrets Manager (moto)."""

from __future__ import annotations

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from moto import mock_aws

from ecr_mirror import keys
from ecr_mirror.errors import CosignKeyError, UsageError


def key_pair() -> tuple[bytes, bytes]:
    """(public PEM, private PEM), as `cosign generate-key-pair` makes (ECDSA P-256)."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    secret = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return public, secret


PUBLIC, PRIVATE = key_pair()


@pytest.fixture
def aws(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(keys, "_cache", {})
    with mock_aws():
        yield boto3.client("ssm"), boto3.client("secretsmanager")


def test_an_inline_key_is_the_policy_and_never_its_origin():
    policy = keys.load_keys([PUBLIC.decode()])
    assert policy.keys == (PUBLIC,)
    assert "BEGIN" not in policy.origin and policy.origin == "an inline PEM key"


def test_keys_from_ssm_and_secrets_manager(aws):
    ssm, secrets = aws
    other, _ = key_pair()
    ssm.put_parameter(Name="/ecr-mirror/cosign.pub", Value=PUBLIC.decode(), Type="SecureString")
    secrets.create_secret(Name="ecr-mirror/cosign", SecretString=other.decode())
    policy = keys.load_keys(["ssm:/ecr-mirror/cosign.pub", "secretsmanager:ecr-mirror/cosign"])
    assert policy.keys == (PUBLIC, other)  # both kept, for a key rotation
    assert policy.origin == "ssm:/ecr-mirror/cosign.pub, secretsmanager:ecr-mirror/cosign"


def test_a_warm_process_reads_a_key_again_only_after_the_ttl(aws, monkeypatch):
    ssm, _ = aws
    now = [1000.0]
    monkeypatch.setattr(keys, "clock", lambda: now[0])
    ssm.put_parameter(Name="/k", Value=PUBLIC.decode(), Type="String")
    assert keys.load_keys(["ssm:/k"]).keys == (PUBLIC,)
    rotated, _ = key_pair()
    ssm.put_parameter(Name="/k", Value=rotated.decode(), Type="String", Overwrite=True)
    now[0] += keys.KEY_TTL_SECONDS - 1
    assert keys.load_keys(["ssm:/k"]).keys == (PUBLIC,)  # cached
    now[0] += 2
    assert keys.load_keys(["ssm:/k"]).keys == (rotated,)  # the rotated key, within the TTL


@pytest.mark.parametrize("spec, needle", [
    ("ssm:/absent", "cannot read the cosign key ssm:/absent: ParameterNotFound"),
    ("secretsmanager:absent", "cannot read the cosign key secretsmanager:absent: ResourceNotFoundException"),
])
def test_a_missing_key_is_named(aws, spec, needle):
    with pytest.raises(CosignKeyError) as err:
        keys.load_keys([spec])
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not err.value.temporary


def test_a_private_key_in_a_secret_is_refused_without_showing_it(aws):
    _, secrets = aws
    secrets.create_secret(Name="ecr-mirror/oops", SecretString=PRIVATE.decode())
    with pytest.raises(CosignKeyError) as err:
        keys.load_keys(["secretsmanager:ecr-mirror/oops"])
    message = str(err.value)
    assert "secretsmanager:ecr-mirror/oops holds a private key" in message
    assert PRIVATE.decode().splitlines()[1] not in message


def test_a_parameter_that_is_not_a_key(aws):
    ssm, _ = aws
    ssm.put_parameter(Name="/not-a-key", Value="hunter2-secret-text", Type="SecureString")
    with pytest.raises(CosignKeyError) as err:
        keys.load_keys(["ssm:/not-a-key"])
    assert "ssm:/not-a-key is not a PEM public key" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_key_file_for_the_cli(tmp_path):
    path = tmp_path / "cosign.pub"
    path.write_bytes(PUBLIC)
    assert keys.load_keys([str(path)], files=True) == keys.VerifyPolicy((PUBLIC,), str(path))
    with pytest.raises(CosignKeyError, match=r"cannot read the cosign key .*absent.pub: No such file"):
        keys.load_keys([str(tmp_path / "absent.pub")], files=True)


@pytest.mark.parametrize("spec, needle", [
    ("cosign.pub", "is not a PEM public key, ssm:/parameter-name or secretsmanager"),  # no files here
    ("ssm:", "names no ssm resource"),
    ("", "give a PEM public key"),
    (42, "give a PEM public key"),
    ("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", "the inline key is not a PEM"),
])
def test_bad_specs_are_usage_errors(spec, needle):
    with pytest.raises(UsageError, match=needle):
        keys.check_spec(spec)


def dsa_public() -> bytes:
    """A PEM public key cryptography reads but cosign never signs with."""
    from cryptography.hazmat.primitives.asymmetric import dsa

    return dsa.generate_private_key(key_size=1024).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def assert_refused_as_not_cosign(message: str, spec: str) -> None:
    assert f"{spec} holds a DSA public key" in message, message
    assert "ECDSA" in message and "RSA" in message and "Ed25519" in message  # what works
    assert "\n" not in message and "BEGIN" not in message


def test_a_dsa_key_in_a_file_is_refused_when_it_is_read(tmp_path):
    """One rule set: what the gate could not use is refused when the key is read,
    not at copy time."""
    path = tmp_path / "dsa.pub"
    path.write_bytes(dsa_public())
    with pytest.raises(CosignKeyError) as err:
        keys.load_keys([str(path)], files=True)
    assert_refused_as_not_cosign(str(err.value), str(path))
    assert not err.value.temporary


def test_a_dsa_key_in_ssm_is_refused_when_it_is_read(aws):
    ssm, _ = aws
    ssm.put_parameter(Name="/ecr-mirror/dsa.pub", Value=dsa_public().decode(), Type="String")
    with pytest.raises(CosignKeyError) as err:
        keys.load_keys(["ssm:/ecr-mirror/dsa.pub"])
    assert_refused_as_not_cosign(str(err.value), "ssm:/ecr-mirror/dsa.pub")


def test_an_inline_dsa_key_is_a_usage_error():
    with pytest.raises(UsageError) as err:
        keys.check_spec(dsa_public().decode())
    assert_refused_as_not_cosign(str(err.value), "the inline key")
