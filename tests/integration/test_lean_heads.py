"""HEADs over registry/leanhead.py's own connections do what requests' adapter did:
the environment's proxy, kept connections that the registry closed left alone."""

from __future__ import annotations

import pytest

from ecr_mirror.registry import RegistryClient
from ecr_mirror_testing.hostile import HostileServer, answer
from ecr_mirror_testing.proxy import shutdown_connections

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "a" * 64
HEAD = answer(200, headers=[("Docker-Content-Digest", DIGEST),
                            ("Content-Type", "application/vnd.oci.image.manifest.v1+json")])


def test_a_head_goes_through_the_proxy_the_environment_names(monkeypatch):
    with HostileServer() as proxy:
        proxy.route("HEAD", r"/v2/app/manifests/1", HEAD)
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        client = RegistryClient("registry.test", api_host="registry.test:5000", scheme="http",
                                insecure=True)
        assert client.head_manifest("app", "1").digest == DIGEST
        [seen] = proxy.seen()
        assert seen.host == "registry.test" and seen.path == "http://registry.test:5000/v2/app/manifests/1"


def test_a_kept_connection_the_registry_closed_is_not_reused():
    with HostileServer() as registry:
        registry.route("HEAD", r"/v2/app/manifests/1", HEAD)
        client = RegistryClient(registry.netloc(), scheme="http", insecure=True)
        assert client.head_manifest("app", "1").digest == DIGEST
        shutdown_connections(registry._lock, registry._connections)  # the registry's idle timeout
        assert client.head_manifest("app", "1").digest == DIGEST
        # Sent once each: not a failed try on the closed connection, then a retry.
        assert client.stats.get("manifest_head") == 2 and len(registry.seen()) == 2
