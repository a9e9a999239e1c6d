"""Docker Hub's own exchanges, replayed with `responses`.

These are the parts of Docker Hub that no local registry reproduces: the token
realm on another host, the 307 to a CDN host, the rate-limit headers and the
429 TOOMANYREQUESTS body.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import responses
from responses import matchers

from ecr_mirror.errors import DigestMismatch, UnsupportedMediaType
from ecr_mirror.manifest import ACCEPT, OCI_INDEX
from ecr_mirror.registry import Credentials, RateLimited, RegistryClient, RetryPolicy, Unauthorized

HUB = "https://registry-1.docker.io"
REALM = "https://auth.docker.io/token"
CDN = "https://production.cloudflare.docker.com"
CHALLENGE = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
             'scope="repository:library/nginx:pull"')
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, max_retry_after=1)

INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
INDEX_DIGEST = "sha256:" + hashlib.sha256(INDEX).hexdigest()
LIMIT_HEADERS = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600",
                 "docker-ratelimit-source": "203.0.113.7"}


def hub(credentials=None) -> RegistryClient:
    return RegistryClient("docker.io", api_host="registry-1.docker.io", credentials=credentials,
                          retry=FAST)


def challenge_then(rsps, method, path, **ok):
    """First answer 401 with Docker Hub's challenge, then `ok`."""
    rsps.add(method, HUB + path, status=401, headers={"WWW-Authenticate": CHALLENGE},
             match=[matchers.header_matcher({}, strict_match=False)])
    rsps.add(method, HUB + path, **ok)


def token(rsps, value="tok-1", expires_in=300, **kw):
    rsps.add(responses.GET, REALM, json={"token": value, "access_token": value,
                                         "expires_in": expires_in, "issued_at": "2026-11-27T00:00:00Z"},
             **kw)


@responses.activate
def test_bearer_challenge_fetches_token_from_realm_and_caches_it():
    challenge_then(responses, responses.HEAD, "/v2/library/nginx/manifests/stable",
                   headers={"Docker-Content-Digest": INDEX_DIGEST, "Content-Type": OCI_INDEX,
                            **LIMIT_HEADERS})
    responses.add(responses.HEAD, HUB + "/v2/library/nginx/manifests/stable",
                  headers={"Docker-Content-Digest": INDEX_DIGEST, "Content-Type": OCI_INDEX})
    token(responses, match=[matchers.query_param_matcher(
        {"service": "registry.docker.io", "scope": "repository:library/nginx:pull"})])
    client = hub()

    first = client.head_manifest("library/nginx", "stable")
    second = client.head_manifest("library/nginx", "stable")

    assert first.digest == second.digest == INDEX_DIGEST
    assert client.stats.get("token") == 1  # the second request reused the cached token
    sent = [c.request for c in responses.calls if c.request.url.startswith(HUB)]
    assert "Authorization" not in sent[0].headers
    assert sent[1].headers["Authorization"] == "Bearer tok-1"
    assert sent[2].headers["Authorization"] == "Bearer tok-1"
    assert sent[1].headers["Accept"] == ACCEPT


@responses.activate
def test_credentials_go_to_the_realm_as_basic_auth_never_to_the_registry():
    challenge_then(responses, responses.HEAD, "/v2/library/nginx/manifests/stable",
                   headers={"Docker-Content-Digest": INDEX_DIGEST})
    token(responses)
    hub(Credentials("alice", "s3cret")).head_manifest("library/nginx", "stable")
    realm_call = next(c for c in responses.calls if c.request.url.startswith(REALM))
    assert realm_call.request.headers["Authorization"].startswith("Basic ")
    for call in responses.calls:
        if call.request.url.startswith(HUB):
            assert not call.request.headers.get("Authorization", "").startswith("Basic")


@responses.activate
def test_a_401_on_a_cached_token_refreshes_it_once():
    path = "/v2/library/nginx/manifests/stable"
    ok = {"headers": {"Docker-Content-Digest": INDEX_DIGEST}}
    challenge_then(responses, responses.HEAD, path, **ok)
    responses.add(responses.HEAD, HUB + path, status=401, headers={"WWW-Authenticate": CHALLENGE})
    responses.add(responses.HEAD, HUB + path, **ok)
    token(responses, "tok-1")
    token(responses, "tok-2")
    client = hub()
    client.head_manifest("library/nginx", "stable")  # caches tok-1
    client.head_manifest("library/nginx", "stable")  # tok-1 revoked: 401, refresh, resend
    sent = [c.request.headers.get("Authorization") for c in responses.calls
            if c.request.url.startswith(HUB)]
    assert sent == [None, "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert client.stats.get("token") == 2


@responses.activate
def test_a_401_after_the_refresh_fails_clearly_without_looping():
    path = "/v2/library/nginx/manifests/stable"
    for _ in range(5):
        responses.add(responses.HEAD, HUB + path, status=401, headers={"WWW-Authenticate": CHALLENGE})
    token(responses, "tok-1")
    with pytest.raises(Unauthorized) as err:
        hub(Credentials("alice", "wrong")).head_manifest("library/nginx", "stable")
    assert "credentials" in str(err.value) and "wrong" not in str(err.value)
    assert not err.value.temporary
    # the unauthenticated try, then one with the new token: never retried
    assert len([c for c in responses.calls if c.request.url.startswith(HUB)]) == 2


@responses.activate
def test_blob_redirect_to_cdn_carries_no_authorization():
    data = b"layer bytes" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = f"/v2/library/nginx/blobs/{digest}"
    cdn_url = f"{CDN}/registry-v2/docker/registry/v2/blobs/sha256/ab/{digest[7:]}/data?verify=123"
    challenge_then(responses, responses.GET, path, status=307, headers={"Location": cdn_url})
    token(responses)
    responses.add(responses.GET, cdn_url, body=data)

    stream = hub().open_blob("library/nginx", digest, len(data))
    got = stream.read(len(data) + 10)
    stream.verify()

    assert bytes(got) == data
    cdn_calls = [c for c in responses.calls if c.request.url.startswith(CDN)]
    assert len(cdn_calls) == 1
    assert "Authorization" not in cdn_calls[0].request.headers
    registry_calls = [c for c in responses.calls if c.request.url.startswith(HUB + path)]
    assert registry_calls[-1].request.headers["Authorization"] == "Bearer tok-1"


@responses.activate
def test_rate_limit_headers_are_read_in_both_spellings():
    path = "/v2/library/nginx/manifests/stable"
    responses.add(responses.HEAD, HUB + path, headers={
        "Docker-Content-Digest": INDEX_DIGEST, "RateLimit-Limit": "100;w=21600",
        "RateLimit-Remaining": "76;w=21600"})
    responses.add(responses.HEAD, HUB + path, headers={
        "Docker-Content-Digest": INDEX_DIGEST, "X-RateLimit-Limit": "200;w=3600",
        "X-RateLimit-Remaining": "199;w=3600"})
    client = hub()
    client.head_manifest("library/nginx", "stable")
    assert client.stats.rate_limit.as_dict() == {"limit": 100, "remaining": 76, "windowSeconds": 21600}
    client.head_manifest("library/nginx", "stable")
    assert client.stats.rate_limit.as_dict() == {"limit": 200, "remaining": 199, "windowSeconds": 3600}


TOOMANY = {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your unauthenticated "
                       "pull rate limit. https://www.docker.com/increase-rate-limit"}]}


@responses.activate
def test_pull_limit_429_is_not_retried_in_process_but_raised_to_defer():
    path = "/v2/library/nginx/manifests/stable"
    responses.add(responses.GET, HUB + path, status=429, json=TOOMANY,
                  headers={**LIMIT_HEADERS, "ratelimit-remaining": "0;w=21600"})
    client = hub()
    with pytest.raises(RateLimited) as err:
        client.get_manifest("library/nginx", "stable")
    assert err.value.pull_limit and err.value.temporary
    assert err.value.retry_after == 21600  # no Retry-After: wait for the window
    assert client.stats.get("manifest_get") == 1


@responses.activate
def test_abuse_limit_429_on_a_blob_is_retried_after_retry_after():
    data = b"x" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url = f"{HUB}/v2/library/nginx/blobs/{digest}"
    responses.add(responses.GET, url, status=429, headers={"Retry-After": "0"},
                  json={"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]})
    responses.add(responses.GET, url, body=data)
    client = hub()
    stream = client.open_blob("library/nginx", digest, len(data))
    assert bytes(stream.read(200)) == data
    stream.verify()
    assert client.stats.get("blob_get") == 2


@responses.activate
def test_manifest_bytes_are_verified_against_docker_content_digest():
    path = "/v2/library/nginx/manifests/stable"
    responses.add(responses.GET, HUB + path, body=INDEX,
                  headers={"Content-Type": OCI_INDEX, "Docker-Content-Digest": "sha256:" + "0" * 64})
    with pytest.raises(DigestMismatch):
        hub().get_manifest("library/nginx", "stable")


@responses.activate
def test_schema1_is_refused_with_the_image_and_media_type_named():
    path = "/v2/library/old/manifests/1.0"
    body = json.dumps({"schemaVersion": 1, "name": "library/old", "tag": "1.0"}).encode()
    responses.add(responses.GET, HUB + path, body=body,
                  headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"})
    with pytest.raises(UnsupportedMediaType) as err:
        hub().get_manifest("library/old", "1.0", image="docker.io/library/old:1.0")
    assert "docker.io/library/old:1.0" in str(err.value)
    assert "application/vnd.docker.distribution.manifest.v1+prettyjws" in str(err.value)


@responses.activate
def test_tag_list_follows_link_pagination():
    base = HUB + "/v2/library/nginx/tags/list"
    responses.add(responses.GET, base, json={"name": "library/nginx", "tags": ["1", "2"]},
                  headers={"Link": '</v2/library/nginx/tags/list?last=2&n=2>; rel="next"'},
                  match=[matchers.query_param_matcher({"n": "2"})])
    responses.add(responses.GET, base, json={"name": "library/nginx", "tags": ["3"]},
                  match=[matchers.query_param_matcher({"n": "2", "last": "2"})])
    assert hub().list_tags("library/nginx", page_size=2) == ["1", "2", "3"]


@responses.activate
def test_5xx_is_retried_and_404_is_not():
    path = "/v2/library/nginx/manifests/"
    responses.add(responses.HEAD, HUB + path + "a", status=503)
    responses.add(responses.HEAD, HUB + path + "a", headers={"Docker-Content-Digest": INDEX_DIGEST})
    responses.add(responses.HEAD, HUB + path + "b", status=404)
    client = hub()
    assert client.head_manifest("library/nginx", "a").digest == INDEX_DIGEST
    from ecr_mirror.registry import ManifestUnknown
    with pytest.raises(ManifestUnknown):
        client.head_manifest("library/nginx", "b")
    assert client.stats.get("manifest_head") == 3


def _accounts(rsps, budgets: dict[str, int], reserve_headers=True):
    """A token realm that issues one token per account, and a manifest endpoint
    that spends the account's budget and answers 429 when it is gone."""
    import base64

    left = dict(budgets)

    def token_cb(request):
        user = base64.b64decode(request.headers["Authorization"].split()[1]).decode().split(":")[0]
        return 200, {}, json.dumps({"token": f"tok-{user}", "expires_in": 300})

    def manifest_cb(request):
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer tok-"):
            return 401, {"WWW-Authenticate": CHALLENGE}, ""
        user = auth.split("tok-")[1]
        headers = {"ratelimit-limit": f"{budgets[user]};w=3600", "Content-Type": OCI_INDEX,
                   "Docker-Content-Digest": INDEX_DIGEST}
        if request.method == "GET":
            if left[user] == 0:
                headers["ratelimit-remaining"] = "0;w=3600"
                return 429, headers, json.dumps(TOOMANY)
            left[user] -= 1
        headers["ratelimit-remaining"] = f"{left[user]};w=3600"
        return 200, headers, INDEX if request.method == "GET" else ""

    rsps.add_callback(responses.GET, REALM, callback=token_cb)
    for method in (responses.GET, responses.HEAD):
        rsps.add_callback(method, HUB + "/v2/library/nginx/manifests/stable", callback=manifest_cb)
    return left


def _hub_accounts(reserve):
    return RegistryClient("docker.io", api_host="registry-1.docker.io", retry=FAST, reserve=reserve,
                          credentials=[Credentials("alice", "pw"), Credentials("bob", "pw")])


@responses.activate
def test_the_next_account_takes_over_when_one_reaches_the_reserve():
    left = _accounts(responses, {"alice": 3, "bob": 5})
    client = _hub_accounts(reserve=1)
    for _ in range(5):
        client.get_manifest("library/nginx", "stable")
    # alice spends down to her reserve of 1, then bob takes over and keeps his
    assert left == {"alice": 1, "bob": 2}


@responses.activate
def test_a_429_moves_to_the_next_account_and_when_all_are_spent_the_pull_is_deferred():
    left = _accounts(responses, {"alice": 1, "bob": 1})
    client = _hub_accounts(reserve=0)
    client.get_manifest("library/nginx", "stable")  # alice's last pull
    client.get_manifest("library/nginx", "stable")  # alice: 0 left -> bob
    with pytest.raises(RateLimited) as err:
        client.get_manifest("library/nginx", "stable")
    assert err.value.pull_limit and err.value.retry_after == 3600
    assert "all 2 credential(s)" in str(err.value) and "pw" not in str(err.value)
    assert left == {"alice": 0, "bob": 0}


@responses.activate
def test_heads_never_spend_the_budget():
    left = _accounts(responses, {"alice": 2, "bob": 2})
    client = _hub_accounts(reserve=0)
    for _ in range(10):
        client.head_manifest("library/nginx", "stable")
    assert left == {"alice": 2, "bob": 2}
    assert client.transport.budget.headroom() == 4


@responses.activate
def test_connection_errors_and_408_are_retried_with_backoff():
    import requests as rq

    path = "/v2/library/nginx/manifests/stable"
    responses.add(responses.HEAD, HUB + path, body=rq.exceptions.ConnectionError("reset by peer"))
    responses.add(responses.HEAD, HUB + path, status=408)
    responses.add(responses.HEAD, HUB + path, headers={"Docker-Content-Digest": INDEX_DIGEST})
    client = hub()
    assert client.head_manifest("library/nginx", "stable").digest == INDEX_DIGEST
    assert client.stats.get("manifest_head") == 3


@responses.activate
def test_403_and_digest_mismatch_are_not_retried():
    path = "/v2/library/nginx/manifests/"
    responses.add(responses.GET, HUB + path + "denied", status=403,
                  json={"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]})
    responses.add(responses.GET, HUB + path + "bad", body=INDEX,
                  headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
    client = hub()
    with pytest.raises(Unauthorized):
        client.get_manifest("library/nginx", "denied")
    with pytest.raises(DigestMismatch):
        client.get_manifest("library/nginx", "bad")
    assert client.stats.get("manifest_get") == 2
