"""The signature checks on their own: cosign payloads, bundles and keys, well formed
and malformed. A bad signature is a `BadSignature` with a precise reason, a bad key a
one-line `CosignKeyError`: never a traceback from a parser."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from ecr_mirror.errors import CosignKeyError
from ecr_mirror.signatures import BadSignature, Reason, check_bundle, check_simple_signing, load_keys
from ecr_mirror_testing.cosign import IN_TOTO, SIGN_PREDICATE, Signer, payload

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture(scope="module")
def signer():
    return Signer.generate()


def keys_of(*signers: Signer):
    return load_keys(tuple(s.public_pem for s in signers), "cosign.pub")


@pytest.mark.parametrize("kind", ["ecdsa", "rsa", "ed25519"])
def test_a_signature_over_the_digest_verifies_with_each_key_type(kind):
    signer = Signer.generate(kind)
    data = payload(DIGEST, "docker.io/library/x")
    check_simple_signing(data, signer.sign(data), DIGEST, keys_of(signer))


def test_key_rotation_either_key_verifies(signer):
    new = Signer.generate()
    both = load_keys((signer.public_pem + new.public_pem,), "keys.pem")  # one file, two keys
    for who in (signer, new):
        data = payload(DIGEST)
        check_simple_signing(data, who.sign(data), DIGEST, both)


def reason_of(call, *args) -> BadSignature:
    with pytest.raises(BadSignature) as caught:
        call(*args)
    return caught.value


def test_another_key_another_digest_and_tampering_each_have_their_reason(signer):
    data = payload(DIGEST)
    other_key = reason_of(check_simple_signing, data, Signer.generate().sign(data), DIGEST, keys_of(signer))
    assert other_key.reason is Reason.OTHER_KEY
    other_digest = reason_of(check_simple_signing, payload(OTHER), signer.sign(payload(OTHER)), DIGEST,
                             keys_of(signer))
    assert other_digest.reason is Reason.OTHER_DIGEST and OTHER in str(other_digest)
    # the signature of OTHER's payload on a payload edited to name DIGEST
    tampered = reason_of(check_simple_signing, payload(DIGEST), signer.sign(payload(OTHER)), DIGEST,
                         keys_of(signer))
    assert tampered.reason is Reason.OTHER_KEY and "altered" in str(tampered)


@pytest.mark.parametrize("data, signature, words", [
    (b"not json", "c2ln", "not JSON"),
    (b"\xff\xfe", "c2ln", "not JSON"),
    (b"[1, 2]", "c2ln", "not a JSON object"),
    (b"{}", "c2ln", "no critical.image.docker-manifest-digest"),
    (b'{"critical": "x"}', "c2ln", "no critical.image.docker-manifest-digest"),
    (b'{"critical": {"image": {"docker-manifest-digest": 7}}}', "c2ln", "docker-manifest-digest"),
    (b"[" * 100000 + b"]" * 100000, "c2ln", "not JSON"),
    (payload(DIGEST), None, "annotation is missing"),
    (payload(DIGEST), 42, "annotation is missing"),
    (payload(DIGEST), "not base64!", "not base64"),
])
def test_malformed_payloads_and_signatures_are_malformed(signer, data, signature, words):
    bad = reason_of(check_simple_signing, data, signature, DIGEST, keys_of(signer))
    assert bad.reason is Reason.MALFORMED and words in str(bad)


def test_a_signature_of_garbage_bytes_is_another_key_not_a_crash(signer):
    junk = base64.b64encode(b"\x30\x02\x00").decode()  # not a DER signature
    assert reason_of(check_simple_signing, payload(DIGEST), junk, DIGEST,
                     keys_of(signer)).reason is Reason.OTHER_KEY


def bundle(signer: Signer, digest: str, *, predicate=SIGN_PREDICATE, payload_type=IN_TOTO,
           statement: bytes | None = None, sig: str | None = None) -> bytes:
    algorithm, _, hex_ = digest.partition(":")
    statement = statement or json.dumps({"_type": "https://in-toto.io/Statement/v1",
                                         "subject": [{"digest": {algorithm: hex_}}],
                                         "predicateType": predicate, "predicate": {}}).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(statement), statement)
    return json.dumps({"dsseEnvelope": {"payload": base64.b64encode(statement).decode(),
                                        "payloadType": payload_type,
                                        "signatures": [{"sig": sig or signer.sign(pae)}]}}).encode()


def test_a_sigstore_bundle_over_the_digest_verifies(signer):
    check_bundle(bundle(signer, DIGEST), DIGEST, keys_of(signer))


@pytest.mark.parametrize("make, reason, words", [
    (lambda s: bundle(s, OTHER), Reason.OTHER_DIGEST, OTHER),
    (lambda s: bundle(Signer.generate(), DIGEST), Reason.OTHER_KEY, "another key"),
    (lambda s: bundle(s, DIGEST, predicate="https://slsa.dev/provenance/v1"), Reason.MALFORMED,
     "not an image signature"),
    (lambda s: bundle(s, DIGEST, payload_type="text/plain"), Reason.MALFORMED, "in-toto"),
    (lambda s: bundle(s, DIGEST, statement=b"[]"), Reason.MALFORMED, "not a JSON object"),
    (lambda s: bundle(s, DIGEST, sig="%%%"), Reason.MALFORMED, "not base64"),
    (lambda s: json.dumps({"messageSignature": {"signature": "c2ln"}}).encode(), Reason.MALFORMED,
     "messageSignature"),
    (lambda s: json.dumps({"dsseEnvelope": {"payload": "e30=", "payloadType": IN_TOTO,
                                            "signatures": "x"}}).encode(), Reason.MALFORMED, "in-toto"),
    (lambda s: b"\x00", Reason.MALFORMED, "not JSON"),
])
def test_bundles_that_do_not_let_the_image_through(signer, make, reason, words):
    bad = reason_of(check_bundle, make(signer), DIGEST, keys_of(signer))
    assert bad.reason is reason and words in str(bad)


@pytest.mark.parametrize("pem, words", [
    (b"", "is not a PEM public key"),
    (b"ssh-ed25519 AAAA...", "is not a PEM public key"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a readable public key"),
])
def test_keys_that_cannot_be_used_are_one_line_key_errors(pem, words):
    with pytest.raises(CosignKeyError) as caught:
        load_keys((pem,), "keys/cosign.pub")
    assert words in str(caught.value) and "keys/cosign.pub" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_private_key_is_refused_without_echoing_it(signer):
    with pytest.raises(CosignKeyError) as caught:
        load_keys((signer.private_pem,), "cosign.key")
    assert "private key" in str(caught.value)
    secret = b"".join(signer.private_pem.splitlines()[1:-1]).decode()
    assert secret[:40] not in str(caught.value)


def test_a_dsa_key_is_not_a_cosign_key_type():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa

    pem = dsa.generate_private_key(key_size=1024).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(CosignKeyError, match="not a cosign key type"):
        load_keys((pem,), "dsa.pub")


def test_cryptography_is_not_imported_until_the_gate_runs():
    """A run without the gate pays nothing for it at cold start: the handlers, the CLI
    and the engine import `signatures`, never `cryptography` itself."""
    code = ("import sys, ecr_mirror.handlers.worker, ecr_mirror.handlers.scheduler, ecr_mirror.cli, "
            "ecr_mirror.signatures; print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "POWERTOOLS_METRICS_NAMESPACE": "test"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
