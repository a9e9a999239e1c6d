"""ECR blob mounting: a blob another mirrored repository holds is mounted, not uploaded.

ECR (since 2026-01) mounts a blob of one repository into another of the same
registry when the account setting `BLOB_MOUNTING` is ENABLED, both repositories
have the same encryption, neither is a pull-through-cache one, and a manifest
in the source repository references the blob. Only its registry endpoint does
it: `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<source>` with the Basic
token of `GetAuthorizationToken` (IAM: ecr:InitiateLayerUpload on the target,
ecr:GetDownloadUrlForLayer on the source). `201`: the blob is there. `202`: ECR
opened an upload session instead, which is cancelled (DELETE) before the
layer-upload API uploads the blob as always.

A mount only saves work. Anything else (403, 404, 5xx, a redirect, a timeout, a
`201` naming another digest) is logged once and the blob is uploaded; the tag
never moves on a mount's word alone (PutImage checks the layers). The token
goes only to the endpoint it is for (no redirect is followed, TLS verified,
no .netrc or proxy settings read) and is never logged.

Off: the `blob_mounting` setting (template parameter BlobMounting), the account
setting not ENABLED (asked once per process and region; no answer counts as
off, a temporary failure for SETTING_RETRY_SECONDS), a target in another
account, a repository outside the mirror's prefix (the mirror's own
repositories are pushed to, never pull-through-cache ones).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from botocore.exceptions import BotoCoreError, ClientError

from .. import aws
from ..landed import BlobHomes
from .target import TEMPORARY_CODES, EcrRepository

log = logging.getLogger(__name__)

SETTING = "BLOB_MOUNTING"
#: A token is asked for again this long before it expires (ECR's last 12 hours).
TOKEN_MARGIN_SECONDS = 300
#: (connect, read) seconds for the registry endpoint: a mount is one small request.
TIMEOUT = (5, 30)
#: An account setting unreadable for a while (throttled, 5xx, timeout) is asked again after this.
SETTING_RETRY_SECONDS = 300


@dataclass(frozen=True)
class _Token:
    authorization: str
    endpoint: str
    expires: float


class BlobMounts:
    """Mounting for one process: the account setting and the tokens are cached here."""

    def __init__(self, homes: BlobHomes, *, prefix: str | None, endpoint: str | None = None,
                 clock: Any = time.time) -> None:
        self.homes, self.prefix, self.endpoint, self.clock = homes, prefix, endpoint, clock
        self._lock = threading.Lock()
        self._enabled: dict[str, tuple[bool, float]] = {}  # region -> (on, until when)
        self._tokens: dict[str, _Token] = {}
        self._logged: set[str] = set()
        self._session = requests.Session()
        self._session.trust_env = False  # no .netrc Authorization, no proxy from the environment

    def close(self) -> None:
        self._session.close()

    # -- which blobs could be mounted ---------------------------------------------

    def homes_for(self, target: EcrRepository, digests: Iterable[str]) -> dict[str, str]:
        """Digest → another mirrored repository that holds it, for the blobs worth a mount."""
        digests = list(digests)
        if not digests or target.registry_id or not self._ours(target.repository):
            return {}
        if not self.enabled(target):
            return {}
        found = self.homes.where(_region(target), digests)
        return {d: r for d, r in found.items() if r != target.repository and self._ours(r)}

    def record(self, target: EcrRepository, digests: Iterable[str]) -> None:
        """The image is complete in `target`: its new blobs can be mounted from there
        (nothing written while the account setting is off: today's calls exactly)."""
        digests = list(digests)
        if digests and not target.registry_id and self._ours(target.repository) and self.enabled(target):
            self.homes.record(_region(target), target.repository, digests)

    def claim(self, target: EcrRepository, digests: list[str], seconds: float) -> bool:
        """Mark blobs without a home as being uploaded into `target` (landed.py);
        False: another repository's image is uploading one of them."""
        if not digests or target.registry_id or not self._ours(target.repository) or not self.enabled(target):
            return True
        return self.homes.claim(_region(target), target.repository, digests, seconds)

    def unclaim(self, target: EcrRepository, digests: list[str]) -> None:
        if digests:
            self.homes.unclaim(_region(target), digests)

    def waiting(self, target: EcrRepository, digest: str, seconds: float) -> None:
        self.homes.waiting(_region(target), digest, seconds)

    def done_waiting(self, target: EcrRepository) -> None:
        self.homes.done_waiting(_region(target))

    def look(self, target: EcrRepository, digest: str) -> tuple[str | None, dict | None]:
        """(another mirrored repository `digest` landed in, the unexpired marker of the
        image uploading it) in one read (landed.py)."""
        home, marker = self.homes.look(_region(target), digest)
        return (home if home != target.repository and home and self._ours(home) else None), marker

    def gives_way(self, target: EcrRepository, marker: dict, marked: list[str]) -> bool:
        """True when the image that holds `marker` waits for a blob of `marked` (this
        image's markers: a deadlock of two) and `target` is the later repository name."""
        holder, owner = (marker.get(k, {}).get("S") for k in ("repository", "owner"))
        if not holder or not owner or target.repository <= holder or not marked:
            return False  # the earlier name waits: no read
        return bool(self.homes.waits_of(_region(target), owner) & set(marked))

    def _ours(self, repository: str) -> bool:
        return not self.prefix or repository.startswith(self.prefix + "/")

    def enabled(self, target: EcrRepository) -> bool:
        """The account setting BLOB_MOUNTING, asked once per region (no answer: off;
        a temporary failure, throttling or a 5xx or a timeout, is asked again
        SETTING_RETRY_SECONDS later, not left off for a warm process's life)."""
        region = _region(target)
        with self._lock:
            known = self._enabled.get(region)
            if known is not None and known[1] > self.clock():
                return known[0]
        target.stats.count("ecr:GetAccountSetting")
        until = float("inf")
        try:
            value = target.client.get_account_setting(name=SETTING).get("value")
        except (ClientError, BotoCoreError) as exc:
            temporary = _temporary(exc)
            if temporary:
                until = self.clock() + SETTING_RETRY_SECONDS
            log.info("blob mounting off: the account setting is unreadable",
                     extra={"region": region, "error": str(exc), "temporary": temporary})
            value = None
        on = bool(value == "ENABLED")
        with self._lock:
            self._enabled[region] = (on, until)
        return on

    # -- the mount ----------------------------------------------------------------

    def mount(self, target: EcrRepository, digest: str, home: str) -> bool:
        """True when ECR mounted `digest` from `home` into `target` (nothing to upload)."""
        token = self._token(target)
        if token is None:
            return False
        base = f"{token.endpoint}/v2/{target.repository}/blobs/uploads/"
        headers = {"Authorization": token.authorization}
        target.stats.count("ecrMount")
        try:
            with self._session.post(base, params={"mount": digest, "from": home}, headers=headers,
                                    allow_redirects=False, timeout=TIMEOUT, stream=True) as answer:
                status, answered = answer.status_code, answer.headers
        except requests.RequestException as exc:
            self._once(f"error:{type(exc).__name__}", target, digest, f"no answer ({type(exc).__name__})")
            return False
        if status == 201:
            if _mounted(answered, target.repository, digest):
                return True
            self._once("odd-201", target, digest, "201 naming another blob")
        elif status == 202:
            self._cancel(token, answered.get("Location"), headers, target)
        else:
            self._once(f"status:{status}", target, digest, f"HTTP {status}")
        return False

    def _cancel(self, token: _Token, location: str | None, headers: dict[str, str],
                target: EcrRepository) -> None:
        """Close the upload session a refused mount opened (never on another host)."""
        if not location:
            return
        url = urljoin(token.endpoint + "/", location)
        here, there = urlsplit(token.endpoint), urlsplit(url)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            self._once("foreign-location", target, "", "upload Location on another host: not cancelled")
            return
        target.stats.count("ecrMountCancel")
        try:
            with self._session.delete(url, headers=headers, allow_redirects=False, timeout=TIMEOUT):
                pass
        except requests.RequestException:  # ECR expires an abandoned session itself
            pass

    def _token(self, target: EcrRepository) -> _Token | None:
        region = _region(target)
        with self._lock:
            token = self._tokens.get(region)
        if token is not None and token.expires - TOKEN_MARGIN_SECONDS > self.clock():
            return token
        target.stats.count("ecr:GetAuthorizationToken")
        try:
            data = target.client.get_authorization_token()["authorizationData"][0]
            expires = data["expiresAt"].timestamp()
            base64.b64decode(data["authorizationToken"], validate=True)
        except (ClientError, BotoCoreError, KeyError, IndexError, ValueError, AttributeError) as exc:
            self._once("token", target, "", f"no registry token ({type(exc).__name__})")
            return None
        endpoint = self.endpoint or str(data.get("proxyEndpoint", "")).rstrip("/")
        if not endpoint.startswith("https://") and endpoint != self.endpoint:
            self._once("endpoint", target, "", "the registry endpoint is not https")
            return None
        token = _Token("Basic " + data["authorizationToken"], endpoint, expires)
        with self._lock:
            self._tokens[region] = token
        return token

    def _once(self, reason: str, target: EcrRepository, digest: str, what: str) -> None:
        """The first time per reason a warning, then debug (a mount is only a saving)."""
        with self._lock:
            first = reason not in self._logged
            self._logged.add(reason)
        (log.warning if first else log.debug)(
            f"blob mount not done ({what}); uploading instead",
            extra={"repository": target.repository, "digest": digest})


def _mounted(headers: Any, repository: str, digest: str) -> bool:
    """A 201 is believed when it names the blob asked for (and, if it says where, that place)."""
    if headers.get("Docker-Content-Digest") != digest:
        return False
    location = headers.get("Location")
    return not location or urlsplit(location).path.endswith(f"/v2/{repository}/blobs/{digest}")


def _temporary(exc: Exception) -> bool:
    """A failure worth asking again later: no answer, throttling, a server error
    (AccessDenied, a validation error: an answer, mounting stays off)."""
    if isinstance(exc, BotoCoreError):
        return True
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)  # type: ignore[attr-defined]
    return status >= 500 or aws.error_code(exc) in TEMPORARY_CODES | aws.TEMPORARY_READ_CODES


def _region(target: EcrRepository) -> str:
    return str(target.client.meta.region_name)
