"""TLS is verified everywhere except on a registry explicitly marked insecure."""

import io

import requests

from ecr_mirror.registry.transport import Transport


class RecordingSession(requests.Session):
    """Answers a blob GET with a redirect to a CDN host, then 200; records `verify`."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((url, kwargs.get("verify")))
        response = requests.Response()
        response.url = url
        response.raw = io.BytesIO()
        if "cdn.example" in url:
            response.status_code, response._content = 200, b"x"
        else:
            response.status_code = 307
            response.headers["Location"] = "https://cdn.example/blob?sig=1"
        return response


def fetch(insecure: bool) -> list:
    session = RecordingSession()
    transport = Transport("registry.example:5000", insecure=insecure, scheme="https", session=session)
    transport.request("GET", "/v2/a/blobs/sha256:00", kind="blob_get", scope=None, what="blob")
    return session.calls


def test_a_secure_registry_and_its_cdn_are_verified():
    assert [v for _, v in fetch(insecure=False)] == [True, True]


def test_insecure_skips_verification_only_for_that_registry():
    calls = fetch(insecure=True)
    assert calls == [("https://registry.example:5000/v2/a/blobs/sha256:00", False),
                     ("https://cdn.example/blob?sig=1", True)]
