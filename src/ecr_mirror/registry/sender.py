"""The bottom layer of the registry HTTP stack: one HTTP exchange.

The layers above (`transport` stacks them, the way go-containerregistry's
round-trippers are stacked) each take a `Request` and give a response:

    retry.RetryPolicy -> limits.PullGate -> authorize.Authorizer
        -> follow.Follower -> limits.RateReader -> Sender

`Sender` owns the `requests.Session` (its pool sized by the caller, its new
connections checked by the redirect policy's peer guard), verifies TLS except on
the registry marked insecure, counts every request by kind, and turns a failed
connection into a typed error. It never follows a redirect and never reads a body:
the answer comes back as a stream.
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import select_proxy
from urllib3.exceptions import NameResolutionError

from ..stats import RequestStats
from .bodies import MAX_ERROR_BYTES, read_capped
from .errors import ConnectionFailed, RedirectRefused, RegistryError, from_response
from .leanhead import LeanHeads, split_plain
from .redirects import GuardedAdapter, causes, refusal_in

#: requests' own sending, as imported (see `Sender._send_direct`).
_ADAPTER_SEND = HTTPAdapter.send
#: Connections kept per host: requests' own default, unless the caller runs more at once.
DEFAULT_POOL_SIZE = 10
USER_AGENT = "ecr-mirror/0.1 (+https://github.com/ecr-mirror)"


@dataclass
class Request:
    """One request as the layers pass it down; `auth` is an Authorization value
    that only the registry's own origin receives (see `follow`)."""

    method: str
    url: str
    kind: str  # what it is counted as: manifest_get, blob_get, token, ...
    what: str  # what it is for, in errors and logs (never a query string)
    headers: dict[str, str] = field(default_factory=dict)
    params: Any = None
    scope: str | None = None
    auth: str | None = None
    hop: int = 0  # 0 for the first URL, then one more per redirect followed

    def but(self, **changes: Any) -> Request:
        """A copy with `changes`, as `dataclasses.replace` makes it, without its cost
        (it runs on every HEAD, twice): the fields copied, then the changes set."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"Request has no field {', '.join(sorted(unknown))}")
        copy = object.__new__(Request)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


class Layer(Protocol):
    """What every layer is: a request in, an answer (opened as a stream) out."""

    def send(self, request: Request) -> requests.Response: ...


def make_session(check_peer: Callable[[str, str], None], pool_size: int) -> requests.Session:
    """A session whose connections (``pool_size`` kept per host) are checked by ``check_peer``."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardedAdapter(check_peer, pool_connections=pool_size,
                                             pool_maxsize=pool_size))
    return session


class Sender:
    """One exchange over the session: counted, TLS-verified, connection errors typed.

    With `heads` (the session is the transport's own, from `make_session`), a
    request goes straight to the session's adapter, and a HEAD to `heads`: what
    `Session.request` adds per call (merging settings, hooks, cookies, reading the
    environment) costs more CPU than the exchange itself, and none of it is used
    here. The environment (proxies, REQUESTS_CA_BUNDLE) is still honoured, read
    once per origin; a HEAD through a proxy stays on the adapter; a session the
    caller made is used through `Session.request` as is."""

    def __init__(self, session: requests.Session, *, stats: RequestStats,
                 timeout: tuple[float, float], verify: Callable[[str], bool | str],
                 heads: LeanHeads | None = None) -> None:
        self.session = session
        self.session.headers["User-Agent"] = USER_AGENT
        self.stats = stats
        self.timeout = timeout
        self._verify = verify
        self._heads = heads
        self._settings: dict[tuple[str, str, bool | str], dict[str, Any]] = {}

    def send(self, request: Request) -> requests.Response:
        self.stats.count(request.kind if request.hop == 0 else "redirect")
        try:
            if self._heads is not None:
                return self._send_direct(request, self._heads)
            return self.session.request(
                request.method, request.url, headers=request.headers, params=request.params,
                stream=True, allow_redirects=False, timeout=self.timeout,
                verify=self._verify(request.url))
        except requests.exceptions.RequestException as exc:
            refused = refusal_in(exc)
            if refused is not None:
                raise RedirectRefused(f"{request.what}: {refused}") from None
            raise connection_failed(exc, request) from exc

    def _send_direct(self, request: Request, heads: LeanHeads) -> requests.Response:
        prepared = None
        if request.params is None and is_prepared_url(request.url):
            url = request.url  # what prepare_url would make of it
        else:
            prepared = requests.PreparedRequest()
            prepared.prepare_url(request.url, request.params)
            url = prepared.url or request.url
        settings = self._settings_for(url)
        adapter = self.session.get_adapter(url)
        # {**session.headers, **request.headers}: the session's (name, value) pairs as
        # its CaseInsensitiveDict iterates them, read at once rather than key by key
        headers: dict[str, str | bytes] = dict(_pairs(self.session.headers))
        headers.update(request.headers)
        # Lean only where the adapter would send it itself, the same way: no proxy,
        # no client certificate (`direct`, per origin), and requests' own sending
        # (not a mounted adapter or a patched one, whose transport is theirs to choose).
        if request.method == "HEAD" and settings["direct"] and type(adapter).send is _ADAPTER_SEND:
            return heads.send(url, headers, settings["verify"])
        prepared = prepared or requests.PreparedRequest()
        prepared.prepare(method=request.method, url=url, headers=headers)
        return adapter.send(prepared, stream=True, timeout=self.timeout, verify=settings["verify"],
                            proxies=settings["proxies"], cert=settings["cert"])

    def _settings_for(self, url: str) -> dict[str, Any]:
        """verify, proxies and cert for `url`'s origin, the environment merged in
        as `Session.request` does (once per origin: proxies depend on the host only)."""
        verify = self._verify(url)
        key = (*origin(url), verify)
        settings = self._settings.get(key)
        if settings is None:
            merged = self.session.merge_environment_settings(url, {}, None, verify, None)
            settings = {k: merged[k] for k in ("verify", "proxies", "cert")}
            # select_proxy looks at the scheme and host only: the same for the whole origin
            settings["direct"] = settings["cert"] is None and not select_proxy(url, settings["proxies"])
            self._settings[key] = settings
        return settings


#: A URL that `PreparedRequest.prepare_url` gives back unchanged: http(s), a lowercase
#: ASCII host, a port (1 to 65535) without a leading zero, a path of unreserved characters with no
#: empty or dot segment, no query. Registry API paths are all like this.
is_prepared_url = re.compile(
    r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:/[A-Za-z0-9_~:@+-][A-Za-z0-9._~:@+-]*)+"
).fullmatch


def connection_failed(exc: requests.exceptions.RequestException, request: Request) -> ConnectionFailed:
    """The typed error of a request that got no answer, in words a user can act on.

    A name that does not resolve and a refused connection are `unreachable`
    (retried once only: waiting rarely brings a registry up); a TLS protocol
    error (a plain-HTTP registry asked in TLS) and a refused certificate are
    not temporary at all."""
    host = urlsplit(request.url).netloc
    found = list(causes(exc))
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in found):
        return ConnectionFailed(f"{request.what}: the TLS certificate of {host} was refused: {exc}")
    tls = next((e for e in found if isinstance(e, ssl.SSLError)), None)
    if tls is not None:
        reason = getattr(tls, "reason", None) or type(tls).__name__
        return ConnectionFailed(f"{request.what}: TLS with {host} failed ({reason}); use "
                                "--insecure if this registry speaks plain HTTP")
    if any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in found):
        return ConnectionFailed(f"{request.what}: cannot resolve {host.rsplit(':', 1)[0]}: "
                                "check the registry's name", temporary=True, unreachable=True)
    if any(isinstance(e, ConnectionRefusedError) for e in found):
        return ConnectionFailed(f"{request.what}: connection refused by {host}: is the "
                                "registry running, and the port right?", temporary=True,
                                unreachable=True)
    return ConnectionFailed(f"{request.what}: {type(exc).__name__} from "
                            f"{without_query(request.url)}: {exc}", temporary=True)


def error_of(response: requests.Response, what: str) -> RegistryError:
    """The typed error of an error answer, its body read with a ceiling."""
    read_capped(response, MAX_ERROR_BYTES, f"{what}: HTTP {response.status_code} error body")
    return from_response(response, what)


def _pairs(headers: Mapping[str, str | bytes]) -> Iterable[tuple[str, str | bytes]]:
    """(name, value) of every header, as iterating `headers` gives them."""
    store = getattr(headers, "_store", None)  # a CaseInsensitiveDict's: lower name -> (name, value)
    if type(headers) is CaseInsensitiveDict and isinstance(store, dict):
        return store.values()
    return headers.items()


@functools.lru_cache(maxsize=4096)
def origin(url: str) -> tuple[str, str]:
    """(scheme, lowercase host[:port]) of `url`; a HEAD asks it of its URL several times."""
    plain = split_plain(url)
    if plain is not None:
        return plain[0], plain[1].lower()
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
