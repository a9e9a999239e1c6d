"""The redirect layer: follows redirects itself, under the redirect policy.

`Authorization` (the request's `auth`) goes to the first URL's origin and nowhere
else; each target is checked by `RedirectPolicy.check` before anything is sent
to it; a 303 turns into a GET; at most `MAX_REDIRECTS` hops.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin

import requests

from .errors import RegistryError
from .redirects import RedirectPolicy
from .sender import Layer, Request, origin

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class Follower:
    """Sends through ``inner``, following redirects that ``policy()`` allows."""

    def __init__(self, inner: Layer, policy: Callable[[], RedirectPolicy]) -> None:
        self.inner = inner
        self._policy = policy

    def send(self, request: Request) -> requests.Response:
        return self.follow(request)[0]

    def follow(self, request: Request) -> tuple[requests.Response, bool]:
        """The final answer (opened as a stream) and whether it came from the
        first URL's origin."""
        home = origin(request.url)
        hop = request
        for n in range(MAX_REDIRECTS + 1):
            at_home = hop is request or origin(hop.url) == home
            headers = dict(request.headers)
            if request.auth and at_home:
                headers["Authorization"] = request.auth
            response = self.inner.send(hop.but(headers=headers, hop=n))
            if response.status_code not in REDIRECTS:
                return response, at_home
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise RegistryError(f"{request.what}: HTTP {response.status_code} without Location")
            url = urljoin(hop.url, location)
            self._policy().check(url, request.what)
            # The redirect target carries its own query; a 303 is answered with a GET.
            hop = hop.but(url=url, params=None,
                          method="GET" if response.status_code == 303 else hop.method)
        raise RegistryError(f"{request.what}: more than {MAX_REDIRECTS} redirects")
