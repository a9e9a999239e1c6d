"""Redirects go only to http(s) on public addresses, and their URLs' secrets stay out of
every report and log (issue 9, findings 3 and 4).

The Lambda Runtime API listens on 127.0.0.1:9001 and instance metadata on
169.254.169.254: a registry must not be able to make the copier fetch them.
"""

from __future__ import annotations

import json
import logging

import pytest

from ecr_mirror import cli
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.registry import RedirectRefused
from ecr_mirror_testing.hostile import (  # noqa: F401
    HostileServer,
    answer,
    challenge,
    client_for,
    fake_dns,
    image_manifest,
    local_ca,
    manifest,
    redirect,
    tls,
)
from tests.integration.conftest import FAST_RETRY

pytestmark = pytest.mark.integration

SECRETS = ("S3CR3TSIG", "T0KENVALUE", "V3RIFY")
PRESIGNED = "/layer?X-Amz-Signature=S3CR3TSIG&access_token=T0KENVALUE&verify=V3RIFY"


@pytest.fixture
def runtime(fake_dns):
    """Stands for the Lambda Runtime API: it must never receive anything."""
    with HostileServer() as server:
        server.route("GET", r".*", answer(200, {"event": "secret invocation payload"}))
        yield server


def blob_redirected_to(tls, local_ca, location: str, *, registry: str = "registry.test", **kwargs):
    digest = "sha256:" + "0" * 64
    tls.route("GET", rf"/v2/app/blobs/{digest}", redirect(location))
    client = client_for(tls, local_ca.pem, registry, timeout=(1.0, 5.0), **kwargs)
    with client.open_blob("app", digest, 3) as blob:
        blob.read(3)
        blob.verify()


@pytest.mark.parametrize("location", [
    "http://127.0.0.1:{runtime}/2018-06-01/runtime/invocation/next",
    "http://localhost:{runtime}/2018-06-01/runtime/invocation/next",
    "http://[::1]:{runtime}/x",
    "http://0.0.0.0:{runtime}/x",
    "http://runtime.test:{runtime}/x",  # a name that resolves to loopback
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://metadata.test/latest/meta-data/",  # a name that resolves to link-local
    "http://10.1.2.3/x",
    "http://224.0.0.1/x",
    "file:///etc/passwd",
    "ftp://cdn.test/x",
])
def test_a_redirect_to_an_internal_address_or_another_scheme_is_refused_once(
        tls, local_ca, runtime, fake_dns, location):
    fake_dns({"metadata.test": "169.254.169.254"})
    location = location.format(runtime=runtime.port)
    with pytest.raises(Exception) as caught:
        blob_redirected_to(tls, local_ca, location)
    assert type(caught.value).__name__ == "RedirectRefused"
    assert caught.value.temporary is False
    assert "registry.test" in str(caught.value)
    assert runtime.requests == []
    assert len(tls.seen(path="/blobs/")) == 1  # refused at once, not retried


def test_a_registry_on_loopback_may_redirect_to_loopback(tls, local_ca, runtime):
    """The demo and a local registry: the registry is itself on 127.0.0.1 (by its configured host)."""
    runtime.route("GET", "/layer", answer(200, b"abc", content_type="application/octet-stream"))
    with pytest.raises(Exception) as caught:  # served, then the digest check refuses the bytes
        blob_redirected_to(tls, local_ca, runtime.url("127.0.0.1", "/layer"), registry="localhost")
    assert type(caught.value).__name__ == "DigestMismatch"
    assert len(runtime.requests) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_an_insecure_registry_may_redirect_anywhere(tls, local_ca, runtime):
    runtime.route("GET", "/layer", answer(200, b"abc", content_type="application/octet-stream"))
    with pytest.raises(Exception) as caught:
        blob_redirected_to(tls, local_ca, runtime.url("127.0.0.1", "/layer"), insecure=True)
    assert type(caught.value).__name__ == "DigestMismatch"
    assert len(runtime.requests) == 1


# -- query strings never leak (finding 3) ------------------------------------------------


def image_with_redirected_layer(tls, cdn_location: str) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"layer bytes"
    doc, config_digest, (layer_digest,) = image_manifest(config, [layer])
    tls.route("HEAD", r"/v2/app/manifests/1", manifest(doc))
    tls.route("GET", r"/v2/app/manifests/.*", manifest(doc))
    tls.route("GET", rf"/v2/app/blobs/{config_digest}", answer(200, config, content_type=None))
    tls.route("GET", rf"/v2/app/blobs/{layer_digest}", redirect(cdn_location))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_a_failed_presigned_url_keeps_its_query_out_of_report_json_and_logs(
        tls, local_ca, ecr, monkeypatch, capsys, caplog):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", local_ca.pem)
    # The CDN refuses, and its error body echoes the URL it was asked for.
    tls.route("GET", "/layer", answer(403, {"errors": [{"code": "DENIED", "message":
              f"signature expired for {tls.url('cdn.test', PRESIGNED)}"}]}), host="cdn.test")
    image_with_redirected_layer(tls, tls.url("cdn.test", PRESIGNED))
    caplog.set_level(logging.DEBUG, logger="ecr_mirror")
    caplog.set_level(logging.INFO)

    code = cli.main(["copy", f"{tls.netloc('localhost')}/app:1", "mirror/app", "--json", "--verbose"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["status"] == "failed"
    assert "cdn.test" in report["error"]["message"]  # still says where it failed
    assert_no_secret(out, err, caplog.text)


def test_a_presigned_url_that_cannot_be_reached_keeps_its_query_out_of_the_report(
        tls, local_ca, ecr, monkeypatch, caplog):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", local_ca.pem)
    with HostileServer() as closed:
        port = closed.port  # nothing listens there once closed
    image_with_redirected_layer(tls, f"https://cdn.test:{port}{PRESIGNED}")
    caplog.set_level(logging.DEBUG, logger="ecr_mirror")
    caplog.set_level(logging.INFO)
    settings = MirrorSettings(retry=FAST_RETRY, region="us-east-1",
                              registries={tls.netloc("localhost"): SourceRegistry()})
    report = Mirror(settings, ecr_client=ecr).copy(f"{tls.netloc('localhost')}/app:1", "mirror/app")
    assert report.status == "failed" and report.error["type"] == "ConnectionFailed"
    assert f"cdn.test:{port}" in report.error["message"]
    assert_no_secret(json.dumps(report.as_dict()), caplog.text)


def test_a_token_realm_on_an_internal_address_is_not_asked(tls, local_ca, runtime):
    """A 401 names the realm, and the client would GET it: the same rule as for redirects."""
    realm = runtime.url("127.0.0.1", "/2018-06-01/runtime/invocation/next")
    tls.route("HEAD", r"/v2/app/manifests/1", challenge(realm))
    with pytest.raises(RedirectRefused, match="realm"):
        client_for(tls, local_ca.pem).head_manifest("app", "1")
    assert runtime.requests == [] and len(tls.seen()) == 1


def test_a_name_rebound_to_loopback_after_the_check_gets_no_request(tls, local_ca, runtime, fake_dns):
    """DNS rebinding: the name is public when the redirect is checked, loopback when connecting."""
    fake_dns({"rebind.test": ["93.184.215.14", "127.0.0.1"]})
    with pytest.raises(RedirectRefused, match="loopback"):
        blob_redirected_to(tls, local_ca, f"http://rebind.test:{runtime.port}/x")
    assert runtime.requests == []
    assert len(tls.seen(path="/blobs/")) == 1


def test_a_manifest_head_redirected_to_a_rebound_name_gets_no_request(tls, local_ca, runtime, fake_dns):
    """HEADs have connections of their own (registry/leanhead.py): the peer guard checks them too."""
    fake_dns({"rebind.test": ["93.184.215.14", "127.0.0.1"]})
    runtime.route("HEAD", r".*", answer(200, headers=[("Docker-Content-Digest", "sha256:" + "0" * 64)]))
    tls.route("HEAD", r"/v2/app/manifests/1", redirect(f"http://rebind.test:{runtime.port}/x"))
    with pytest.raises(RedirectRefused, match="loopback"):
        client_for(tls, local_ca.pem, timeout=(1.0, 5.0)).head_manifest("app", "1")
    assert runtime.requests == []
    assert len(tls.seen(path="/manifests/")) == 1
