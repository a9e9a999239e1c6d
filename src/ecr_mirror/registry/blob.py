"""A blob as a verified, resumable stream.

The sha256 is computed while the bytes flow, so a blob is never held whole. A
dropped connection is picked up where it stopped with `Range: bytes=N-`; a
server that ignores `Range` and answers 200 has its first N bytes skipped.
At the end the digest and the size must match, or `DigestMismatch` is raised.
"""

from __future__ import annotations

import http.client
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
#: A connection cut mid-body. http.client raises IncompleteRead (an HTTPException)
#: when a chunked body stops short.
_DROPPED = (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError,
            http.client.HTTPException)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _raw_readinto(response: requests.Response, target: memoryview) -> int:
    """Receive up to len(target) body bytes straight into `target`, undecoded.

    Through the http.client response under urllib3's, which reads from the
    socket into the buffer it is given; urllib3's own `readinto` reads into a
    fresh bytes object and copies that."""
    readinto = getattr(getattr(response.raw, "_fp", None), "readinto", None)
    if readinto is None:  # not a socket-backed answer: the copy is harmless
        data = response.raw.read(len(target), decode_content=False)
        target[:len(data)] = data
        return len(data)
    n: int = readinto(target)
    return n


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
        self._response_read = 0  # bytes of the current answer's body read so far
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
        self._response_read = 0
        if self.offset and response.status_code != 206:
            # No Range support: read again from the start and drop what we have.
            self._response_read = skip = self.offset
            while skip:
                data = response.raw.read(min(skip, READ_CHUNK), decode_content=False)
                if not data:
                    response.close()
                    raise ConnectionFailed(f"{self.what}: the stream ended while skipping to byte "
                                           f"{self.offset}", temporary=True)
                skip -= len(data)
        self._response = response
        return response

    def _read_into(self, target: memoryview) -> int:
        """Fill some of `target` (the bytes go straight from the socket into it);
        0 only at the end of the blob. Resumes after a dropped connection."""
        while True:
            response = self._response if self._response is not None else self._open()
            error: BaseException | None
            try:
                n = _raw_readinto(response, target)
            except _DROPPED as exc:
                n, error = 0, exc
            else:
                error = None
                if n:
                    self._response_read += n
                    return n
                complete = self._body_complete(response)
                if complete is not False and (self.size is None or self.offset >= self.size):
                    response.raw.release_conn()  # the connection serves the next request
                    return 0
                if complete:
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

    def _body_complete(self, response: requests.Response) -> bool | None:
        """At the end of this answer's body: did it deliver all it announced? A
        body cut short is a dropped connection, with or without a declared size
        (urllib3, which is not reading, cannot tell: the bytes are counted here).
        None when the body's end is the connection's (no Content-Length, not
        chunked): a cut cannot be told from the end."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit():
            return self._response_read >= int(length)
        if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
            return True  # a chunked body cut short raises IncompleteRead instead
        return None

    def readinto(self, buffer: bytearray) -> int:
        """Fill `buffer` (less of it only at the end of the blob); return the bytes read.

        The bytes are received straight into `buffer` and hashed there a chunk
        at a time, while they are still in the CPU's cache: no copy in between."""
        view = memoryview(buffer)
        n, filled = len(view), 0
        try:
            while filled < n and not self._eof:
                got = self._read_into(view[filled:filled + min(READ_CHUNK, n - filled)])
                if not got:
                    self._eof = True
                    break
                self._hash.update(view[filled:filled + got])
                filled += got
                self.offset += got
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
