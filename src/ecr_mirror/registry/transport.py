"""The one place that sends HTTP to registries.

It owns the `requests.Session`, authenticates (Basic or Bearer challenge, with
a token cache per (registry, scope) and one refresh on a 401), follows
redirects itself so that `Authorization` never reaches another host, maps error
answers to typed errors, reads rate-limit headers, counts every request by kind,
and retries temporary failures with tenacity, honouring `Retry-After`.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import tenacity

from ..stats import RequestStats
from .budget import PullBudget
from .auth import Challenge, Credentials, TokenCache, parse_challenge, token_lifetime
from .errors import ConnectionFailed, RateLimited, RegistryError, Unauthorized, from_response
from .ratelimit import parse_rate_limit

log = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
USER_AGENT = "ecr-mirror/0.1 (+https://github.com/ecr-mirror)"


@dataclass(frozen=True)
class RetryPolicy:
    """How temporary failures are retried (tenacity does the work)."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 20.0
    #: A `Retry-After` longer than this is not slept through: the error is
    #: raised so the caller can defer the whole image instead.
    max_retry_after: float = 60.0

    def retrying(self) -> tenacity.Retrying:
        backoff = tenacity.wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None)
            return float(after) if after is not None else backoff(state)

        def retry_it(exc: BaseException) -> bool:
            if not getattr(exc, "temporary", False) or getattr(exc, "pull_limit", False):
                return False  # a spent pull budget is waited out by deferring, not here
            after = getattr(exc, "retry_after", None)
            return after is None or after <= self.max_retry_after

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(retry_it),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=wait,
            reraise=True,
            before_sleep=lambda s: log.info(
                "retrying after a temporary error",
                extra={"attempt": s.attempt_number, "error": str(s.outcome.exception())},
            ),
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


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
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.tokens = token_cache or TokenCache()
        self._challenge: Challenge | None = None
        # An insecure registry is probed: HTTPS without verification, else HTTP.
        self._scheme: str | None = scheme or (None if insecure else "https")
        self._lock = threading.Lock()

    # -- public -----------------------------------------------------------------

    @property
    def credentials(self) -> Credentials | None:
        return self.budget.current

    @property
    def _token_registry(self) -> str:
        # Tokens belong to a principal: another credential needs its own.
        return f"{self.registry}#{self.budget.principal}"

    @property
    def base_url(self) -> str:
        if self._scheme is None:
            with self._lock:
                if self._scheme is None:
                    self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.api_host}"

    def request(self, method: str, path: str, *, kind: str, scope: str | None,
                what: str, headers: dict[str, str] | None = None,
                params: Any = None, stream: bool = False) -> requests.Response:
        """Send one request (with retries); return a 2xx response or raise."""
        for attempt in self.retry.retrying():
            with attempt:
                return self.send(method, path, kind=kind, scope=scope, what=what,
                                 headers=headers, params=params, stream=stream)
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, method: str, path: str, *, kind: str, scope: str | None, what: str,
             headers: dict[str, str] | None = None, params: Any = None,
             stream: bool = False, extra_headers: dict[str, str] | None = None) -> requests.Response:
        """One attempt: authenticate, follow redirects, map errors. No retry."""
        url = self.base_url + path
        hdrs = dict(headers or {})
        if extra_headers:
            hdrs.update(extra_headers)
        refreshed = False
        while True:
            if kind == "manifest_get":
                self.budget.ensure(what)  # a counted pull: the budget must allow it
            auth = self._authorization(scope, refresh=False)
            response = self._follow(method, url, kind=kind, headers=hdrs, auth=auth,
                                    params=params, stream=stream, what=what)
            if response.status_code == 429 and kind == "manifest_get":
                error = from_response(response, what)
                response.close()
                if not error.pull_limit:
                    raise error
                self.budget.exhausted(error.retry_after)
                try:
                    if not self.budget.ensure(what):
                        raise error
                except RateLimited:
                    raise error from None  # the registry's own words and Retry-After
                continue  # the next credential takes over
            if response.status_code != 401 or refreshed:
                break
            # One refresh on a 401: learn the challenge, get a new token, resend.
            self._challenge = parse_challenge(response.headers.get("WWW-Authenticate")) or self._challenge
            response.close()
            if scope is not None:
                self.tokens.drop(self._token_registry, scope)
            if self._challenge is None or (self._challenge.scheme == "basic" and not self.credentials):
                break
            self._authorization(scope, refresh=True)
            refreshed = True
        if response.status_code >= 400:
            try:
                error = from_response(response, what)
            finally:
                response.close()
            raise error
        return response

    # -- internals --------------------------------------------------------------

    def _probe_scheme(self) -> str:
        """For a registry marked insecure: HTTPS without verification, else HTTP."""
        try:
            self.stats.count("ping")
            self.session.get(f"https://{self.api_host}/v2/", timeout=self.timeout, verify=False)
            return "https"
        except requests.exceptions.RequestException:
            return "http"

    def _authorization(self, scope: str | None, *, refresh: bool) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return _basic(self.credentials) if self.credentials else None
        if challenge.scheme != "bearer" or not challenge.realm:
            return None
        key, registry = scope or "", self._token_registry
        token = None if refresh else self.tokens.get(registry, key)
        if token is None:
            token = self.tokens.put(registry, key, *self._fetch_token(challenge, scope))
        return f"Bearer {token.value}"

    def _fetch_token(self, challenge: Challenge, scope: str | None) -> tuple[str, float]:
        params: dict[str, str] = {}
        if challenge.service:
            params["service"] = challenge.service
        if scope:
            params["scope"] = scope
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        self.stats.count("token")
        try:
            response = self.session.get(challenge.realm, params=params, auth=auth,
                                        timeout=self.timeout, verify=self._verify(challenge.realm))
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailed(f"token from {challenge.realm}: {type(exc).__name__}",
                                   temporary=True) from exc
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"token for {scope or self.registry} from {challenge.realm}: HTTP "
                f"{response.status_code}; the credentials for {self.registry} were refused",
                status=response.status_code)
        if response.status_code >= 400:
            raise from_response(response, f"token for {scope or self.registry}")
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
        except ValueError:
            value, body = None, {}
        if not value:
            raise RegistryError(f"token for {scope or self.registry}: the answer has no token")
        return value, token_lifetime(body)

    def _verify(self, url: str) -> bool | str:
        # TLS is verified everywhere except on the registry explicitly marked insecure.
        if self.insecure and urlsplit(url).netloc.lower() == self.api_host.lower():
            return False
        return self.verify

    def _follow(self, method: str, url: str, *, kind: str, headers: dict[str, str],
                auth: str | None, params: Any, stream: bool, what: str) -> requests.Response:
        origin = _origin(url)
        for hop in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            # Authorization goes to the registry's own origin and nowhere else.
            if auth and _origin(url) == origin:
                hdrs["Authorization"] = auth
            self.stats.count(kind if hop == 0 else "redirect")
            try:
                response = self.session.request(
                    method, url, headers=hdrs, params=params, stream=stream,
                    allow_redirects=False, timeout=self.timeout, verify=self._verify(url))
            except requests.exceptions.RequestException as exc:
                raise ConnectionFailed(f"{what}: {type(exc).__name__}: {exc}", temporary=True) from exc
            params = None  # the redirect target carries its own query
            if _origin(url) == origin:
                rate = parse_rate_limit(response.headers)
                if rate is not None:
                    self.stats.saw_rate_limit(rate)
                    self.budget.observe(rate)
            if response.status_code not in REDIRECTS:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise RegistryError(f"{what}: HTTP {response.status_code} without Location")
            url = urljoin(url, location)
            if response.status_code == 303:
                method = "GET"
        raise RegistryError(f"{what}: more than {MAX_REDIRECTS} redirects")


def _basic(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
