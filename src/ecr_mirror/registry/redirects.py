"""Where a registry may send the client: the redirect policy.

A registry's answers are not trusted, and a redirect (or the token realm a 401
names) makes the client send a request wherever the registry likes. In a Lambda function that could be the
Runtime API (127.0.0.1:9001, which hands out the next invocation) or the
instance metadata service (169.254.169.254). So a redirect is followed only

* to ``http`` or ``https``, and
* to a public address: never loopback, link-local, private, unspecified,
  multicast or reserved addresses (literal ones, and every address a name
  resolves to),

unless the registry is marked insecure, or is itself configured by such an
address (a literal internal IP, or ``localhost``): then redirects to addresses
of that same kind are allowed (a local registry redirecting to a local CDN).
A redirect back to the registry's own origin is always allowed. A refusal is a
permanent `RedirectRefused`: the target receives no request.

A name is resolved for the check and again when connecting; a DNS server that
answers differently the second time (rebinding) is caught by `GuardedAdapter`:
every new connection to another host than the registry's checks the address it
actually reached, before anything is sent on it.
"""

from __future__ import annotations

import ipaddress
import socket
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import SplitResult, urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

from .errors import RedirectRefused

SCHEMES = ("http", "https")


def address_kind(address: str) -> str | None:
    """The kind of internal address ``address`` is, or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def _host_kind(host: str) -> str | None:
    """The kind of a configured host, by its spelling only (never resolved)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return "loopback"
    literal = _literal(host)
    return address_kind(literal) if literal else None


class RedirectPolicy:
    """Checks each redirect target of one registry before anything is sent to it."""

    def __init__(self, registry: str, scheme_and_host: str, *, insecure: bool) -> None:
        self.registry = registry
        parts = urlsplit(scheme_and_host)
        self.origin = (parts.scheme, parts.netloc.lower())
        self.home_host = (parts.hostname or "").lower()
        self.insecure = insecure
        self.home_kind = _host_kind(self.home_host)

    def check_peer(self, host: str, address: str) -> None:
        """A new connection to ``host`` reached ``address``: refuse an internal one."""
        if self.insecure or host.strip("[]").lower() == self.home_host:
            return
        kind = address_kind(address)
        if kind is not None and kind != self.home_kind:
            raise RedirectRefused(f"the connection to {host} reached {address}, a {kind} address; "
                                  f"refused (its name resolved to a public address when "
                                  f"{self.registry} sent the client there)")

    def check(self, url: str, what: str, *, named: str = "redirected to") -> None:
        """Raise `RedirectRefused` unless the registry may send the client to ``url``
        (``named`` says how it did: "redirected to", "named the token realm")."""
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
        if parts.scheme not in SCHEMES:
            raise RedirectRefused(f"{what}: {self.registry} {named} {where}; only http and "
                                  "https URLs are followed")
        if self.insecure or (parts.scheme, parts.netloc.lower()) == self.origin:
            return
        host = parts.hostname or ""
        for address in self._addresses(host, parts, what):
            kind = address_kind(address)
            if kind is not None and kind != self.home_kind:
                shown = "" if _literal(host) else f" ({address})"
                raise RedirectRefused(
                    f"{what}: {self.registry} {named} {where}{shown}, a {kind} address; "
                    "refused (a registry may only send the client to public addresses, unless "
                    "it is marked insecure)")

    @staticmethod
    def _addresses(host: str, parts: SplitResult, what: str) -> list[str]:
        literal = _literal(host)
        if literal:
            return [literal]
        if not host:
            raise RedirectRefused(f"{what}: a redirect without a host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, ValueError):
            return []  # unresolvable: the request that follows fails the same way, typed
        return [str(info[4][0]) for info in infos]  # sockaddr[0]: the address, a str


class PeerRefused(OSError):
    """Carries a `RedirectRefused` through urllib3 and requests, as the cause of
    their connection error (see `refusal_in`)."""

    def __init__(self, error: RedirectRefused) -> None:
        super().__init__(str(error))
        self.error = error


def refusal_in(exc: BaseException) -> RedirectRefused | None:
    """The `RedirectRefused` somewhere in the causes of a requests error, if any."""
    return next((e.error for e in causes(exc) if isinstance(e, PeerRefused)), None)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception in its args, reasons, causes and contexts."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose new connections are checked by ``check(host, address)``
    once connected, before a byte is sent (raise `RedirectRefused` to refuse).

    Its connection classes reach the adapter only through a weak reference: urllib3
    keeps each pool's idle connections alive from a process-wide `weakref.finalize`
    registry until the pool is collected, so a connection that referred to its owner
    (the check, a bound method of the transport) would keep the transport, its
    session and that very pool, with their sockets, open for the process's life."""

    def __init__(self, check: Callable[[str, str], None], **kwargs: Any) -> None:
        self._check = check
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        manager = self.poolmanager
        owner = weakref.ref(self)
        manager.pool_classes_by_scheme = {
            scheme: type(f"Guarded{pool.__name__}", (pool,),
                         {"ConnectionCls": _guarded(pool.ConnectionCls, owner)})
            for scheme, pool in manager.pool_classes_by_scheme.items()}


def _guarded(connection_class: type[HTTPConnection],
             owner: weakref.ReferenceType[GuardedAdapter]) -> type[HTTPConnection]:
    # mypy takes no variable as a base class (HTTPConnection or HTTPSConnection here)
    class Guarded(connection_class):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            sock: socket.socket = super()._new_conn()
            try:
                adapter = owner()
                if adapter is None:  # nobody left to check it: nothing is sent
                    raise RedirectRefused(f"the connection to {self.host} outlived its session")
                adapter._check(self.host, sock.getpeername()[0])
            except RedirectRefused as exc:
                sock.close()
                raise PeerRefused(exc) from None
            return sock

    return Guarded
