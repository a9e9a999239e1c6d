"""sender.is_prepared_url: the URLs it lets skip `PreparedRequest.prepare_url` are
exactly those that prepare_url gives back unchanged (HEADs are sent as prepared)."""

from __future__ import annotations

import pytest
import requests

from ecr_mirror.registry.sender import is_prepared_url

SKIPPED = [
    "http://127.0.0.1:5000/v2/app/manifests/1",
    "https://registry-1.docker.io/v2/library/nginx/manifests/1.27.0-alpine",
    "https://registry.test/v2/a/b/c/manifests/sha256:" + "a" * 64,
    "https://registry.test/v2/app/manifests/v1.0_rc~2+build@x",
    "https://registry.test:65535/v2/app/manifests/1",
    "https://registry.test:1/v2/app/manifests/1",
]
PREPARED = [  # each changed (or possibly changed) by prepare_url: never skipped
    "https://Registry.Test/v2/app/manifests/1",      # host lowercased
    "https://registry.test:0443/v2/app/manifests/1",  # port normalised
    "https://registry.test:65536/v2/app/manifests/1",  # no such port: refused there
    "https://registry.test:99999/v2/app/manifests/1",
    "https://registry.test/v2/app/../other/manifests/1",  # dot segment removed
    "https://registry.test/v2/./app/manifests/1",
    "https://registry.test/v2/app/manifests/a b",      # quoted
    "https://registry.test/v2/app/manifests/%7e",      # unquoted
    "https://registry.test/v2/app/manifests/1?x=1",
    "https://registry.test",
    "https://registry.test/v2/",
    "https://user:secret@registry.test/v2/app/manifests/1",
    "https://régistry.test/v2/app/manifests/1",        # IDNA
    "https://[::1]:5000/v2/app/manifests/1",
    "HTTPS://registry.test/v2/app/manifests/1",
]


def prepared(url: str) -> str:
    request = requests.PreparedRequest()
    request.prepare_url(url, None)
    return request.url or ""


@pytest.mark.parametrize("url", SKIPPED)
def test_a_skipped_url_is_one_prepare_url_leaves_alone(url):
    assert is_prepared_url(url)
    assert prepared(url) == url


@pytest.mark.parametrize("url", PREPARED)
def test_a_url_prepare_url_might_change_is_prepared(url):
    assert not is_prepared_url(url)
