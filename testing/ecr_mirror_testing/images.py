"""Build synthetic images and push them to a v2 registry with raw HTTP.

Everything here talks plain HTTP to a registry base URL such as
``http://127.0.0.1:5000`` (no auth). Manifests are serialised once, pushed as
those exact bytes and kept in :class:`PushedImage` ``.raw``; every digest is the
sha256 of the exact bytes. Manifests are written indented (like ``docker``
does), so code that re-serialises a manifest changes its digest and gets caught.

Layer contents are deterministic: :func:`layer_bytes` gives the same bytes for
the same seed, so tests can share base layers between tags and repositories.
For big blobs (benchmarks, up to a few GiB) use :func:`random_blob_chunks`,
:func:`random_blob_digest` and :func:`push_blob_stream`, which never hold a
whole blob in memory.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import random
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin

import requests

# -- media types ------------------------------------------------------------
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_UNCOMPRESSED = "application/vnd.oci.image.layer.v1.tar"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
IN_TOTO_LAYER = "application/vnd.in-toto+json"

#: The Accept header a client sends to get any of the four manifest kinds.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

#: Annotations buildkit / Docker Hub put on an attestation descriptor in an index.
ATTESTATION_TYPE_KEY = "vnd.docker.reference.type"
ATTESTATION_DIGEST_KEY = "vnd.docker.reference.digest"
ATTESTATION_TYPE = "attestation-manifest"

MiB = 1 << 20
_CREATED = "2024-01-01T00:00:00Z"  # fixed, so configs (and digests) are reproducible

Platform = tuple  # (os, architecture, variant or None)


# -- helpers ------------------------------------------------------------------
def sha256_digest(data: bytes) -> str:
    """``"sha256:<hex>"`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_bytes(seed: int | str, size: int = 4096) -> bytes:
    """Deterministic pseudo-random layer content: ``Random(seed).randbytes(size)``."""
    return random.Random(seed).randbytes(size)


def _diff_id(layer: bytes) -> str:
    """The uncompressed digest of a layer: gunzip it when it is gzip, else as is."""
    if layer[:2] == b"\x1f\x8b":
        try:
            return sha256_digest(gzip.decompress(layer))
        except (OSError, EOFError, zlib.error):
            pass
    return sha256_digest(layer)


def _dumps(doc: dict) -> bytes:
    """Serialise a manifest or config once; the bytes are what gets pushed."""
    return json.dumps(doc, indent=3).encode()


def _descriptor(media_type: str, data_or_digest: bytes | str, size: int | None = None, **extra) -> dict:
    if isinstance(data_or_digest, bytes):
        digest, size = sha256_digest(data_or_digest), len(data_or_digest)
    else:
        digest = data_or_digest
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def _platform_dict(platform: Platform) -> dict:
    os_, arch, variant = (*platform, None)[:3]
    out = {"architecture": arch, "os": os_}
    if variant:
        out["variant"] = variant
    return out


_local = threading.local()


def session() -> requests.Session:
    """A per-thread ``requests.Session`` that ignores proxy environment variables."""
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
        s.trust_env = False  # tests only talk to 127.0.0.1: never via an HTTP proxy
    return s


def _check(resp: requests.Response, *expected: int) -> requests.Response:
    if resp.status_code not in expected:
        raise RuntimeError(
            f"{resp.request.method} {resp.url} -> {resp.status_code} "
            f"(expected {'/'.join(map(str, expected))}): {resp.text[:500]}"
        )
    return resp


# -- blobs ----------------------------------------------------------------------
def _start_upload(base_url: str, repo: str) -> str:
    resp = _check(session().post(f"{base_url}/v2/{repo}/blobs/uploads/"), 202)
    # The Location may be absolute or relative to the registry; resolve it.
    return urljoin(f"{base_url}/v2/{repo}/blobs/uploads/", resp.headers["Location"])


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + "digest=" + digest


def push_blob(base_url: str, repo: str, data: bytes) -> str:
    """Upload ``data`` monolithically (POST then PUT ?digest=); return its digest."""
    digest = sha256_digest(data)
    location = _start_upload(base_url, repo)
    resp = session().put(
        _with_digest(location, digest),
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(resp, 201)
    return digest


def blob_exists(base_url: str, repo: str, digest: str) -> bool:
    """``HEAD /v2/<repo>/blobs/<digest>`` answers 200."""
    return session().head(f"{base_url}/v2/{repo}/blobs/{digest}").status_code == 200


def push_blob_stream(
    base_url: str,
    repo: str,
    chunks: Iterable[bytes],
    digest: str,
    size: int,
    *,
    skip_existing: bool = True,
) -> str:
    """Upload a big blob from an iterable of chunks without holding it in memory.

    One streaming ``PUT <location>?digest=`` with chunked transfer encoding.
    ``size`` is checked against the bytes actually sent. With ``skip_existing``
    (default) a blob already in ``repo`` is not uploaded again and ``chunks``
    is not consumed. Returns ``digest``.
    """
    if skip_existing and blob_exists(base_url, repo, digest):
        return digest
    sent = 0

    def counted() -> Iterator[bytes]:
        nonlocal sent
        for chunk in chunks:
            sent += len(chunk)
            yield chunk

    location = _start_upload(base_url, repo)
    resp = session().put(
        _with_digest(location, digest),
        data=counted(),
        headers={"Content-Type": "application/octet-stream"},
    )
    if sent != size:
        raise ValueError(f"chunks gave {sent} bytes, expected {size}")
    _check(resp, 201)
    return digest


def random_blob_chunks(size: int, seed: int | str, chunk: int = 8 * MiB) -> Iterator[bytes]:
    """Yield ``size`` deterministic pseudo-random bytes in ``chunk``-sized pieces, fast.

    One random pool of ``chunk`` bytes is drawn from ``Random(seed)``; each
    piece is that pool rotated by a random offset, with the piece index stamped
    into its first 8 bytes, so no two pieces are equal (a part copied to the
    wrong offset changes the digest) at memcpy speed (GB/s) rather than the
    ~350 MB/s of ``randbytes``. The bytes depend on ``(seed, chunk)``; a
    shorter ``size`` gives a prefix of a longer one.
    """
    if size < 0 or chunk <= 8:
        raise ValueError("size must be >= 0 and chunk > 8")
    rng = random.Random(seed)
    pool = rng.randbytes(chunk)
    doubled = pool + pool
    for index, start in enumerate(range(0, size, chunk)):
        n = min(chunk, size - start)
        offset = rng.randrange(chunk)
        stamp = index.to_bytes(8, "big")[:n]
        yield stamp + doubled[offset + len(stamp) : offset + n]


@functools.lru_cache(maxsize=64)
def random_blob_digest(size: int, seed: int | str, chunk: int = 8 * MiB) -> str:
    """Digest of ``random_blob_chunks(size, seed, chunk)`` (a first pass; cached)."""
    h = hashlib.sha256()
    for piece in random_blob_chunks(size, seed, chunk):
        h.update(piece)
    return "sha256:" + h.hexdigest()


def push_random_blob(base_url: str, repo: str, size: int, seed: int | str, chunk: int = 8 * MiB) -> str:
    """Push a big deterministic random blob (two streaming passes); return its digest."""
    digest = random_blob_digest(size, seed, chunk)
    return push_blob_stream(base_url, repo, random_blob_chunks(size, seed, chunk), digest, size)


# -- manifests ------------------------------------------------------------------
def push_manifest(base_url: str, repo: str, ref: str | None, raw: bytes, media_type: str) -> str:
    """PUT the exact ``raw`` bytes as a manifest under ``ref`` (tag or digest).

    ``ref=None`` pushes by digest. Checks that the registry's
    ``Docker-Content-Digest`` is the sha256 of ``raw``; returns that digest.
    """
    digest = sha256_digest(raw)
    resp = session().put(
        f"{base_url}/v2/{repo}/manifests/{ref or digest}",
        data=raw,
        headers={"Content-Type": media_type},
    )
    _check(resp, 201)
    got = resp.headers.get("Docker-Content-Digest")
    if got != digest:
        raise RuntimeError(f"registry says manifest digest {got}, sha256 of the bytes is {digest}")
    return digest


def get_manifest(base_url: str, repo: str, ref: str) -> requests.Response:
    """GET a manifest with an Accept header for all four manifest kinds."""
    return session().get(
        f"{base_url}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT}
    )


@dataclass
class PushedImage:
    """What was pushed: a manifest (or index) and what it references.

    ``ref`` is the tag, or the digest when pushed by digest. ``blobs`` are the
    digests pushed for this manifest (config then layers; empty for an index;
    foreign layers are not included, they are in ``foreign``). ``children``
    are the manifests of an index in index order (attestations included).
    """

    repo: str
    ref: str
    digest: str
    raw: bytes
    media_type: str
    blobs: list[str] = field(default_factory=list)
    children: list[PushedImage] = field(default_factory=list)
    platform: Platform | None = None  # (os, arch, variant) of a platform image
    attestation_for: str | None = None  # subject digest, for an attestation manifest
    foreign: list[str] = field(default_factory=list)  # digests of foreign layers (not pushed)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def json(self) -> dict:
        return json.loads(self.raw)

    def all_blobs(self) -> list[str]:
        """Blobs of this manifest and all children, without duplicates, in order."""
        seen = dict.fromkeys(self.blobs)
        for child in self.children:
            seen.update(dict.fromkeys(child.all_blobs()))
        return list(seen)

    def all_manifests(self) -> list[PushedImage]:
        """This manifest and every child (children first, as they must be pushed)."""
        out = [m for child in self.children for m in child.all_manifests()]
        return [*out, self]


def _config(platform: Platform, diff_ids: list[str], extra: dict | None) -> dict:
    config = {
        **_platform_dict(platform),
        "created": _CREATED,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": _CREATED, "created_by": "ecr-mirror test layer"} for _ in diff_ids],
    }
    config.update(extra or {})
    return config


def make_image(
    base_url: str,
    repo: str,
    tag: str | None,
    *,
    layers: list[bytes],
    oci: bool = False,
    platform: Platform = ("linux", "amd64", None),
    config_extra: dict | None = None,
) -> PushedImage:
    """Push ``layers``, a config and a single-platform manifest under ``tag``.

    Docker v2 schema2 by default, OCI image manifest with ``oci=True``.
    ``tag=None`` pushes the manifest by digest only.
    """
    layer_type, config_type, manifest_type = (
        (OCI_LAYER, OCI_CONFIG, OCI_MANIFEST) if oci else (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST)
    )
    layer_digests = [push_blob(base_url, repo, layer) for layer in layers]
    config = _dumps(_config(platform, [_diff_id(layer) for layer in layers], config_extra))
    config_digest = push_blob(base_url, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": _descriptor(config_type, config),
        "layers": [_descriptor(layer_type, layer) for layer in layers],
    }
    raw = _dumps(manifest)
    digest = push_manifest(base_url, repo, tag, raw, manifest_type)
    return PushedImage(
        repo=repo,
        ref=tag or digest,
        digest=digest,
        raw=raw,
        media_type=manifest_type,
        blobs=[config_digest, *layer_digests],
        platform=tuple(platform),
    )


def _make_attestation(base_url: str, repo: str, subject: PushedImage) -> PushedImage:
    """An attestation manifest as buildkit / Docker Hub make it, pushed by digest."""
    statement = _dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": f"pkg:docker/{repo}", "digest": {"sha256": subject.digest.split(":", 1)[1]}}],
            "predicate": {"builder": {"id": "ecr-mirror-tests"}},
        }
    )
    statement_digest = push_blob(base_url, repo, statement)
    config = _dumps(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
        }
    )
    config_digest = push_blob(base_url, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config),
        "layers": [
            _descriptor(
                IN_TOTO_LAYER,
                statement,
                annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
            )
        ],
    }
    raw = _dumps(manifest)
    digest = push_manifest(base_url, repo, None, raw, OCI_MANIFEST)
    return PushedImage(
        repo=repo,
        ref=digest,
        digest=digest,
        raw=raw,
        media_type=OCI_MANIFEST,
        blobs=[config_digest, statement_digest],
        platform=("unknown", "unknown", None),
        attestation_for=subject.digest,
    )


def make_index(
    base_url: str,
    repo: str,
    tag: str | None,
    *,
    platforms: list[Platform],
    oci: bool = True,
    attestations: bool = True,
    layers_per_image: int = 2,
    layer_size: int = 4096,
    shared_base: bytes | None = None,
) -> PushedImage:
    """Push a multi-platform image: one image per platform, then the index.

    Each platform image gets ``layers_per_image`` layers of ``layer_size``
    bytes, seeded by ``(repo, tag, platform, i)``, after ``shared_base`` when
    given (the same first layer in every platform). ``oci=True`` gives an OCI
    index of OCI manifests, each followed (when ``attestations``) by an
    attestation manifest exactly as Docker Hub has them; ``oci=False`` gives a
    Docker manifest list of Docker v2 manifests and no attestations. Children
    are pushed by digest, the index under ``tag`` (by digest when ``None``).
    """
    children: list[PushedImage] = []
    descriptors: list[dict] = []
    for platform in platforms:
        seed_base = f"{repo}:{tag}:{'/'.join(p for p in platform if p)}"
        layers = [layer_bytes(f"{seed_base}:{i}", layer_size) for i in range(layers_per_image)]
        if shared_base is not None:
            layers.insert(0, shared_base)
        image = make_image(base_url, repo, None, layers=layers, oci=oci, platform=platform)
        children.append(image)
        descriptors.append(
            _descriptor(image.media_type, image.digest, image.size, platform=_platform_dict(platform))
        )
        if oci and attestations:
            att = _make_attestation(base_url, repo, image)
            children.append(att)
            descriptors.append(
                _descriptor(
                    OCI_MANIFEST,
                    att.digest,
                    att.size,
                    annotations={ATTESTATION_DIGEST_KEY: image.digest, ATTESTATION_TYPE_KEY: ATTESTATION_TYPE},
                    platform={"architecture": "unknown", "os": "unknown"},
                )
            )
    index_type = OCI_INDEX if oci else DOCKER_MANIFEST_LIST
    raw = _dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": descriptors})
    digest = push_manifest(base_url, repo, tag, raw, index_type)
    return PushedImage(
        repo=repo, ref=tag or digest, digest=digest, raw=raw, media_type=index_type, children=children
    )


FOREIGN_LAYER_URL = "https://example.invalid/layer.tar.gz"


def make_foreign_layer_image(base_url: str, repo: str, tag: str | None) -> PushedImage:
    """A Docker v2 image with one normal layer and one foreign layer.

    The foreign layer (``urls: [FOREIGN_LAYER_URL]``, made-up digest and size)
    is not pushed: distribution accepts a foreign layer without checking its
    blob when its URLs match ``validation.manifests.urls.allow`` (which
    :class:`~ecr_mirror_testing.registry.LocalRegistry` sets to ``^https?://``;
    with no allow list distribution 2.8 rejects it with a 500).
    Its digest is in ``.foreign``, not in ``.blobs``.
    """
    layer = layer_bytes(f"{repo}:{tag}:foreign-image-layer", 4096)
    layer_digest = push_blob(base_url, repo, layer)
    foreign_digest = sha256_digest(b"ecr-mirror made-up foreign layer")
    foreign_size = 12_345_678
    foreign_diff_id = sha256_digest(b"ecr-mirror made-up foreign layer, uncompressed")
    config = _dumps(_config(("windows", "amd64", None), [foreign_diff_id, _diff_id(layer)], None))
    config_digest = push_blob(base_url, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": _descriptor(DOCKER_CONFIG, config),
        "layers": [
            _descriptor(DOCKER_FOREIGN_LAYER, foreign_digest, foreign_size, urls=[FOREIGN_LAYER_URL]),
            _descriptor(DOCKER_LAYER, layer),
        ],
    }
    raw = _dumps(manifest)
    digest = push_manifest(base_url, repo, tag, raw, DOCKER_MANIFEST)
    return PushedImage(
        repo=repo,
        ref=tag or digest,
        digest=digest,
        raw=raw,
        media_type=DOCKER_MANIFEST,
        blobs=[config_digest, layer_digest],
        platform=("windows", "amd64", None),
        foreign=[foreign_digest],
    )
