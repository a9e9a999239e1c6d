"""The OCI distribution client: manifests, blobs and tags of one registry."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests

from ..errors import DigestMismatch
from ..manifest import ACCEPT, Manifest, sha256_digest
from ..stats import RequestStats
from .auth import Credentials
from .blob import BlobStream
from .errors import RegistryError
from .transport import RetryPolicy, Transport

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int | None


def _scope(repository: str) -> str:
    return f"repository:{repository}:pull"


class RegistryClient:
    """Read-only access to one v2 registry (Docker Hub or any other)."""

    def __init__(self, registry: str, *, api_host: str | None = None,
                 credentials: Credentials | Sequence[Credentials] | None = None,
                 reserve: int = 0, insecure: bool = False,
                 scheme: str | None = None, stats: RequestStats | None = None, retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = (10.0, 60.0),
                 session: requests.Session | None = None, verify: bool | str = True) -> None:
        self.transport = Transport(registry, api_host=api_host, credentials=credentials, reserve=reserve,
                                   insecure=insecure, scheme=scheme, stats=stats, retry=retry,
                                   timeout=timeout, session=session, verify=verify)

    @property
    def stats(self) -> RequestStats:
        return self.transport.stats

    @property
    def registry(self) -> str:
        return self.transport.registry

    def head_manifest(self, repository: str, ref: str) -> ManifestHead:
        """Resolve a tag or digest without a counted pull (HEAD is free on Docker Hub)."""
        what = f"manifest {self.registry}/{repository}:{ref}"
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/manifests/{ref}", kind="manifest_head",
            scope=_scope(repository), what=what, headers={"Accept": ACCEPT})
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            if ref.startswith("sha256:"):
                digest = ref
            else:
                raise RegistryError(f"{what}: HEAD gave no Docker-Content-Digest; "
                                    "this registry cannot be checked without a pull")
        if ref.startswith("sha256:") and digest != ref:
            raise DigestMismatch(f"{what}: the registry reports digest {digest}")
        length = response.headers.get("Content-Length")
        return ManifestHead(digest=digest,
                            media_type=response.headers.get("Content-Type", "").split(";")[0].strip(),
                            size=int(length) if length and length.isdigit() else None)

    def get_manifest(self, repository: str, ref: str, *, image: str = "") -> Manifest:
        """GET a manifest (the pull Docker Hub counts) with its exact bytes verified."""
        what = f"manifest {self.registry}/{repository}@{ref}" if ref.startswith("sha") else \
            f"manifest {self.registry}/{repository}:{ref}"
        response = self.transport.request(
            "GET", f"/v2/{repository}/manifests/{ref}", kind="manifest_get",
            scope=_scope(repository), what=what, headers={"Accept": ACCEPT})
        raw = response.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{what}: {len(raw)} bytes, larger than ECR's 4 MiB manifest limit")
        actual = sha256_digest(raw)
        header = response.headers.get("Docker-Content-Digest")
        if header and header.startswith("sha256:") and header != actual:
            raise DigestMismatch(f"{what}: Docker-Content-Digest {header} but the bytes hash to {actual}")
        if ref.startswith("sha256:") and ref != actual:
            raise DigestMismatch(f"{what}: asked for {ref} but the bytes hash to {actual}")
        return Manifest.from_bytes(raw, response.headers.get("Content-Type"), image=image or what)

    def open_blob(self, repository: str, digest: str, size: int | None) -> BlobStream:
        """A stream of the blob's bytes; nothing is sent until the first read."""
        return BlobStream(self.transport, repository, digest, size)

    def list_tags(self, repository: str, *, page_size: int = 1000) -> list[str]:
        """Every tag, following `Link: <...>; rel="next"` pagination."""
        return list(self.iter_tags(repository, page_size=page_size))

    def iter_tags(self, repository: str, *, page_size: int = 1000) -> Iterator[str]:
        params: dict[str, str] | None = {"n": str(page_size)}
        path = f"/v2/{repository}/tags/list"
        seen: set[str] = set()
        while path:
            response = self.transport.request(
                "GET", path, kind="tag_list", scope=_scope(repository),
                what=f"tags of {self.registry}/{repository}", params=params)
            for tag in response.json().get("tags") or []:
                if tag not in seen:
                    seen.add(tag)
                    yield tag
            path, params = _next_page(response)


def _next_page(response: requests.Response) -> tuple[str, dict[str, str] | None]:
    link = response.links.get("next", {}).get("url")
    if not link:
        return "", None
    parts = urlsplit(link)
    # The Link target is relative to the registry (or absolute on the same host).
    return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
