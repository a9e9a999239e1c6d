"""HTTP to one registry: the layers of the stack, put together.

Each layer has one concern and the same shape (``send(Request) -> Response``),
the way go-containerregistry stacks its round-trippers:

* `retry.RetryPolicy`: temporary failures retried (tenacity), `Retry-After`
  honoured, the copy's deadline respected;
* `limits.PullGate`: the pull budget spent, credentials switched on a
  pull-limit 429;
* `authorize.Authorizer`: the registry's challenge answered (Basic, or a Bearer
  token from the realm, cached), one refresh on a 401;
* `follow.Follower`: redirects followed under the redirect policy,
  `Authorization` only to the registry's own origin;
* `limits.RateReader`: rate-limit headers read off the registry's answers;
* `sender.Sender`: one exchange over the session (pool, TLS, peer guard, counts).

What is left here: the scheme of a registry marked insecure (probed), and the end
of one attempt: an error answer becomes a typed error, a body is read with a
ceiling (`bodies`).

What a registry's answers cannot make it do (issue 9):
* send credentials over plain HTTP (unless the registry is marked insecure), or
  to a realm that a redirect target named: only the registry's own 401 is
  answered, and only it sets the challenge;
* follow a redirect, or ask a token realm, on another scheme or an internal
  address (`redirects`);
* read an answer without end (`bodies`: every body is read with a ceiling);
* put a URL's query string in an error (`errors.redact`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import requests

from ..stats import RequestStats
from .auth import Credentials, TokenCache
from .authorize import Authorizer
from .bodies import MAX_JSON_BYTES, read_capped
from .budget import PullBudget
from .follow import Follower
from .leanhead import LeanHeads
from .limits import PullGate, RateReader
from .redirects import RedirectPolicy
from .retry import RetryPolicy
from .sender import DEFAULT_POOL_SIZE, Request, Sender, error_of, make_session, origin

__all__ = ["DEFAULT_POOL_SIZE", "RetryPolicy", "Transport"]


class Transport:
    """HTTP to one registry, authenticated, counted, retried."""

    def __init__(
        self,
        registry: str,
        *,
        api_host: str | None = None,
        credentials: Credentials | Sequence[Credentials] | None = None,
        reserve: int = 0,
        insecure: bool = False,
        scheme: str | None = None,
        stats: RequestStats | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        session: requests.Session | None = None,
        token_cache: TokenCache | None = None,
        verify: bool | str = True,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.registry = registry
        self.api_host = api_host or registry
        if isinstance(credentials, Credentials):
            credentials = [credentials]
        self.budget = PullBudget(credentials or (), reserve)
        self.insecure = insecure
        #: TLS verification everywhere but on an insecure registry: True, or a CA bundle's path.
        self.verify = verify
        self.stats = stats or RequestStats()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        #: Whether the session is this transport's own (closed by `close`), not a caller's.
        self._owns_session = session is None
        self.session = session or make_session(self._check_peer, pool_size)
        self.tokens = token_cache or TokenCache()
        # An insecure registry is probed: HTTPS without verification, else HTTP.
        self._scheme: str | None = scheme or (None if insecure else "https")
        self._lock = threading.Lock()
        self._redirects: RedirectPolicy | None = None
        # HEADs kept lean on a session of its own (a caller's session is used as it is)
        self._heads = LeanHeads(self._check_peer, timeout=timeout, size=pool_size) if self._owns_session else None
        self.sender = Sender(self.session, stats=self.stats, timeout=timeout, verify=self._verify,
                             heads=self._heads)
        reader = RateReader(self.sender, home=lambda: self.base_url, stats=self.stats,
                            budget=self.budget)
        self.auth = Authorizer(Follower(reader, lambda: self.redirects), registry=registry,
                               budget=self.budget, tokens=self.tokens, insecure=insecure,
                               policy=lambda: self.redirects)
        self.gate = PullGate(self.auth, self.budget)

    def close(self) -> None:
        """Close the connections it keeps (a session the caller gave is the caller's to close)."""
        if self._heads is not None:
            self._heads.close()
        if self._owns_session:
            self.session.close()

    @property
    def credentials(self) -> Credentials | None:
        return self.budget.current

    @property
    def redirects(self) -> RedirectPolicy:
        if self._redirects is None:
            self._redirects = RedirectPolicy(self.registry, self.base_url, insecure=self.insecure)
        return self._redirects

    @property
    def base_url(self) -> str:
        if self._scheme is None:
            with self._lock:
                if self._scheme is None:
                    self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.api_host}"

    def request(self, method: str, path: str, *, kind: str, scope: str | None,
                what: str, headers: dict[str, str] | None = None,
                params: Any = None, stream: bool = False,
                limit: int = MAX_JSON_BYTES) -> requests.Response:
        """Send one request (with retries); return a 2xx response or raise.

        Unless ``stream``, the body has been read (at most ``limit`` bytes)."""
        return self.retry.call(lambda: self.send(
            method, path, kind=kind, scope=scope, what=what, headers=headers, params=params,
            stream=stream, limit=limit))

    def send(self, method: str, path: str, *, kind: str, scope: str | None, what: str,
             headers: dict[str, str] | None = None, params: Any = None,
             stream: bool = False, extra_headers: dict[str, str] | None = None,
             limit: int = MAX_JSON_BYTES) -> requests.Response:
        """One attempt through the layers below the retries: an error answer
        raised as a typed error; unless ``stream``, the body read (at most ``limit`` bytes)."""
        response = self.gate.send(Request(method, self.base_url + path, kind=kind, what=what,
                                          headers={**(headers or {}), **(extra_headers or {})},
                                          params=params, scope=scope))
        if response.status_code >= 400:
            raise error_of(response, what)
        if not stream:
            read_capped(response, limit, what)
        return response

    def _probe_scheme(self) -> str:
        """For a registry marked insecure: HTTPS without verification, else HTTP."""
        try:
            self.stats.count("ping")
            self.session.get(f"https://{self.api_host}/v2/", timeout=self.timeout, verify=False,
                             allow_redirects=False).close()
            return "https"
        except requests.exceptions.RequestException:
            return "http"

    def _check_peer(self, host: str, address: str) -> None:
        if not self.insecure:  # (an insecure registry's policy needs a probe first)
            self.redirects.check_peer(host, address)

    def _verify(self, url: str) -> bool | str:
        # TLS is verified everywhere except on the registry explicitly marked insecure.
        if self.insecure and origin(url)[1] == self.api_host.lower():
            return False
        return self.verify
