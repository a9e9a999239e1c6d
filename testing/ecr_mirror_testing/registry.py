"""A throw-away CNCF distribution registry (``docker-registry``) on 127.0.0.1.

Usage::

    with LocalRegistry() as reg:
        requests.get(reg.url + "/v2/")          # -> 200
        reg.blob_data_path("sha256:ab...")      # on-disk file of a stored blob

The registry runs ``docker-registry serve <config.yml>`` (Debian package
``docker-registry``, distribution 2.8) with filesystem storage, deletes enabled,
no auth and plain HTTP. Foreign layers with http(s) ``urls`` are accepted: with
no ``validation.manifests.urls.allow`` list, distribution 2.8 rejects every
manifest that has URLs ("invalid URL on layer", answered as 500). Its log (level
``warn``) goes to ``registry.log`` in the temporary directory, never to the console. Everything it stored is removed on
``stop()`` unless a ``root`` directory was given.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable

import requests

BINARY_NAME = "docker-registry"
MISSING_BINARY = (
    "docker-registry not found: run `make test` (it installs the Debian package "
    "docker-registry) or apt-get install docker-registry"
)

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
validation:
  manifests:
    urls:
      allow:
        - ^https?://
"""


def find_binary() -> str:
    """Path of the ``docker-registry`` binary, or raise with install advice."""
    path = shutil.which(BINARY_NAME) or (
        "/usr/bin/docker-registry" if os.access("/usr/bin/docker-registry", os.X_OK) else None
    )
    if not path:
        raise RuntimeError(MISSING_BINARY)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(proc: subprocess.Popen | None, tmpdir: str | None) -> None:
    """Stop ``proc`` (SIGTERM, then SIGKILL) and remove ``tmpdir``; idempotent."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)


class LocalRegistry:
    """A ``docker-registry`` process serving plain HTTP on 127.0.0.1:<free port>.

    ``root``: storage root directory to use (kept on ``stop()``); by default a
    fresh directory inside the temporary directory (removed on ``stop()``).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        binary: str | None = None,
        startup_timeout: float = 20.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary or find_binary()
        #: Extra environment for the registry process (e.g. Go's GOGC, make bench-scale).
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="ecr-mirror-registry-"))
        self.root = pathlib.Path(root).resolve() if root else self.tmpdir / "storage"
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path = self.tmpdir / "config.yml"
        self.log_path = self.tmpdir / "registry.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        # Safety net: kill the process and clean up even if stop() is never called.
        self._finalizer = weakref.finalize(self, _kill, None, str(self.tmpdir))

    # -- addresses --------------------------------------------------------
    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``"http://127.0.0.1:PORT"`` (no trailing slash)."""
        return f"http://{self.host}"

    # -- lifecycle --------------------------------------------------------
    def start(self) -> LocalRegistry:
        """Start the registry and wait until ``GET /v2/`` answers 200."""
        if self.proc is not None:
            return self
        last_error = ""
        for _attempt in range(3):  # a free port can be taken before we bind it
            self.port = free_port()
            self.config_path.write_text(
                _CONFIG.format(root=self.root, port=self.port, secret=secrets.token_hex(16))
            )
            # REGISTRY_* variables would override the config file: drop them.
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")} | self.env
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _kill, self.proc, str(self.tmpdir))
            try:
                self._wait_ready()
                return self
            except RuntimeError as exc:
                last_error = str(exc)
                _kill(self.proc, None)
                self.proc = None
                if "address already in use" not in self.log_tail().lower():
                    break
        self.stop()
        raise RuntimeError(last_error)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with requests.Session() as session:
            session.trust_env = False  # never go through an HTTP proxy
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"docker-registry exited with status {self.proc.returncode} "
                        f"during start-up; log tail:\n{self.log_tail()}"
                    )
                try:
                    if session.get(self.url + "/v2/", timeout=1).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not answer GET {self.url}/v2/ within "
                        f"{self.startup_timeout:.0f} s; log tail:\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process and remove the temporary directory (idempotent).

        A ``root`` given to the constructor is kept; the default root lives in
        the temporary directory and goes with it.
        """
        self._finalizer()  # runs _kill(proc, tmpdir) at most once
        self.proc = None

    def detach(self) -> int:
        """Leave the registry running after this object (and process) is gone; its pid.

        The caller then owns the process and ``self.tmpdir`` (config, log, storage).
        """
        self._finalizer.detach()
        return self.proc.pid

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.proc is not None and self.proc.poll() is None else "stopped"
        return f"<LocalRegistry {self.url if self.port else '-'} {state} root={self.root}>"

    # -- inspection helpers ------------------------------------------------
    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the registry log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def blob_data_path(self, digest: str) -> pathlib.Path:
        """On-disk file of a blob in the filesystem driver layout.

        ``<root>/docker/registry/v2/blobs/sha256/<first two hex>/<hex>/data``.
        The file exists only once the blob has been pushed.
        """
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or len(hexpart) != 64:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def write_blob(self, repo: str, chunks: Iterable[bytes]) -> str:
        """Store a blob straight into the storage layout of ``repo``; return its digest.

        One pass over ``chunks``, hashing while writing: for GiB-sized
        benchmark blobs this is several times faster than an HTTP upload (the
        registry spends ~4.5 CPU-seconds per GiB on a push). The registry then
        serves it like a pushed blob (GET, HEAD, Range).
        """
        blobs = self.root / "docker/registry/v2/blobs/sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
            digest = "sha256:" + h.hexdigest()
            data = self.blob_data_path(digest)
            data.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, data)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        link = self.root / "docker/registry/v2/repositories" / repo / "_layers/sha256" / h.hexdigest() / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(digest)
        return digest

    def corrupt_blob(self, digest: str) -> None:
        """Flip the first byte of a stored blob in place (same size, wrong digest)."""
        path = self.blob_data_path(digest)
        with open(path, "r+b") as f:
            first = f.read(1)
            if not first:
                raise ValueError(f"cannot corrupt an empty blob: {digest}")
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
