"""The auth layer: answers the registry's challenge, Basic or Bearer.

The challenge is learnt from the registry's own 401 and from nowhere else (a
redirect target's 401 neither gets credentials nor replaces it); a Bearer token
is fetched from the challenge's realm (checked by the redirect policy first) and
cached per (registry, principal, scope); on a 401 the token is dropped, a new one
fetched and the request sent once more. Credentials travel over HTTPS only,
unless the registry is marked insecure.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable

import requests

from .auth import Challenge, Credentials, TokenCache, parse_challenge, token_lifetime
from .bodies import MAX_TOKEN_BYTES, read_capped
from .budget import PullBudget
from .errors import RegistryError, Unauthorized
from .follow import Follower
from .redirects import RedirectPolicy
from .sender import Request, error_of, origin, without_query

log = logging.getLogger(__name__)


class Authorizer:
    """Sends through ``inner`` with the Authorization the registry asked for."""

    def __init__(self, inner: Follower, *, registry: str, budget: PullBudget, tokens: TokenCache,
                 insecure: bool, policy: Callable[[], RedirectPolicy]) -> None:
        self.inner = inner
        self.registry = registry
        #: Whose credentials are sent: the pull budget's current principal.
        self.budget = budget
        self.tokens = tokens
        self.insecure = insecure
        self._policy = policy
        self.challenge: Challenge | None = None
        self._warned_plain_http = False

    @property
    def credentials(self) -> Credentials | None:
        return self.budget.current

    def send(self, request: Request) -> requests.Response:
        refreshed = False
        while True:
            auth = self._authorization(request.scope, request.url, refresh=refreshed)
            response, at_registry = self.inner.follow(request.but(auth=auth))
            # Only the registry's own 401 is answered: a redirect target (a CDN on
            # another host) neither gets credentials nor replaces the challenge.
            if response.status_code != 401 or refreshed or not at_registry:
                return response
            # One refresh on a 401: learn the challenge, get a new token, resend.
            self.challenge = parse_challenge(response.headers.get("WWW-Authenticate")) or self.challenge
            response.close()
            if request.scope is not None:
                self.tokens.drop(self._token_registry, request.scope)
            if self.challenge is None or (self.challenge.scheme == "basic" and not self.credentials):
                return response  # (closed: nothing to answer it with)
            refreshed = True

    @property
    def _token_registry(self) -> str:
        # Tokens belong to a principal: another credential needs its own.
        return f"{self.registry}#{self.budget.principal}"

    def _may_send_credentials(self, url: str) -> bool:
        """Credentials travel over HTTPS only, unless the registry is marked insecure."""
        if self.insecure or origin(url)[0] == "https":
            return True
        if not self._warned_plain_http:
            self._warned_plain_http = True
            log.warning("credentials withheld from a plain-HTTP URL; mark the registry insecure "
                        "to send them", extra={"registry": self.registry, "url": without_query(url)})
        return False

    def _authorization(self, scope: str | None, url: str, *, refresh: bool) -> str | None:
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credentials = self.credentials
            usable = credentials and self._may_send_credentials(url)
            return _basic(credentials) if credentials and usable else None
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
        what = f"token for {scope or self.registry} of {self.registry} from {without_query(realm)}"
        self._policy().check(realm, what, named="named the token realm")
        response = self.inner.send(Request("GET", realm, kind="token", what=what, params=params,
                                           auth=_basic(credentials) if credentials else None))
        if response.status_code in (401, 403):
            response.close()
            raise Unauthorized(f"{what}: HTTP {response.status_code}; the credentials for "
                               f"{self.registry} were refused", status=response.status_code)
        if response.status_code >= 400:
            raise error_of(response, what)
        read_capped(response, MAX_TOKEN_BYTES, f"{what} (token answer)")
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            value, body = None, {}
        if not value or not isinstance(value, str):
            raise RegistryError(f"{what}: the answer has no token")
        if _UNSENDABLE(value):  # it would break the header, and be printed by the error saying so
            raise RegistryError(f"{what}: the token holds a line break, another control character or "
                                "a character beyond ASCII, which an Authorization header cannot carry; "
                                "the token service is broken or hostile (the token is not shown)")
        return value, token_lifetime(body)


#: A character a token cannot be sent with: a control character (a line break would start a
#: header line of its own) or one beyond ASCII (RFC 6750's tokens are printable ASCII).
_UNSENDABLE = re.compile(r"[^\x20-\x7e]").search


def _basic(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
