"""The signature gate: an image moves only if a cosign signature over its exact
manifest digest verifies with a trusted public key.

Where cosign puts signatures (all looked for, cheapest first, stopping at the
first that verifies):
- the legacy tag ``sha256-<hex>.sig``: an image manifest whose layers are
  simple-signing payloads (`SIMPLE_SIGNING`), each with its base64 signature in
  the annotation `SIGNATURE_ANNOTATION`;
- OCI 1.1 referrers of the digest (the referrers API, or on a registry without
  it the fallback index tag ``sha256-<hex>``): artifacts of type
  `SIGNATURE_ARTIFACT` (the same layers) or `BUNDLE_TYPE` (cosign v3's sigstore
  bundle: a DSSE envelope over an in-toto statement whose subject is the digest).

What is checked: the signature over the exact payload bytes verifies with one
of the keys (ECDSA with SHA-256, as cosign's keys; RSA PKCS#1 v1.5 with SHA-256;
Ed25519), and the payload names the digest being mirrored. What is not: no
transparency log (Rekor), no certificate or identity (keyless), no policy on
annotations. `cryptography` is imported only when the gate runs.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from .digest import ALGORITHMS, check, fallback_tag
from .errors import CosignKeyError, MirrorError
from .manifest import Manifest
from .registry.errors import NotFound

if TYPE_CHECKING:
    from .copy.options import VerifyPolicy
    from .copy.report import CopyReport
    from .registry.client import RegistryClient

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
#: A payload or bundle blob read at most this large (cosign's are under 10 KiB).
MAX_SIGNATURE_BYTES = 256 * 1024
#: Signature manifests fetched for one image at most (each a counted pull).
MAX_SIGNATURE_MANIFESTS = 10

#: Counted pulls the gate is reserved for a changed image: the `.sig` tag's manifest,
#: the fallback referrers index and one signature referrer, the most it takes to
#: find a signature in each place it looks (a HEAD and the referrers API are free).
GATE_PULLS = 3

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.S)


class Reason(Enum):
    """Why a signature did not let the image through, most telling first."""

    OTHER_DIGEST = "signed over another digest"
    OTHER_KEY = "signed by another key"
    MALFORMED = "malformed signature"


class BadSignature(Exception):
    """One signature that does not let the image through (not an error of the copy)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason, self.detail = reason, detail


def gate_pulls(verify: object) -> int:
    """Counted pulls to reserve for the gate of a changed image: `GATE_PULLS` when
    `verify` (key specs or a policy) turns it on, else none."""
    return GATE_PULLS if verify else 0


# -- keys ----------------------------------------------------------------------------


#: The key types cosign signs with, as a message says what to give instead.
KEY_TYPES = "ECDSA (P-256, as `cosign generate-key-pair` makes), RSA or Ed25519"


def parse_keys(pem: bytes, where: str) -> tuple[Any, ...]:
    """The public keys in `pem` (one or more PEM blocks: a key rotation in one file),
    each of a type cosign signs with. The one rule set for keys: `keys` applies it
    when a key is read, the gate when it runs. `CosignKeyError` naming `where`,
    never the content (a secret may hold what must not be shown)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if b"PRIVATE KEY" in pem:
        raise CosignKeyError(f"{where} holds a private key; give the public key (cosign.pub), "
                             "and keep the private key out of the mirror")
    keys = []
    for block in _PEM_BLOCK.finditer(pem):
        label = block.group(1).decode()
        try:
            key = load_pem_public_key(block.group(0))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CosignKeyError(f"{where} is not a PEM public key: a {label} block is not a readable "
                                 f"public key; give {KEY_TYPES}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            kind = type(key).__name__.removesuffix("PublicKey").lstrip("_") or "another"
            raise CosignKeyError(f"{where} holds a {kind} public key, which is not a cosign key type; "
                                 f"give {KEY_TYPES}")
        keys.append(key)
    if not keys:
        raise CosignKeyError(f"{where} is not a PEM public key (-----BEGIN PUBLIC KEY-----, "
                             "as `cosign generate-key-pair` writes cosign.pub)")
    return tuple(keys)


@functools.lru_cache(maxsize=8)
def load_keys(pems: tuple[bytes, ...], origin: str) -> tuple[Any, ...]:
    """The public keys of a `VerifyPolicy` for the gate (read and checked by `keys`
    already; a policy built otherwise meets the same rules): `CosignKeyError`
    naming `origin`, never the key, when one is not a usable public key."""
    if not pems:
        raise CosignKeyError(f"{origin}: no public key given for the signature gate")
    return tuple(key for pem in pems
                 for key in parse_keys(pem.encode() if isinstance(pem, str) else pem, origin))


def verifies(keys: tuple[Any, ...], signature: bytes, message: bytes) -> bool:
    """Whether `signature` over `message` verifies with one of `keys`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    for key in keys:
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                key.verify(signature, message)
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


# -- one signature -------------------------------------------------------------------


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadSignature(Reason.MALFORMED, f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(Reason.MALFORMED, f"{what} is not base64") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadSignature(Reason.MALFORMED, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise BadSignature(Reason.MALFORMED, f"{what} is not a JSON object")
    return value


def _field(doc: Any, *path: str) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def check_simple_signing(payload: bytes, signature: Any, digest: str, keys: tuple[Any, ...]) -> None:
    """A cosign simple-signing payload and its base64 signature (the annotation):
    return if it signs `digest` with one of `keys`, else raise `BadSignature`."""
    raw = _b64(signature, "the signature annotation")
    doc = _json_object(payload, "the simple-signing payload")
    signed = _field(doc, "critical", "image", "docker-manifest-digest")
    if not isinstance(signed, str):
        raise BadSignature(Reason.MALFORMED, "the payload has no critical.image.docker-manifest-digest")
    if not verifies(keys, raw, payload):
        raise BadSignature(Reason.OTHER_KEY, "the signature does not verify with the key "
                                             "(another key signed it, or the payload was altered)")
    if signed != digest:
        raise BadSignature(Reason.OTHER_DIGEST, f"the payload names {_short(signed)}, not {digest}")


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def check_bundle(bundle: bytes, digest: str, keys: tuple[Any, ...]) -> None:
    """A sigstore bundle (v0.3, as cosign v3 signs images): a DSSE envelope over an
    in-toto statement of predicate `SIGN_PREDICATE` whose subject is `digest`."""
    doc = _json_object(bundle, "the sigstore bundle")
    envelope = doc.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise BadSignature(Reason.MALFORMED, "the bundle has no dsseEnvelope (a sign-blob "
                                             "messageSignature names no image)")
    payload = _b64(envelope.get("payload"), "the envelope's payload")
    payload_type = envelope.get("payloadType")
    signatures = envelope.get("signatures")
    if payload_type != IN_TOTO or not isinstance(signatures, list) or not signatures:
        raise BadSignature(Reason.MALFORMED, "the envelope is not a signed in-toto statement")
    message = _pae(payload_type, payload)
    if not any(verifies(keys, _b64(_field(s, "sig"), "an envelope signature"), message)
               for s in signatures[:8]):
        raise BadSignature(Reason.OTHER_KEY, "no envelope signature verifies with the key "
                                             "(another key signed it, or the statement was altered)")
    statement = _json_object(payload, "the in-toto statement")
    if statement.get("predicateType") != SIGN_PREDICATE:
        raise BadSignature(Reason.MALFORMED, f"the statement's predicate is "
                                             f"{_short(statement.get('predicateType'))}, not an image signature")
    subjects = statement.get("subject")
    subjects = subjects if isinstance(subjects, list) else []
    named = [f"{alg}:{hex_}" for s in subjects if isinstance(_field(s, "digest"), dict)
             for alg, hex_ in s["digest"].items() if alg in ALGORITHMS]
    if digest not in named:
        raise BadSignature(Reason.OTHER_DIGEST, f"the statement names {_short(', '.join(named) or 'nothing')}, "
                                                f"not {digest}")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- finding them ----------------------------------------------------------------------


@dataclass
class _Found:
    where: str
    layer: dict[str, Any]


class _Gate:
    def __init__(self, source: RegistryClient, repo: str, digest: str, keys: tuple[Any, ...]) -> None:
        self.source, self.repo, self.digest, self.keys = source, repo, digest, keys
        self.failures: list[tuple[str, BadSignature]] = []
        self.seen: set[str] = set()  # signature manifests fetched
        self.capped = False

    def passes(self) -> bool:
        for found in self._signatures():
            try:
                self._check(found)
            except BadSignature as exc:
                self.failures.append((found.where, exc))
            else:
                return True
        return False

    def _tagged(self, tag: str) -> Manifest | None:
        """The manifest under `tag`: a HEAD first (free), a GET only when it exists."""
        try:
            head = self.source.head_manifest(self.repo, tag)
        except NotFound:
            return None
        return self._get(head.digest, f"tag {tag}")

    def _get(self, digest: str, where: str) -> Manifest | None:
        """A signature manifest by digest: each once, at most `MAX_SIGNATURE_MANIFESTS`."""
        if digest in self.seen:
            return None
        if len(self.seen) >= MAX_SIGNATURE_MANIFESTS:
            self.capped = True
            return None
        try:
            check(digest, where)
        except MirrorError:
            self.failures.append((where, BadSignature(Reason.MALFORMED, "its digest is not a digest")))
            return None
        self.seen.add(digest)
        return self.source.get_manifest(self.repo, digest, image=f"signature {where} of {self.digest}")

    def _signatures(self) -> Iterator[_Found]:
        tag = fallback_tag(self.digest, ".sig")
        yield from self._layers(self._tagged(tag), f"tag {tag}")
        listed = self.source.list_referrers(self.repo, self.digest)
        if listed is None:  # no referrers API: the fallback tag schema
            index = self._tagged(fallback_tag(self.digest))
            listed = index.children if index is not None else []
        for descriptor in listed:
            if self.capped:
                return
            if descriptor.get("artifactType") in (SIGNATURE_ARTIFACT, BUNDLE_TYPE):
                where = f"referrer {descriptor['digest']}"
                yield from self._layers(self._get(descriptor["digest"], where), where)

    def _layers(self, manifest: Manifest | None, where: str) -> Iterator[_Found]:
        if manifest is None:
            return
        layers = [d for d in manifest.layers if d.get("mediaType") in (SIMPLE_SIGNING, BUNDLE_TYPE)]
        if not layers:
            self.failures.append((where, BadSignature(Reason.MALFORMED, "it holds no signature layer")))
        for layer in layers:
            yield _Found(where, layer)

    def _check(self, found: _Found) -> None:
        data = self._read(found.layer)
        if found.layer["mediaType"] == BUNDLE_TYPE:
            check_bundle(data, self.digest, self.keys)
        else:
            signature = (found.layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
            check_simple_signing(data, signature, self.digest, self.keys)

    def _read(self, layer: dict[str, Any]) -> bytes:
        """The payload blob, bounded and verified against its digest and size."""
        size = layer["size"]
        if size > MAX_SIGNATURE_BYTES:
            raise BadSignature(Reason.MALFORMED, f"its payload is {size} bytes, more than the "
                                                 f"{MAX_SIGNATURE_BYTES} read")
        try:
            digest = check(layer["digest"], "signature payload")
        except MirrorError:
            raise BadSignature(Reason.MALFORMED, "its payload's digest is not a digest") from None
        try:
            with self.source.open_blob(self.repo, digest, size) as stream:
                data = bytes(stream.read(size))
                stream.verify()
        except NotFound:
            raise BadSignature(Reason.MALFORMED, f"its payload blob {digest} is missing") from None
        return data

    def reason(self, origin: str) -> str:
        if not self.failures:
            return (f"no signature found for {self.digest} (cosign tag {fallback_tag(self.digest, '.sig')} "
                    "and OCI 1.1 referrers looked up)")
        where, worst = min(self.failures, key=lambda f: list(Reason).index(f[1].reason))
        more = len(self.failures) - 1
        return (f"{worst.reason.value}: {where}: {worst.detail} (trusted: {origin})"
                + (f"; {more} other signature{'s' if more > 1 else ''} did not verify either" if more else "")
                + (f"; only the first {MAX_SIGNATURE_MANIFESTS} signature manifests were fetched"
                   if self.capped else ""))


def reject_unsigned(source: RegistryClient, repo: str, digest: str, policy: VerifyPolicy,
                    report: CopyReport) -> bool:
    """The gate, before anything moves: True (and the report `rejected`, with why)
    unless a signature over `digest` verifies with one of the policy's keys.
    Registry errors (a 429, a spent pull budget) propagate: the image is deferred."""
    from .copy.report import REJECTED

    gate = _Gate(source, repo, digest, load_keys(policy.keys, policy.origin))
    if gate.passes():
        return False
    report.status = REJECTED
    report.rejected_reason = gate.reason(policy.origin)
    return True
