"""A blob as a verified, resumable stream.

The sha256 is computed while the bytes flow, so a blob is never held whole. A
dropped connection is picked up where it stopped with `Range: bytes=N-`; a
server that ignores `Range` and answers 200 has its first N bytes skipped.
At the end the digest and the size must match, or `DigestMismatch` is raised.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import requests
import urllib3

from ..digest import hasher
from ..errors import DigestMismatch
from .errors import ConnectionFailed, RegistryError

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
_DROPPED = (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class BlobStream:
    """Read a blob part by part; `verify()` once everything has been read."""

    def __init__(self, transport: Transport, repository: str, digest: str, size: int | None,
                 *, max_resumes: int = 5) -> None:
        # Checked before it goes into a URL: "sha256:x/../../y" never makes a request.
        self._hash = hasher(digest, f"blob of {transport.registry}/{repository}")
        self.transport = transport
        self.repository = repository
        self.digest = digest
        self.size = size
        self.offset = 0
        self.resumes = 0
        self.max_resumes = max_resumes
        self._response: requests.Response | None = None
        self._eof = False

    @property
    def what(self) -> str:
        return f"blob {self.repository}@{self.digest}"

    def _open(self) -> requests.Response:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else None
        response = self.transport.request(
            "GET", f"/v2/{self.repository}/blobs/{self.digest}", kind="blob_get",
            scope=f"repository:{self.repository}:pull", what=self.what,
            headers=headers, stream=True)
        if self.offset and response.status_code == 206:
            m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != self.offset:
                response.close()
                raise RegistryError(f"{self.what}: resumed at byte {self.offset} but the registry "
                                    f"answered Content-Range {response.headers.get('Content-Range')!r}")
        elif self.offset:
            # No Range support: read again from the start and drop what we have.
            skip = self.offset
            while skip:
                data = response.raw.read(min(skip, READ_CHUNK), decode_content=False)
                if not data:
                    response.close()
                    raise ConnectionFailed(f"{self.what}: the stream ended while skipping to byte "
                                           f"{self.offset}", temporary=True)
                skip -= len(data)
        self._response = response
        return response

    def _read_chunk(self, n: int) -> bytes:
        """Up to `n` bytes, resuming after a dropped connection."""
        while True:
            response = self._response if self._response is not None else self._open()
            error: BaseException | None
            try:
                data = response.raw.read(n, decode_content=False)
            except _DROPPED as exc:
                data, error = b"", exc
            else:
                error = None
                if data or self.size is None or self.offset >= self.size:
                    return data
                if self._announced(response) == self.offset:
                    # Not a dropped connection: the registry sent the whole blob it has.
                    response.close()
                    raise self._size_mismatch(self.offset)
            response.close()
            self._response = None
            self.resumes += 1
            if self.resumes > self.max_resumes:
                raise ConnectionFailed(f"{self.what}: connection dropped {self.resumes} times "
                                       f"(last at byte {self.offset})", temporary=True) from error
            log.warning("blob stream dropped; resuming", extra={
                "digest": self.digest, "offset": self.offset, "error": type(error).__name__ if error else "EOF"})

    def readinto(self, buffer: bytearray) -> int:
        """Fill `buffer` (less of it only at the end of the blob); return the bytes read."""
        view = memoryview(buffer)
        n, filled = len(view), 0
        try:
            while filled < n and not self._eof:
                data = self._read_chunk(min(READ_CHUNK, n - filled))
                if not data:
                    self._eof = True
                    break
                view[filled:filled + len(data)] = data
                self._hash.update(data)
                filled += len(data)
                self.offset += len(data)
                if self.size is not None and self.offset > self.size:
                    raise self._size_mismatch(self._announced(self._response))
        finally:
            view.release()
        return filled

    def read(self, n: int) -> bytearray:
        """Read up to `n` bytes (fewer only at the end of the blob)."""
        out = bytearray(n)
        del out[self.readinto(out):]
        return out

    def _announced(self, response: requests.Response | None) -> int | None:
        """The blob's whole size as the registry's answer gives it, if it does."""
        if response is None:
            return None
        if response.status_code == 206:
            m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            return int(m.group(3)) if m and m.group(3).isdigit() else None
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None

    def _size_mismatch(self, actual: int | None) -> DigestMismatch:
        """The descriptor's size is not the blob's: the same error, whatever the
        direction, as when ECR already holds the blob (copy/blobs.py)."""
        has = f"has {actual} bytes" if actual is not None else "has more bytes"
        return DigestMismatch(f"{self.what}: the manifest declares {self.size} bytes, the blob {has}; "
                              "nothing was tagged")

    def verify(self) -> None:
        """Raise `DigestMismatch` unless every byte read matches the digest."""
        # If the caller stopped at `size`, confirm nothing follows.
        if not self._eof and self.read(1):
            raise self._size_mismatch(self._announced(self._response))
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if self.size is not None and self.offset != self.size:
            raise self._size_mismatch(self.offset)
        if actual != self.digest:
            raise DigestMismatch(f"{self.what}: the bytes hash to {actual}; the source registry "
                                 "served corrupt or tampered content, nothing was tagged")

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
