"""TLS is verified everywhere except on a registry explicitly marked insecure.

Both ways a request is sent are covered: through `Session.request` (a session the
caller gave) and straight to the adapter of the transport's own session, where
the environment (REQUESTS_CA_BUNDLE, HTTPS_PROXY) must still apply."""

import io

import pytest
import requests
from requests.adapters import HTTPAdapter

from ecr_mirror.registry.transport import Transport


@pytest.fixture(autouse=True)
def no_ca_bundle(monkeypatch):
    """A CA bundle named in the environment would stand for `True`."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def answer(url: str) -> requests.Response:
    """A blob GET is redirected to a CDN host, which answers 200."""
    response = requests.Response()
    response.url = url
    response.raw = io.BytesIO()
    if "cdn.example" in url:
        response.status_code, response._content = 200, b"x"
    else:
        response.status_code = 307
        response.headers["Location"] = "https://cdn.example/blob?sig=1"
    return response


class RecordingSession(requests.Session):
    """Records `verify` of each request made through `Session.request`."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((url, kwargs.get("verify")))
        return answer(url)


class RecordingAdapter(HTTPAdapter):
    """Records `verify` (and the proxies) of each request sent to the adapter."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.proxies = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.calls.append((request.url, verify))
        self.proxies.append(proxies)
        return answer(request.url)


def fetch(insecure: bool, *, own_session: bool = False) -> list:
    if own_session:
        transport = Transport("registry.example:5000", insecure=insecure, scheme="https")
        recorder = RecordingAdapter()
        transport.session.mount("https://", recorder)
    else:
        recorder = RecordingSession()
        transport = Transport("registry.example:5000", insecure=insecure, scheme="https", session=recorder)
    transport.request("GET", "/v2/a/blobs/sha256:00", kind="blob_get", scope=None, what="blob")
    return recorder.calls


@pytest.mark.parametrize("own_session", [False, True])
def test_a_secure_registry_and_its_cdn_are_verified(own_session):
    assert [v for _, v in fetch(insecure=False, own_session=own_session)] == [True, True]


@pytest.mark.parametrize("own_session", [False, True])
def test_insecure_skips_verification_only_for_that_registry(own_session):
    calls = fetch(insecure=True, own_session=own_session)
    assert calls == [("https://registry.example:5000/v2/a/blobs/sha256:00", False),
                     ("https://cdn.example/blob?sig=1", True)]


def test_the_environment_still_applies_to_the_transports_own_session(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "cdn.example")
    transport = Transport("registry.example:5000", scheme="https")
    recorder = RecordingAdapter()
    transport.session.mount("https://", recorder)
    transport.request("GET", "/v2/a/blobs/sha256:00", kind="blob_get", scope=None, what="blob")
    assert [v for _, v in recorder.calls] == [str(bundle), str(bundle)]
    assert recorder.proxies[0].get("https") == "http://proxy.example:3128"
    assert "https" not in recorder.proxies[1]  # NO_PROXY: the CDN is reached directly
