"""Registry authentication: challenges, credentials and the token cache.

The flow is the one every v2 registry speaks: an unauthenticated request gets
`401` with `WWW-Authenticate`; for `Basic` we send the credentials, for
`Bearer` we fetch a token from the realm (with Basic credentials when we have
them, anonymously otherwise) and cache it per (registry, scope) until shortly
before it expires.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

# key="quoted value" or key=token, separated by commas.
_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

DEFAULT_TOKEN_LIFETIME = 60  # seconds, when the token answer has no expires_in


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse a `WWW-Authenticate` header (the first challenge only)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    params = {k: v.replace('\\"', '"') for k, v in params.items()}
    return Challenge(scheme=scheme.lower(), params=params)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass
class Token:
    value: str = field(repr=False)
    expires_at: float

    def fresh(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        # Refresh a little early so a token does not die between check and use.
        return now < self.expires_at


def token_lifetime(body: dict) -> float:
    try:
        lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
    except (TypeError, ValueError):
        lifetime = DEFAULT_TOKEN_LIFETIME
    # Keep a margin of a tenth of the lifetime (at most 30 s) for clock and transit.
    return max(1.0, lifetime - min(30.0, lifetime / 10))


class TokenCache:
    """Bearer tokens per (registry, scope), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], Token] = {}

    def get(self, registry: str, scope: str) -> Token | None:
        with self._lock:
            token = self._tokens.get((registry, scope))
            if token and token.fresh():
                return token
            self._tokens.pop((registry, scope), None)
            return None

    def put(self, registry: str, scope: str, value: str, lifetime: float) -> Token:
        token = Token(value, time.monotonic() + lifetime)
        with self._lock:
            self._tokens[(registry, scope)] = token
        return token

    def drop(self, registry: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((registry, scope), None)
