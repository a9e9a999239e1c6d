"""A test signer that signs and stores images the way cosign does, with keys made here.

The `cosign` binary is not available offline, so this follows cosign's documented
formats (and its source) byte for byte where the bytes are signed:
- the simple-signing payload, as Go's json.Marshal writes cosign's struct:
  ``{"critical":{"identity":{"docker-reference":...},"image":{"docker-manifest-digest":...},
  "type":"cosign container image signature"},"optional":null}``;
- the signature: ECDSA P-256 over SHA-256 of the payload, ASN.1 DER, base64 (cosign's
  default key); RSA PKCS#1 v1.5 / SHA-256 and Ed25519 keys sign the same way;
- (a) the legacy tag ``sha256-<hex>.sig``: an OCI image manifest with an image config and
  one simple-signing layer per signature, the signature in the layer's annotation;
- (b) an OCI 1.1 referrer: the same layer in an artifact of type
  ``application/vnd.dev.cosign.artifact.sig.v1+json`` with the empty config and
  ``subject``, listed in the fallback index ``sha256-<hex>`` (Debian's distribution 2.8
  has no referrers API);
- (c) cosign v3's sigstore bundle: a DSSE envelope over an in-toto statement of predicate
  ``https://sigstore.dev/cosign/sign/v1`` (no transparency-log entry: key-only).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

# cosign's media types and annotation names: one spelling, the gate's (what is signed is
# built independently below).
from ecr_mirror.signatures import (
    BUNDLE_TYPE,
    IN_TOTO,
    SIGN_PREDICATE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT,
    SIMPLE_SIGNING,
)

from .artifacts import make_artifact, push_fallback_index, subject_tag
from .images import OCI_CONFIG, PushedImage

__all__ = ["BUNDLE_TYPE", "IN_TOTO", "SIGN_PREDICATE", "Signer", "list_referrers", "payload"]


def payload(digest: str, reference: str = "") -> bytes:
    """cosign's simple-signing payload for `digest`, as Go's json.Marshal writes it."""
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature"},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def _signature_config(payload_bytes: bytes) -> bytes:
    """The image config cosign writes for a `.sig` manifest (one diff id per layer)."""
    diff_id = "sha256:" + hashlib.sha256(payload_bytes).hexdigest()
    return json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                       "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                       "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "config": {}},
                      separators=(",", ":")).encode()


@dataclass
class Signer:
    """One key pair; `kind` is ``ecdsa`` (cosign's default, P-256), ``rsa`` or ``ed25519``."""

    private_key: Any
    kind: str = "ecdsa"

    @classmethod
    def generate(cls, kind: str = "ecdsa") -> Signer:
        if kind == "ecdsa":
            return cls(ec.generate_private_key(ec.SECP256R1()), kind)
        if kind == "rsa":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), kind)
        if kind == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate(), kind)
        raise ValueError(kind)

    @property
    def public_pem(self) -> bytes:
        """The public key as `cosign.pub` holds it (PKIX, PEM)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    def sign_bytes(self, message: bytes) -> bytes:
        if self.kind == "ecdsa":
            return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
        if self.kind == "rsa":
            return self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return self.private_key.sign(message)

    def sign(self, message: bytes) -> str:
        """The base64 signature cosign puts in the annotation."""
        return base64.b64encode(self.sign_bytes(message)).decode()

    # -- pushing --------------------------------------------------------------------

    def push_sig_tag(self, base_url: str, repo: str, digest: str, *, tag_for: str | None = None,
                     payload_bytes: bytes | None = None, signature: str | None = None) -> PushedImage:
        """(a) The legacy `.sig` tag of `tag_for` (default: `digest`) holding a signature
        over `digest`. `payload_bytes` / `signature` replace the honest ones (tampering)."""
        data = payload_bytes if payload_bytes is not None else payload(digest, repo)
        annotation = signature if signature is not None else self.sign(data)
        return make_artifact(base_url, repo, subject_tag(tag_for or digest, ".sig"), artifact_type=None,
                             config_type=OCI_CONFIG, config=_signature_config(data),
                             layers=[(SIMPLE_SIGNING, data, {SIGNATURE_ANNOTATION: annotation})])

    def referrer(self, base_url: str, repo: str, subject: PushedImage, *,
                 signed_digest: str | None = None) -> PushedImage:
        """(b) A signature over `signed_digest` (default: the subject's) as an OCI 1.1
        referrer of `subject`, pushed by digest; list it with `push_fallback_index`."""
        data = payload(signed_digest or subject.digest, repo)
        return make_artifact(base_url, repo, None, artifact_type=SIGNATURE_ARTIFACT, subject=subject,
                             layers=[(SIMPLE_SIGNING, data, {SIGNATURE_ANNOTATION: self.sign(data)})])

    def bundle_referrer(self, base_url: str, repo: str, subject: PushedImage, *,
                        signed_digest: str | None = None) -> PushedImage:
        """(c) cosign v3's sigstore bundle as a referrer of `subject`, pushed by digest."""
        algorithm, _, hex_ = (signed_digest or subject.digest).partition(":")
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                                "subject": [{"name": repo, "digest": {algorithm: hex_}}],
                                "predicateType": SIGN_PREDICATE, "predicate": {}},
                               separators=(",", ":")).encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(statement), statement)
        bundle = json.dumps({
            "mediaType": BUNDLE_TYPE,
            "verificationMaterial": {"publicKey": {"hint": "test-key"}},
            "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": IN_TOTO,
                             "signatures": [{"sig": self.sign(pae), "keyid": ""}]},
        }).encode()
        return make_artifact(base_url, repo, None, artifact_type=BUNDLE_TYPE, subject=subject,
                             layers=[(BUNDLE_TYPE, bundle)],
                             annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                                          "dev.sigstore.bundle.predicateType": SIGN_PREDICATE})


def list_referrers(base_url: str, repo: str, subject: PushedImage,
                   referrers: Sequence[PushedImage]) -> PushedImage:
    """The fallback index ``sha256-<hex>`` of `subject`, as cosign writes it on a registry
    without the referrers API."""
    return push_fallback_index(base_url, repo, subject.digest, list(referrers))
