"""Source credentials go to the registry they belong to, and nowhere else (issue 9, finding 2).

Each test drives the real client (or the CLI) against a registry on 127.0.0.1
that tries to collect them: a foreign host, a plain-HTTP token realm, a CDN
whose 401 names its own realm.
"""

from __future__ import annotations

import base64
import json

import pytest

from ecr_mirror import cli
from ecr_mirror.registry import ConnectionFailed, Credentials, RegistryClient, RegistryError, Unauthorized
from ecr_mirror_testing.hostile import (  # noqa: F401
    HostileServer,
    answer,
    bearer_only,
    challenge,
    client_for,
    fake_dns,
    local_ca,
    redirect,
    tls,
    token_answer,
)

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "ab" * 32
SECRET = Credentials("hub-user", "hub-token-s3cret")
BASIC = "Basic " + base64.b64encode(b"hub-user:hub-token-s3cret").decode()


def authorized(server: HostileServer, host: str | None = None) -> list:
    return [r for r in server.seen(host=host) if r.header("Authorization")]


def test_environment_credentials_are_not_sent_to_another_registry(tls, local_ca, ecr, monkeypatch, capsys):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", local_ca.pem)
    monkeypatch.setenv("ECR_MIRROR_SOURCE_USERNAME", SECRET.username)
    monkeypatch.setenv("ECR_MIRROR_SOURCE_PASSWORD", SECRET.password)
    tls.route("HEAD", r"/v2/.*", challenge(tls.url("registry.test", "/realm"), scheme="Basic"))
    tls.route("GET", r"/v2/.*", challenge(tls.url("registry.test", "/realm"), scheme="Basic"))
    source = f"{tls.netloc('registry.test')}/app:1"

    assert cli.main(["copy", source, "mirror/app", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "Unauthorized"
    assert tls.seen(host="registry.test") and not authorized(tls)

    # Named by ECR_MIRROR_SOURCE_REGISTRY, that registry (and only it) gets them.
    monkeypatch.setenv("ECR_MIRROR_SOURCE_REGISTRY", tls.netloc("registry.test"))
    cli.main(["copy", source, "mirror/app", "--json"])
    assert {r.header("Authorization") for r in authorized(tls)} == {BASIC}


def test_no_credentials_to_a_plain_http_realm_of_an_https_registry(tls, local_ca):
    with HostileServer() as plain:
        realm = plain.url("auth.test", "/token")
        plain.route("GET", "/token", token_answer("t"))
        tls.route("HEAD", r"/v2/app/manifests/1",
                  bearer_only("t", realm, answer(200, headers=[("Docker-Content-Digest", DIGEST)])))
        head = client_for(tls, local_ca.pem, "localhost", credentials=SECRET).head_manifest("app", "1")
        assert head.digest == DIGEST  # anonymous token: still works for a public image
        assert plain.seen(path="/token") and not authorized(plain)


def test_an_https_realm_on_another_host_gets_the_credentials(tls, local_ca):
    """Docker Hub's realm is auth.docker.io, another host than the registry: allowed over HTTPS."""
    tls.route("GET", "/token", token_answer("t"), host="auth.test")
    tls.route("HEAD", r"/v2/app/manifests/1",
              bearer_only("t", tls.url("auth.test", "/token"),
                          answer(200, headers=[("Docker-Content-Digest", DIGEST)])))
    client_for(tls, local_ca.pem, "localhost", credentials=SECRET).head_manifest("app", "1")
    assert [r.header("Authorization") for r in tls.seen(host="auth.test")] == [BASIC]


def test_a_redirect_targets_401_neither_gets_credentials_nor_replaces_the_challenge(tls, local_ca):
    realm, evil = tls.url("auth.test", "/token"), tls.url("evil.test", "/token")
    tls.route("GET", "/token", token_answer("t"), host="auth.test")
    tls.route("GET", "/token", token_answer("evil"), host="evil.test")
    tls.route("GET", rf"/v2/app/blobs/{DIGEST}",
              bearer_only("t", realm, redirect(tls.url("cdn.test", "/blob?X-Amz-Signature=abc"))))
    tls.route("GET", "/blob", challenge(evil), host="cdn.test")
    tls.route("HEAD", r"/v2/(app|other)/manifests/1",
              bearer_only("t", realm, answer(200, headers=[("Docker-Content-Digest", DIGEST)])))
    # A registry on loopback (by its configured host) may redirect to a CDN on loopback.
    client = client_for(tls, local_ca.pem, "localhost", credentials=SECRET)
    client.head_manifest("app", "1")  # the registry's challenge is known, a token cached

    with pytest.raises(Unauthorized), client.open_blob("app", DIGEST, 10) as blob:
        blob.read(10)
    assert not authorized(tls, "cdn.test")
    # The registry's own challenge still holds: a new scope gets its token from the registry's realm.
    assert client.head_manifest("other", "1").digest == DIGEST
    assert tls.seen(host="evil.test") == []


def test_no_basic_credentials_to_a_plain_http_registry_not_marked_insecure(fake_dns):
    with HostileServer() as plain:
        plain.route("HEAD", r"/v2/app/manifests/1", challenge(plain.url("registry.test"), scheme="Basic"))
        client = RegistryClient("registry.test", api_host=plain.netloc("registry.test"), scheme="http",
                                credentials=SECRET)
        with pytest.raises(Unauthorized):
            client.head_manifest("app", "1")
        assert plain.seen() and not authorized(plain)


def test_a_certificate_that_is_not_trusted_is_refused_once(tls):
    """TLS stays verified (no CA given: the test CA is unknown), and that is not worth a retry."""
    with pytest.raises(ConnectionFailed) as caught:
        client_for(tls, True, credentials=SECRET).head_manifest("app", "1")
    assert caught.value.temporary is False and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert tls.requests == []


@pytest.mark.parametrize("method", ["HEAD", "GET"])  # the lean HEAD path, and requests' for a GET
def test_a_token_a_header_cannot_carry_is_refused_and_never_shown(tls, local_ca, method):
    """A token service answering a token with a line break (or another control
    character) would have it sent as a header line of its own, or raised in an error
    that prints the token. Refused where it arrives, the error naming the realm only."""
    token = "s3cret-token\r\nX-Injected: 1"
    tls.route("GET", "/token", token_answer(token), host="auth.test")
    tls.route(method, r"/v2/app/(manifests/1|blobs/.*)",
              bearer_only(token, tls.url("auth.test", "/token"),
                          answer(200, headers=[("Docker-Content-Digest", DIGEST)])))
    client = client_for(tls, local_ca.pem, "localhost", credentials=SECRET)
    with pytest.raises(RegistryError) as caught:
        if method == "HEAD":
            client.head_manifest("app", "1")
        else:
            with client.open_blob("app", DIGEST, 10) as blob:
                blob.read(10)
    message = str(caught.value)
    assert "s3cret-token" not in message and "auth.test" in message, message
    assert not caught.value.temporary  # the same answer next time: not retried
    assert not any(r.header("X-Injected") for r in tls.seen())
    assert [r for r in tls.seen(host="localhost") if r.header("Authorization")] == []
