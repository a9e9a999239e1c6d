"""OCI digests: the grammar, the algorithms that are verified, and hashing.

Every digest that reaches a URL or names bytes passes :func:`check` first,
whether it came from the user (a pinned reference), a registry's header or a
manifest's descriptor: ``algorithm ":" encoded`` as the OCI image spec writes
it, with a registered algorithm and its exact lowercase-hex length. So a digest
like ``sha256:x/../../other`` can never become a request for another path, and
``sha512:…`` is verified with sha512, not trusted.
"""

from __future__ import annotations

import hashlib
import re

from .errors import DigestMismatch, MirrorError

#: Algorithms verified, with the length of their lowercase-hex encoding (the OCI
#: image spec registers sha256 and sha512; the docker CLI also accepts sha384).
ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}

# algorithm ::= component (separator component)*, encoded ::= [a-zA-Z0-9=_-]+
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[0-9a-f]+")


class InvalidDigest(MirrorError):
    """A digest that breaks the OCI grammar or names an algorithm that is not verified."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 90 else text[:87] + "...'"


def check(digest: object, what: str) -> str:
    """Return ``digest`` if it is well formed with a verified algorithm; else raise
    `InvalidDigest` naming ``what`` the digest was for."""
    if not isinstance(digest, str) or not _GRAMMAR.fullmatch(digest):
        raise InvalidDigest(f"{what}: {_shown(digest)} is not a digest (algorithm:hex, "
                            "e.g. sha256: followed by 64 lowercase hex characters)")
    algorithm, _, encoded = digest.partition(":")
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise InvalidDigest(f"{what}: unsupported digest algorithm {algorithm!r} in {_shown(digest)}; "
                            f"ecr-mirror verifies {', '.join(ALGORITHMS)}")
    if len(encoded) != length or not _HEX.fullmatch(encoded):
        raise InvalidDigest(f"{what}: {_shown(digest)} is not a {algorithm} digest "
                            f"({algorithm}: followed by {length} lowercase hex characters)")
    return digest


def fallback_tag(digest: str, suffix: str = "") -> str:
    """The referrers tag schema's name for a digest: `sha256:<hex>` -> `sha256-<hex>`
    (+ cosign's `.sig`, `.att`, `.sbom` for its legacy tags)."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}{suffix}"


def is_digest(ref: str) -> bool:
    """Whether a manifest reference is a digest rather than a tag (tags have no ':')."""
    return ":" in ref


def hasher(digest: str, what: str) -> hashlib._Hash:
    """A fresh hashlib object of the algorithm ``digest`` names (checked first)."""
    return hashlib.new(check(digest, what).partition(":")[0])


def of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify(data: bytes, digest: str, what: str) -> None:
    """Raise `DigestMismatch` unless ``data`` hashes to ``digest`` (with its algorithm)."""
    algorithm = check(digest, what).partition(":")[0]
    actual = of(data, algorithm)
    if actual != digest:
        raise DigestMismatch(f"{what}: expected {digest} but the bytes hash to {actual}")
