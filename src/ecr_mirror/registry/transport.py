"""The one place that sends HTTP to registries.

It owns the `requests.Session`, authenticates (Basic or Bearer challenge, with
a token cache per (registry, scope) and one refresh on a 401), follows
redirects itself so that `Authorization` never reaches another host, maps error
answers to typed errors, reads rate-limit headers, counts every request by kind,
and retries temporary failures with tenacity, honouring `Retry-After`.

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

import base64
import logging
import ssl
import threading
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import tenacity

from ..deadline import bounded_wait
from ..deadline import sleep as deadline_sleep
from ..stats import RequestStats
from .budget import PullBudget
from .auth import Challenge, Credentials, TokenCache, parse_challenge, token_lifetime
from .bodies import MAX_ERROR_BYTES, MAX_JSON_BYTES, MAX_TOKEN_BYTES, read_capped
from .errors import (ConnectionFailed, RateLimited, RedirectRefused, RegistryError, Unauthorized,
                     from_response)
from .ratelimit import parse_rate_limit
from .redirects import GuardedAdapter, RedirectPolicy, causes, refusal_in

log = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
#: Connections kept per host: requests' own default, unless the caller runs more at once.
DEFAULT_POOL_SIZE = 10
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
            # A copy's deadline (if any) is consulted before each sleep: a wait
            # that would run past it raises `Deferred` instead.
            wait=bounded_wait(wait),
            sleep=deadline_sleep,
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
        if session is None:
            session = requests.Session()
            for prefix in ("http://", "https://"):
                session.mount(prefix, GuardedAdapter(self._check_peer, pool_connections=pool_size,
                                                     pool_maxsize=pool_size))
        self.session = session
        self.session.headers["User-Agent"] = USER_AGENT
        self.tokens = token_cache or TokenCache()
        self._challenge: Challenge | None = None
        # An insecure registry is probed: HTTPS without verification, else HTTP.
        self._scheme: str | None = scheme or (None if insecure else "https")
        self._lock = threading.Lock()
        self._warned_plain_http = False
        self._redirects: RedirectPolicy | None = None

    # -- public -----------------------------------------------------------------

    @property
    def credentials(self) -> Credentials | None:
        return self.budget.current

    @property
    def _token_registry(self) -> str:
        # Tokens belong to a principal: another credential needs its own.
        return f"{self.registry}#{self.budget.principal}"

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
        for attempt in self.retry.retrying():
            with attempt:
                return self.send(method, path, kind=kind, scope=scope, what=what,
                                 headers=headers, params=params, stream=stream, limit=limit)
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, method: str, path: str, *, kind: str, scope: str | None, what: str,
             headers: dict[str, str] | None = None, params: Any = None,
             stream: bool = False, extra_headers: dict[str, str] | None = None,
             limit: int = MAX_JSON_BYTES) -> requests.Response:
        """One attempt: authenticate, follow redirects, map errors. No retry.

        Unless ``stream``, the body is read here, at most ``limit`` bytes."""
        url = self.base_url + path
        hdrs = dict(headers or {})
        if extra_headers:
            hdrs.update(extra_headers)
        refreshed = False
        while True:
            if kind == "manifest_get":
                self.budget.ensure(what)  # a counted pull: the budget must allow it
            auth = self._authorization(scope, refresh=False)
            response, at_registry = self._follow(method, url, kind=kind, headers=hdrs, auth=auth,
                                                 params=params, what=what)
            if response.status_code == 429 and kind == "manifest_get":
                error = self._error(response, what)
                if not error.pull_limit:
                    raise error
                self.budget.exhausted(error.retry_after)
                try:
                    if not self.budget.ensure(what):
                        raise error
                except RateLimited:
                    raise error from None  # the registry's own words and Retry-After
                continue  # the next credential takes over
            # Only the registry's own 401 is answered: a redirect target (a CDN on
            # another host) neither gets credentials nor replaces the challenge.
            if response.status_code != 401 or refreshed or not at_registry:
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
            raise self._error(response, what)
        if not stream:
            read_capped(response, limit, what)
        return response

    # -- internals --------------------------------------------------------------

    def _error(self, response: requests.Response, what: str) -> RegistryError:
        """The typed error of an error answer, its body read with a ceiling."""
        read_capped(response, MAX_ERROR_BYTES, f"{what}: HTTP {response.status_code} error body")
        return from_response(response, what)

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

    def _may_send_credentials(self, url: str) -> bool:
        """Credentials travel over HTTPS only, unless the registry is marked insecure."""
        if self.insecure or urlsplit(url).scheme == "https":
            return True
        if not self._warned_plain_http:
            self._warned_plain_http = True
            log.warning("credentials withheld from a plain-HTTP URL; mark the registry insecure "
                        "to send them", extra={"registry": self.registry, "url": _without_query(url)})
        return False

    def _authorization(self, scope: str | None, *, refresh: bool) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            usable = self.credentials and self._may_send_credentials(self.base_url)
            return _basic(self.credentials) if usable else None
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
        realm = challenge.realm or ""
        credentials = self.credentials if self._may_send_credentials(realm) else None
        what = f"token for {scope or self.registry} of {self.registry} from {_without_query(realm)}"
        self.redirects.check(realm, what, named="named the token realm")
        response, _ = self._follow("GET", realm, kind="token", headers={},
                                   auth=_basic(credentials) if credentials else None,
                                   params=params, what=what)
        if response.status_code in (401, 403):
            response.close()
            raise Unauthorized(f"{what}: HTTP {response.status_code}; the credentials for "
                               f"{self.registry} were refused", status=response.status_code)
        if response.status_code >= 400:
            raise self._error(response, what)
        read_capped(response, MAX_TOKEN_BYTES, f"{what} (token answer)")
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            value, body = None, {}
        if not value or not isinstance(value, str):
            raise RegistryError(f"{what}: the answer has no token")
        return value, token_lifetime(body)

    def _verify(self, url: str) -> bool | str:
        # TLS is verified everywhere except on the registry explicitly marked insecure.
        if self.insecure and urlsplit(url).netloc.lower() == self.api_host.lower():
            return False
        return self.verify

    def _follow(self, method: str, url: str, *, kind: str, headers: dict[str, str],
                auth: str | None, params: Any, what: str) -> tuple[requests.Response, bool]:
        """Send, following redirects under the redirect policy; return the final
        answer (opened as a stream) and whether it came from the first URL's origin."""
        origin = _origin(url)
        for hop in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            # Authorization goes to the first URL's origin and nowhere else.
            if auth and _origin(url) == origin:
                hdrs["Authorization"] = auth
            self.stats.count(kind if hop == 0 else "redirect")
            try:
                response = self.session.request(
                    method, url, headers=hdrs, params=params, stream=True,
                    allow_redirects=False, timeout=self.timeout, verify=self._verify(url))
            except requests.exceptions.RequestException as exc:
                refused = refusal_in(exc)
                if refused is not None:
                    raise RedirectRefused(f"{what}: {refused}") from None
                raise ConnectionFailed(f"{what}: {type(exc).__name__} from {_without_query(url)}: {exc}",
                                       temporary=not _certificate_refused(exc)) from exc
            params = None  # the redirect target carries its own query
            if _origin(url) == origin and kind != "token":
                rate = parse_rate_limit(response.headers)
                if rate is not None:
                    self.stats.saw_rate_limit(rate)
                    self.budget.observe(rate)
            if response.status_code not in REDIRECTS:
                return response, _origin(url) == origin
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise RegistryError(f"{what}: HTTP {response.status_code} without Location")
            url = urljoin(url, location)
            self.redirects.check(url, what)
            if response.status_code == 303:
                method = "GET"
        raise RegistryError(f"{what}: more than {MAX_REDIRECTS} redirects")


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _certificate_refused(exc: BaseException) -> bool:
    """Whether a TLS certificate was refused somewhere in ``exc``'s causes (not worth a retry)."""
    return any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(exc))


def _basic(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
