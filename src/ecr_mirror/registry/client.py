"""The OCI distribution client: manifests, blobs and tags of one registry."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests

from ..digest import check, is_digest, verify
from ..errors import DigestMismatch
from ..manifest import ACCEPT, OCI_INDEX, Manifest
from ..stats import RequestStats
from .auth import Credentials
from .blob import BlobStream
from .bodies import MAX_MANIFEST_BYTES
from .errors import LimitExceeded, NotFound, RegistryError
from .retry import RetryPolicy
from .sender import DEFAULT_POOL_SIZE
from .transport import Transport

#: Tag listing: at most this many pages, for at most this long.
MAX_TAG_PAGES = 1000
MAX_TAG_SECONDS = 120.0
#: Referrers of one manifest: at most this many pages (each a bounded index).
MAX_REFERRER_PAGES = 100


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
                 session: requests.Session | None = None, verify: bool | str = True,
                 pool_size: int = DEFAULT_POOL_SIZE) -> None:
        # pool_size: connections kept open to the registry, for that many requests at once.
        self.transport = Transport(registry, api_host=api_host, credentials=credentials, reserve=reserve,
                                   insecure=insecure, scheme=scheme, stats=stats, retry=retry,
                                   timeout=timeout, session=session, verify=verify,
                                   pool_size=pool_size)

    def close(self) -> None:
        """Close the connections kept to the registry."""
        self.transport.close()

    @property
    def stats(self) -> RequestStats:
        return self.transport.stats

    @property
    def registry(self) -> str:
        return self.transport.registry

    def head_manifest(self, repository: str, ref: str) -> ManifestHead:
        """Resolve a tag or digest without a counted pull (HEAD is free on Docker Hub).

        For a digest reference the digest returned is that reference: a pin is
        verified when the manifest is fetched, with its own algorithm."""
        what = f"manifest {self.registry}/{repository}:{ref}"
        pinned = check(ref, what) if is_digest(ref) else None
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/manifests/{ref}", kind="manifest_head",
            scope=_scope(repository), what=what, headers={"Accept": ACCEPT})
        header = response.headers.get("Docker-Content-Digest")
        digest = check(header, f"{what}: Docker-Content-Digest") if header else None
        if pinned:
            if digest and digest.partition(":")[0] == pinned.partition(":")[0] and digest != pinned:
                raise DigestMismatch(f"{what}: the registry reports digest {digest}")
            digest = pinned
        if not digest:
            raise RegistryError(f"{what}: HEAD gave no Docker-Content-Digest; "
                                "this registry cannot be checked without a pull")
        length = response.headers.get("Content-Length")
        return ManifestHead(digest=digest,
                            media_type=response.headers.get("Content-Type", "").split(";")[0].strip(),
                            size=int(length) if length and length.isdigit() else None)

    def get_manifest(self, repository: str, ref: str, *, image: str = "") -> Manifest:
        """GET a manifest (the pull Docker Hub counts) with its exact bytes verified.

        At most 4 MiB (ECR's limit) is read; a digest reference is verified with
        the algorithm it names, and so is the registry's Docker-Content-Digest."""
        what = f"manifest {self.registry}/{repository}@{ref}" if is_digest(ref) else \
            f"manifest {self.registry}/{repository}:{ref}"
        if is_digest(ref):
            check(ref, what)
        response = self.transport.request(
            "GET", f"/v2/{repository}/manifests/{ref}", kind="manifest_get",
            scope=_scope(repository), what=what, headers={"Accept": ACCEPT},
            limit=MAX_MANIFEST_BYTES)
        raw = response.content
        header = response.headers.get("Docker-Content-Digest")
        if header:
            verify(raw, check(header, f"{what}: Docker-Content-Digest"), f"{what}: Docker-Content-Digest")
        if is_digest(ref):
            verify(raw, ref, f"{what}: asked for {ref}")
        return Manifest.from_bytes(raw, response.headers.get("Content-Type"), image=image or what)

    def open_blob(self, repository: str, digest: str, size: int | None) -> BlobStream:
        """A stream of the blob's bytes; nothing is sent until the first read."""
        return BlobStream(self.transport, repository, digest, size)

    def list_referrers(self, repository: str, digest: str, *,
                       artifact_type: str | None = None) -> list[dict] | None:
        """The descriptors of the manifests whose `subject` is `digest`, from the
        OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`, paginated by
        Link). None when the registry has no referrers API (it answers 404): then
        the fallback tag `sha256-<hex>` is where referrers are listed.

        With `artifact_type`, the registry is asked to filter; when it says it did
        not (no `OCI-Filters-Applied`), the filter is applied here. Not a counted
        pull: the request kind is `referrers`."""
        what = f"referrers of {self.registry}/{repository}@{digest}"
        check(digest, what)
        path = f"/v2/{repository}/referrers/{digest}"
        params: dict[str, str] | None = {"artifactType": artifact_type} if artifact_type else None
        found: list[dict] = []
        links: set[str] = set()
        for _ in range(MAX_REFERRER_PAGES):
            try:
                response = self.transport.request(
                    "GET", path, kind="referrers", scope=_scope(repository), what=what,
                    params=params, headers={"Accept": OCI_INDEX}, limit=MAX_MANIFEST_BYTES)
            except NotFound:
                if found or links:
                    raise
                return None
            index = Manifest.from_bytes(response.content, response.headers.get("Content-Type") or OCI_INDEX,
                                        image=what)
            if not index.is_index:
                raise RegistryError(f"{what}: the answer is not an image index")
            filtered = "artifactType" in response.headers.get("OCI-Filters-Applied", "")
            found += [d for d in index.children
                      if not artifact_type or filtered or d.get("artifactType") == artifact_type]
            link = response.links.get("next", {}).get("url")
            if not link:
                return found
            if link in links:
                raise LimitExceeded(f"{what}: a next link repeats; the listing would not end")
            links.add(link)
            path, params = _next_page(link)
        raise LimitExceeded(f"{what}: more than the {MAX_REFERRER_PAGES} pages limit of referrers")

    def list_tags(self, repository: str, *, page_size: int = 1000, max_pages: int = MAX_TAG_PAGES,
                  max_seconds: float = MAX_TAG_SECONDS) -> list[str]:
        """Every tag, following `Link: <...>; rel="next"` pagination (see `iter_tags`)."""
        return list(self.iter_tags(repository, page_size=page_size, max_pages=max_pages,
                                   max_seconds=max_seconds))

    def iter_tags(self, repository: str, *, page_size: int = 1000, max_pages: int = MAX_TAG_PAGES,
                  max_seconds: float = MAX_TAG_SECONDS) -> Iterator[str]:
        """Tags page by page; at most ``max_pages`` pages within ``max_seconds``, and a
        page that repeats a next link or adds no new tag ends it with `LimitExceeded`."""
        params: dict[str, str] | None = {"n": str(page_size)}
        path = f"/v2/{repository}/tags/list"
        what = f"tags of {self.registry}/{repository}"
        seen: set[str] = set()
        links: set[str] = set()
        started = time.monotonic()
        for page in range(1, max_pages + 1):
            response = self.transport.request("GET", path, kind="tag_list", scope=_scope(repository),
                                              what=what, params=params)
            new = [tag for tag in _tags(response, what) if tag not in seen]
            seen.update(new)
            yield from new
            link = response.links.get("next", {}).get("url")
            if not link:
                return
            if link in links or not new:
                raise LimitExceeded(f"{what}: page {page} repeats "
                                    + ("a next link already followed" if link in links else
                                       "tags already listed") + "; the listing would not end")
            links.add(link)
            elapsed = time.monotonic() - started
            if elapsed >= max_seconds:
                raise LimitExceeded(f"{what}: still listing after {page} pages and {elapsed:.0f} s; "
                                    f"the limit is {max_seconds:g} s")
            path, params = _next_page(link)
        raise LimitExceeded(f"{what}: more than the {max_pages} pages limit of tags")


def _tags(response: requests.Response, what: str) -> list[str]:
    try:
        tags = response.json().get("tags") or []
    except (ValueError, AttributeError) as exc:
        raise RegistryError(f"{what}: the answer is not a tag list") from exc
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryError(f"{what}: the answer's tags are not a list of names")
    return tags


def _next_page(link: str) -> tuple[str, dict[str, str] | None]:
    parts = urlsplit(link)
    # The Link target is relative to the registry (or absolute on the same host).
    return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
