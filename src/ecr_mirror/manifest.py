"""Manifests as exact bytes plus the little we need to read from them.

A manifest is never re-serialised: its digest is the sha256 of the bytes the
registry sent, and ECR computes the same digest from the string we give it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidManifest, UnsupportedMediaType
from .reference import quote

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
SUPPORTED = INDEX_TYPES + IMAGE_TYPES
#: Sent as Accept on every manifest request: without the OCI types Docker Hub
#: answers 404 for OCI indexes, without Docker v2 it may down-convert to schema1.
ACCEPT = ", ".join(SUPPORTED)

FOREIGN_LAYER_TYPES = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",)
NONDISTRIBUTABLE_PREFIX = "application/vnd.oci.image.layer.nondistributable."

ATTESTATION_REFERENCE_TYPE = "attestation-manifest"
#: os/arch[/variant] as a user writes it (--platform, events, the config).
PLATFORM_PATTERN = r"[a-z0-9_-]+/[a-z0-9_-]+(?:/[a-z0-9_.-]+)?"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_foreign(descriptor: dict[str, Any]) -> bool:
    """Non-distributable layers are fetched from their `urls`, never pushed."""
    media_type = descriptor.get("mediaType", "")
    return media_type in FOREIGN_LAYER_TYPES or media_type.startswith(NONDISTRIBUTABLE_PREFIX)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        if not isinstance(text, str) or not re.fullmatch(PLATFORM_PATTERN, text):
            raise ValueError(f"invalid platform {quote(str(text))}: expected os/arch or "
                             "os/arch/variant in lowercase, e.g. linux/arm64/v8")
        parts = text.split("/")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_descriptor(cls, descriptor: dict[str, Any]) -> Platform | None:
        p = descriptor.get("platform")
        if not p:
            return None
        return cls(p.get("os", ""), p.get("architecture", ""), p.get("variant"))

    def matches(self, other: Platform | None) -> bool:
        """`linux/arm64` matches any variant; `linux/arm/v7` only v7."""
        if other is None:
            return False
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Manifest:
    """Raw manifest bytes, their media type and digest, and the parsed JSON."""

    raw: bytes
    media_type: str
    digest: str
    body: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str | None, *, image: str = "") -> Manifest:
        """Parse and check the shape of everything the copy reads; `InvalidManifest`
        (naming `image` and the field) or `UnsupportedMediaType` otherwise."""
        body = _decode(raw, image)
        if not isinstance(body.get("mediaType", ""), str):
            raise _malformed(image, "mediaType", f"must be a string, got {_shown(body['mediaType'])}")
        mt = _media_type(body, media_type)
        if body.get("schemaVersion") == 1 or mt in (SCHEMA1, SCHEMA1_SIGNED):
            raise UnsupportedMediaType(
                f"{image}: manifest schema 1 ({mt or 'schemaVersion 1'}) is deprecated and not "
                "supported; ask the publisher for a schema 2 or OCI image"
            )
        if mt not in SUPPORTED:
            raise UnsupportedMediaType(
                f'{image}: unsupported manifest media type "{mt or "(none)"}"; '
                f"ecr-mirror copies {', '.join(SUPPORTED)}"
            )
        _check_shape(body, mt in INDEX_TYPES, image)
        return cls(raw=raw, media_type=mt, digest=sha256_digest(raw), body=body)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def children(self) -> list[dict[str, Any]]:
        """The manifest descriptors of an index (platform images and attestations)."""
        return list(self.body.get("manifests") or []) if self.is_index else []

    @property
    def config(self) -> dict[str, Any] | None:
        return self.body.get("config") if not self.is_index else None

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.body.get("layers") or []) if not self.is_index else []

    def blobs(self) -> list[dict[str, Any]]:
        """Config then layers: every blob ECR must hold before PutImage.

        Foreign layers are left out: they live at their `urls` and are never
        pushed.
        """
        out = [self.config] if self.config else []
        return out + [d for d in self.layers if not is_foreign(d)]

    def foreign_layers(self) -> list[dict[str, Any]]:
        return [d for d in self.layers if is_foreign(d)]

    @property
    def text(self) -> str:
        """The exact manifest as the string PutImage takes."""
        return self.raw.decode("utf-8")


def _media_type(body: dict[str, Any], header: str | None) -> str:
    """The type PutImage must be given for these bytes (ECR refuses one that
    differs from the body's own `mediaType`).

    The body's `mediaType`, when it has one. Without it (optional in OCI) the
    body's shape decides between index and image manifest; the header (minus
    parameters such as `; charset=utf-8`) names the exact type when it agrees
    with that shape, else the OCI type of the shape is used."""
    declared = body.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    header_type = (header or "").split(";")[0].strip()
    if body.get("schemaVersion") != 2:
        return header_type
    looks_index = "manifests" in body
    looks_image = "config" in body or "layers" in body
    if looks_index == looks_image:  # neither or both: only the header can tell
        return header_type
    shape = INDEX_TYPES if looks_index else IMAGE_TYPES
    return header_type if header_type in shape else shape[0]


def _decode(raw: bytes, image: str) -> dict[str, Any]:
    # json.loads(bytes) would guess UTF-16 or UTF-32; PutImage takes UTF-8 text.
    if b"\x00" in raw:
        raise InvalidManifest(f"{image}: the manifest is not UTF-8 JSON (it has NUL bytes, as "
                              "UTF-16 text does); the registry must serve it as UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidManifest(f"{image}: the manifest is not UTF-8 (invalid byte at offset "
                              f"{exc.start}); the registry must serve it as UTF-8 JSON") from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidManifest(f"{image}: the manifest is not valid JSON ({problem})") from None
    if not isinstance(body, dict):
        raise InvalidManifest(f"{image}: the manifest is not a JSON object")
    return body


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _malformed(image: str, field: str, problem: str) -> InvalidManifest:
    return InvalidManifest(f"{image}: the manifest's {field} {problem}; the registry sent a "
                           "malformed manifest, ask its publisher to push it again")


def _check_strings(value: Any, field: str, image: str, *, mapping: bool) -> None:
    ok = (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())) if mapping \
        else (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if not ok:
        shape = "an object of strings" if mapping else "a list of strings"
        raise _malformed(image, field, f"must be {shape}, got {_shown(value)}")


def _check_descriptor(d: Any, field: str, image: str) -> None:
    """The fields of a descriptor that the copy reads, with the types OCI gives them."""
    if not isinstance(d, dict):
        raise _malformed(image, field, f"must be a descriptor object, got {_shown(d)}")
    if not isinstance(d.get("digest"), str) or not d["digest"]:
        raise _malformed(image, f"{field}.digest", f"must be a digest such as sha256:<hex>, "
                                                   f"got {_shown(d.get('digest'))}")
    size = d.get("size")
    if type(size) is not int or size < 0:
        raise _malformed(image, f"{field}.size", f"must be a whole number of bytes, got {_shown(size)}")
    for key in ("mediaType", "artifactType"):
        if key in d and not isinstance(d[key], str):
            raise _malformed(image, f"{field}.{key}", f"must be a string, got {_shown(d[key])}")
    if "urls" in d:
        _check_strings(d["urls"], f"{field}.urls", image, mapping=False)
    if "annotations" in d:
        _check_strings(d["annotations"], f"{field}.annotations", image, mapping=True)
    platform = d.get("platform")
    if platform is not None and not (
            isinstance(platform, dict) and isinstance(platform.get("os"), str)
            and isinstance(platform.get("architecture"), str)
            and isinstance(platform.get("variant", ""), str)):
        raise _malformed(image, f"{field}.platform", "must be an object with os and architecture "
                                                     f"strings, got {_shown(platform)}")


def _check_shape(body: dict[str, Any], is_index: bool, image: str) -> None:
    if "annotations" in body:
        _check_strings(body["annotations"], "annotations", image, mapping=True)
    if "subject" in body:
        _check_descriptor(body["subject"], "subject", image)
    lists = ("manifests",) if is_index else ("layers",)
    if not is_index:
        if "config" not in body:
            raise _malformed(image, "config", "is missing")
        _check_descriptor(body["config"], "config", image)
    for key in lists:
        items = body.get(key, [] if key == "layers" else None)
        if not isinstance(items, list):
            raise _malformed(image, key, f"must be a list of descriptors, got {_shown(items)}")
        for i, d in enumerate(items):
            _check_descriptor(d, f"{key}[{i}]", image)


def is_attestation(descriptor: dict[str, Any]) -> bool:
    annotations = descriptor.get("annotations") or {}
    return annotations.get("vnd.docker.reference.type") == ATTESTATION_REFERENCE_TYPE


def select_platforms(index: Manifest, wanted: list[Platform]) -> list[dict[str, Any]]:
    """The children of `index` for `wanted` platforms, with their attestations.

    Keeps the upstream order. An attestation manifest is kept when the image it
    describes (`vnd.docker.reference.digest`) is kept. A child that is itself an
    index with no platform of its own is kept whole: nested indexes are copied
    byte-exact, never rewritten, since signatures and referrers name their digests.
    """
    kept = {
        d["digest"]
        for d in index.children
        if not is_attestation(d) and (any(w.matches(Platform.from_descriptor(d)) for w in wanted)
                                      or (d.get("mediaType") in INDEX_TYPES and not d.get("platform")))
    }
    return [
        d
        for d in index.children
        if d["digest"] in kept
        or (is_attestation(d) and (d.get("annotations") or {}).get("vnd.docker.reference.digest") in kept)
    ]
