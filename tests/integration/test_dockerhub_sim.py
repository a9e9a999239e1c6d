"""The Docker Hub simulator (testing/ecr_mirror_testing/dockerhub.py), and our registry client against it.

The first group checks that the simulator behaves like Docker Hub at the HTTP
level; the second drives it through ``ecr_mirror.registry.RegistryClient`` to
show how our client handles tokens, rate limits, the blob CDN and expiring
tokens. The upstream is the real distribution registry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pytest
import requests

from ecr_mirror.registry import Credentials, RateLimited, RegistryClient, RetryPolicy, Unauthorized
from ecr_mirror_testing.dockerhub import DockerHubSimulator
from ecr_mirror_testing.images import (
    MANIFEST_ACCEPT,
    layer_bytes,
    make_image,
    make_index,
    random_blob_chunks,
    random_blob_digest,
)
from ecr_mirror_testing.registry import LocalRegistry

pytestmark = pytest.mark.integration

MiB = 1 << 20
REPO = "library/nginx"
ACCOUNTS = {"alice": "pw1", "bob": "pw2"}
LIMITS = {"anonymous": 5, "alice": 3, "bob": 10}
FAST_RETRY = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02, max_retry_after=1)
BIG = 16 * MiB


# -- fixtures -------------------------------------------------------------------
@pytest.fixture(scope="module")
def upstream():
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="module")
def image(upstream):
    return make_image(upstream.url, REPO, "latest",
                      layers=[layer_bytes("hub-sim-a"), layer_bytes("hub-sim-b")])


@pytest.fixture(scope="module")
def index(upstream):
    """A multi-arch OCI index with attestations: 1 index + 6 child manifests."""
    return make_index(upstream.url, "library/multi", "latest",
                      platforms=[("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7")])


@pytest.fixture(scope="module")
def big_blob(upstream) -> tuple[str, int]:
    """A 16 MiB blob in library/big: (digest, size)."""
    digest = upstream.write_blob("library/big", random_blob_chunks(BIG, "hub-sim-big"))
    assert digest == random_blob_digest(BIG, "hub-sim-big")
    return digest, BIG


@pytest.fixture
def make_hub(upstream):
    """make_hub(**options) -> a started DockerHubSimulator (stopped at teardown)."""
    started: list[DockerHubSimulator] = []

    def make(**options) -> DockerHubSimulator:
        options.setdefault("accounts", ACCOUNTS)
        options.setdefault("limits", LIMITS)
        sim = DockerHubSimulator(upstream.url, **options).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def hub(make_hub) -> DockerHubSimulator:
    return make_hub()


@pytest.fixture
def http():
    with requests.Session() as s:
        s.trust_env = False
        yield s


def client_for(sim: DockerHubSimulator, user: str | None = None) -> RegistryClient:
    session = requests.Session()
    session.trust_env = False
    credentials = Credentials(user, ACCOUNTS[user]) if user else None
    return RegistryClient("docker.io", api_host=sim.host, scheme="http", insecure=True,
                          credentials=credentials, retry=FAST_RETRY, session=session)


def token(http, sim: DockerHubSimulator, *scopes: str, auth=None) -> str:
    resp = http.get(sim.realm, params=[("service", "registry.docker.io"), *(("scope", s) for s in scopes)],
                    auth=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()["token"]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", "Accept": MANIFEST_ACCEPT}


def read_all(stream, chunk: int = MiB) -> int:
    total = 0
    while True:
        data = stream.read(chunk)
        if not data:
            return total
        total += len(data)


def cdn_requests(sim: DockerHubSimulator) -> list[tuple[str, str, str, dict]]:
    return [r for r in sim.requests if r[0] == "cdn"]


# -- the simulator, at the HTTP level -------------------------------------------
def test_challenge_token_and_scope(hub, http, image):
    ping = http.get(hub.url + "/v2/")
    assert ping.status_code == 401
    assert ping.headers["WWW-Authenticate"] == (
        f'Bearer realm="{hub.realm}",service="registry.docker.io"')
    resp = http.get(f"{hub.url}/v2/{REPO}/manifests/latest", headers={"Accept": MANIFEST_ACCEPT})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer realm="{hub.realm}",service="registry.docker.io",scope="repository:{REPO}:pull"')
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"

    answer = http.get(hub.realm, params={"service": "registry.docker.io",
                                         "scope": f"repository:{REPO}:pull"})
    body = answer.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    ok = http.get(f"{hub.url}/v2/{REPO}/manifests/latest", headers=bearer(body["token"]))
    assert ok.status_code == 200 and ok.content == image.raw
    assert ok.headers["Docker-Content-Digest"] == image.digest
    assert ok.headers["Content-Type"] == image.media_type
    assert http.get(hub.url + "/v2/", headers=bearer(body["token"])).status_code == 200

    # The token covers library/nginx only.
    other = http.get(f"{hub.url}/v2/library/other/manifests/latest", headers=bearer(body["token"]))
    assert other.status_code == 401 and 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    # Several scopes in one token.
    both = token(http, hub, f"repository:{REPO}:pull", "repository:library/other:pull")
    assert http.head(f"{hub.url}/v2/{REPO}/manifests/latest", headers=bearer(both)).status_code == 200
    assert http.get(f"{hub.url}/v2/library/other/manifests/latest", headers=bearer(both)).status_code == 404
    assert hub.counts["token"] == 2 and hub.counts["401"] == 3


def test_token_service_accounts_and_expiry(make_hub, http, image):
    hub = make_hub(token_ttl=42)
    scope = f"repository:{REPO}:pull"
    assert http.get(hub.realm, params={"service": "registry.docker.io", "scope": scope},
                    auth=("alice", "wrong")).status_code == 401
    assert http.get(hub.realm, params={"service": "registry.docker.io", "scope": scope},
                    auth=("mallory", "pw1")).status_code == 401
    assert http.get(hub.realm, params={"service": "elsewhere", "scope": scope}).status_code == 400
    assert hub.counts["token-refused"] == 2
    answer = http.get(hub.realm, params={"service": "registry.docker.io", "scope": scope}, auth=("alice", "pw1"))
    assert answer.json()["expires_in"] == 42
    alice = answer.json()["token"]
    resp = http.get(f"{hub.url}/v2/{REPO}/manifests/latest", headers=bearer(alice))
    assert resp.headers["docker-ratelimit-source"] == "alice"
    assert hub.pulls("alice") == 1 and hub.pulls("anonymous") == 0

    hub.expire_tokens()
    again = http.get(f"{hub.url}/v2/{REPO}/manifests/latest", headers=bearer(alice))
    assert again.status_code == 401 and 'error="invalid_token"' in again.headers["WWW-Authenticate"]
    assert hub.pulls("alice") == 1


def test_rate_limit_headers_429_and_reset(make_hub, http, image):
    hub = make_hub(limits={"anonymous": 2}, window=3600)
    tok = token(http, hub, f"repository:{REPO}:pull")
    url = f"{hub.url}/v2/{REPO}/manifests/latest"

    head = http.head(url, headers=bearer(tok))
    assert head.headers["ratelimit-limit"] == "2;w=3600"
    assert head.headers["ratelimit-remaining"] == "2;w=3600"
    assert head.headers["docker-ratelimit-source"] == "anonymous"
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert int(head.headers["Content-Length"]) == image.size
    assert [http.get(url, headers=bearer(tok)).headers["ratelimit-remaining"] for _ in range(2)] == \
        ["1;w=3600", "0;w=3600"]

    limited = http.get(url, headers=bearer(tok))
    assert limited.status_code == 429
    assert limited.json() == {"errors": [{"code": "TOOMANYREQUESTS", "message":
                                          "You have reached your unauthenticated pull rate limit. "
                                          "https://www.docker.com/increase-rate-limit"}]}
    assert limited.headers["ratelimit-remaining"] == "0;w=3600"
    assert "Retry-After" not in limited.headers
    # HEAD is never refused for the pull limit and never counts.
    head = http.head(url, headers=bearer(tok))
    assert head.status_code == 200 and head.headers["ratelimit-remaining"] == "0;w=3600"
    assert hub.pulls() == 2 and hub.remaining() == 0
    assert hub.counts["429"] == hub.counts["pull-limit"] == 1

    hub.reset_window()
    assert hub.remaining() == 2
    assert http.get(url, headers=bearer(tok)).status_code == 200
    assert hub.pulls() == 3 and hub.remaining() == 1
    # A manifest that does not exist is not a pull.
    assert http.get(f"{hub.url}/v2/{REPO}/manifests/nope", headers=bearer(tok)).status_code == 404
    assert hub.pulls() == 3 and hub.remaining() == 1


def test_x_header_style_retry_after_and_account_message(make_hub, http, image):
    hub = make_hub(header_style="x-", retry_after=120, limits={"alice": 1})
    tok = token(http, hub, f"repository:{REPO}:pull", auth=("alice", "pw1"))
    url = f"{hub.url}/v2/{REPO}/manifests/latest"
    first = http.get(url, headers=bearer(tok))
    assert first.headers["x-ratelimit-limit"] == "1;w=21600"
    assert first.headers["x-ratelimit-remaining"] == "0;w=21600"
    assert "ratelimit-limit" not in {k.lower() for k in first.headers}
    limited = http.get(url, headers=bearer(tok))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "120"
    message = limited.json()["errors"][0]["message"]
    assert "pull rate limit" in message and "unauthenticated" not in message


def test_blob_redirect_cdn_range_and_refusal(hub, http, big_blob):
    digest, size = big_blob
    tok = token(http, hub, "repository:library/big:pull")
    resp = http.get(f"{hub.url}/v2/library/big/blobs/{digest}", headers=bearer(tok), allow_redirects=False)
    assert resp.status_code == 307 and resp.content == b""
    location = resp.headers["Location"]
    assert location.startswith(f"{hub.cdn_url}/blobs/{digest}?verify=")

    part = http.get(location, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.content == b"".join(random_blob_chunks(BIG, "hub-sim-big"))[100:200]

    with http.get(location, stream=True) as full:
        assert full.status_code == 200 and int(full.headers["Content-Length"]) == size
        h = hashlib.sha256()
        for chunk in full.iter_content(MiB):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == digest

    refused = http.get(location, headers={"Authorization": f"Bearer {tok}"})
    assert refused.status_code == 400 and "Only one auth mechanism allowed" in refused.text
    assert tok not in refused.text
    assert hub.counts["cdn-auth-refused"] == 1
    assert http.get(location.split("?")[0] + "?verify=forged").status_code == 403


def test_fault_injection_does_not_spend_the_budget(hub, http, image):
    tok = token(http, hub, f"repository:{REPO}:pull")
    hub.fail_next("GET manifest", 503)
    url = f"{hub.url}/v2/{REPO}/manifests/latest"
    assert http.get(url, headers=bearer(tok)).status_code == 503
    assert hub.remaining() == 5 and hub.pulls() == 0
    hub.fail_next("GET blob", 429, headers={"Retry-After": "0"})
    blob = http.get(f"{hub.url}/v2/{REPO}/blobs/{image.blobs[0]}", headers=bearer(tok), allow_redirects=False)
    assert blob.status_code == 429 and blob.headers["Retry-After"] == "0"
    assert hub.counts["injected"] == 2 and hub.counts["pull-limit"] == 0


# -- our client against the simulator --------------------------------------------
def test_client_anonymous_head_and_get_use_one_token(hub, image):
    client = client_for(hub)
    head = client.head_manifest(REPO, "latest")
    assert head.digest == image.digest and head.media_type == image.media_type and head.size == image.size
    manifest = client.get_manifest(REPO, "latest")
    assert manifest.raw == image.raw and manifest.digest == image.digest
    assert hub.counts["token"] == 1 and client.stats.get("token") == 1
    assert hub.counts["401"] == 1
    assert hub.pulls("anonymous") == 1
    assert client.list_tags(REPO) == ["latest"]
    assert hub.counts["token"] == 1


def test_a_netrc_entry_never_replaces_the_clients_own_authorization(hub, image, tmp_path, monkeypatch):
    """requests puts a ~/.netrc login on every request it prepares for that host,
    over the Authorization header given: the token request and the Bearer token
    became Basic with the netrc's password, so the registry saw a password the
    mirror was never configured with, and refused the pull."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login mallory password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = RegistryClient("docker.io", api_host=hub.host, scheme="http", insecure=True,
                            credentials=Credentials("alice", ACCOUNTS["alice"]), retry=FAST_RETRY)
    assert client.head_manifest(REPO, "latest").digest == image.digest
    assert client.get_manifest(REPO, "latest").raw == image.raw
    assert hub.pulls("alice") == 1
    sent = [h.get("Authorization", "") for _, _, _, h in hub.requests]
    assert sent and not any(a.startswith("Basic ") and "bWFsbG9yeT" in a for a in sent)


def test_client_reads_rate_limit_headers(make_hub, image):
    for style in ("", "x-"):
        hub = make_hub(header_style=style, window=3600)
        client = client_for(hub)
        client.head_manifest(REPO, "latest")
        rate = client.stats.rate_limit
        assert (rate.limit, rate.remaining, rate.window_seconds, rate.source) == (5, 5, 3600, "anonymous")
        client.get_manifest(REPO, "latest")
        assert client.stats.rate_limit.remaining == 4
        client.head_manifest(REPO, "latest")
        assert client.stats.rate_limit.remaining == 4
        client.get_manifest(REPO, image.digest)
        assert client.stats.rate_limit.remaining == 3 == hub.remaining()


def test_client_raises_rate_limited_when_the_budget_is_spent(hub, image):
    client = client_for(hub)
    for _ in range(5):
        client.get_manifest(REPO, "latest")
    assert client.stats.rate_limit.remaining == 0
    with pytest.raises(RateLimited) as info:
        client.get_manifest(REPO, "latest")
    assert info.value.code == "TOOMANYREQUESTS" and info.value.pull_limit
    assert info.value.retry_after == 21600  # no Retry-After: wait for the advertised window
    assert hub.pulls() == 5 and hub.remaining() == 0

    # Another worker behind the same IP last saw 5 left: Docker Hub answers 429.
    other = client_for(hub)
    with pytest.raises(RateLimited) as info:
        other.get_manifest(REPO, "latest")
    assert info.value.pull_limit and info.value.retry_after == 21600
    assert hub.counts["pull-limit"] == 1  # not retried: a spent budget is deferred
    assert other.stats.rate_limit.remaining == 0
    # HEAD still answers: checking for changes costs nothing.
    assert client.head_manifest(REPO, "latest").digest == image.digest
    assert hub.pulls() == 5

    hub.reset_window()
    client.head_manifest(REPO, "latest")  # the client learns the new window from a HEAD
    assert client.stats.rate_limit.remaining == 5
    assert client.get_manifest(REPO, "latest").digest == image.digest
    assert client.stats.rate_limit.remaining == 4 == hub.remaining()


def test_client_honours_retry_after_without_sleeping_through_it(make_hub, image):
    hub = make_hub(retry_after=3600)
    client = client_for(hub)
    hub.fail_manifest_get_after(1)
    client.get_manifest(REPO, "latest")
    assert client.stats.rate_limit.remaining == 4  # the 429 cannot be seen coming
    with pytest.raises(RateLimited) as info:
        client.get_manifest(REPO, "latest")
    assert info.value.retry_after == 3600  # Docker Hub said one hour; the window is six
    assert info.value.status == 429
    assert hub.counts["pull-limit"] == 1  # raised at once, not retried


def test_client_per_account_budgets(hub, image):
    alice, bob, anonymous = client_for(hub, "alice"), client_for(hub, "bob"), client_for(hub)
    for _ in range(3):
        alice.get_manifest(REPO, "latest")
    with pytest.raises(RateLimited):
        alice.get_manifest(REPO, "latest")
    assert alice.stats.rate_limit.source == "alice" and alice.stats.rate_limit.limit == 3
    bob.get_manifest(REPO, "latest")
    assert bob.stats.rate_limit.source == "bob" and bob.stats.rate_limit.remaining == 9
    anonymous.get_manifest(REPO, "latest")
    assert anonymous.stats.rate_limit.remaining == 4
    assert (hub.pulls("alice"), hub.pulls("bob"), hub.pulls("anonymous")) == (3, 1, 1)
    assert (hub.remaining("alice"), hub.remaining("bob"), hub.remaining("anonymous")) == (0, 9, 4)


def test_client_moves_to_the_next_account_on_a_429(hub, image):
    # alice's budget was spent elsewhere; this client has not seen it.
    hub.set_remaining("alice", 0)
    session = requests.Session()
    session.trust_env = False
    client = RegistryClient("docker.io", api_host=hub.host, scheme="http", insecure=True,
                            credentials=[Credentials("alice", "pw1"), Credentials("bob", "pw2")],
                            retry=FAST_RETRY, session=session)
    assert client.get_manifest(REPO, "latest").digest == image.digest
    assert hub.counts["pull-limit"] == 1
    assert (hub.pulls("alice"), hub.pulls("bob")) == (0, 1)
    assert client.stats.rate_limit.source == "bob"
    client.get_manifest(REPO, "latest")
    assert hub.pulls("bob") == 2 and hub.counts["pull-limit"] == 1


def test_client_wrong_password_is_unauthorized(hub, image):
    session = requests.Session()
    session.trust_env = False
    client = RegistryClient("docker.io", api_host=hub.host, scheme="http", insecure=True,
                            credentials=Credentials("alice", "wrong"), retry=FAST_RETRY, session=session)
    with pytest.raises(Unauthorized):
        client.get_manifest(REPO, "latest")
    assert hub.counts["token-refused"] == 1 and hub.pulls("alice") == 0


def test_client_rate_limited_in_the_middle_of_a_multi_arch_copy(hub, index):
    client = client_for(hub)
    hub.fail_manifest_get_after(3)
    top = client.get_manifest("library/multi", "latest")
    assert top.digest == index.digest and len(top.children) == 6
    fetched = []
    with pytest.raises(RateLimited) as info:
        for child in top.children:
            fetched.append(client.get_manifest("library/multi", child["digest"]).digest)
    assert info.value.pull_limit and info.value.retry_after == 21600
    assert fetched == [c.digest for c in index.children[:2]]
    assert hub.pulls() == 3 and client.stats.rate_limit.remaining == 0
    assert hub.counts["pull-limit"] == 1
    hub.reset_window()
    client.head_manifest("library/multi", "latest")
    for child in top.children[2:]:
        client.get_manifest("library/multi", child["digest"])
    assert hub.pulls() == 7


def test_client_retries_injected_faults_without_spending_pulls(hub, image):
    client = client_for(hub)
    hub.fail_next("GET manifest", 503)
    assert client.get_manifest(REPO, "latest").digest == image.digest
    assert hub.pulls() == 1 and hub.remaining() == 4 and hub.counts["GET manifest"] >= 2
    # An abuse-limit 429 on a blob GET is retried too.
    hub.fail_next("GET blob", 429, headers={"Retry-After": "0"})
    layer = image.json["layers"][0]
    with client.open_blob(REPO, layer["digest"], layer["size"]) as stream:
        assert read_all(stream) == layer["size"]
        stream.verify()
    assert hub.counts["injected"] == 2 and hub.remaining() == 4


def test_client_blob_goes_to_the_cdn_without_authorization(hub, big_blob):
    digest, size = big_blob
    client = client_for(hub)
    with client.open_blob("library/big", digest, size) as stream:
        assert read_all(stream) == size
        stream.verify()
        assert stream.resumes == 0
    cdn = cdn_requests(hub)
    assert len(cdn) == 1 and hub.counts["GET cdn"] == 1
    assert not any(k.lower() == "authorization" for k in cdn[0][3])
    assert hub.counts["cdn-auth-refused"] == 0
    assert hub.pulls() == 0 and hub.remaining() == 5  # blobs are not pulls


def test_client_refreshes_an_expired_token_once(hub, image):
    client = client_for(hub)
    client.get_manifest(REPO, "latest")
    assert hub.counts["token"] == 1
    hub.expire_tokens()
    assert client.get_manifest(REPO, "latest").digest == image.digest
    assert hub.counts["token"] == 2 and client.stats.get("token") == 2
    assert hub.counts["401"] == 2
    assert hub.pulls() == 2


def test_client_resumes_a_blob_after_a_drop_and_a_token_expiry(hub, big_blob):
    digest, size = big_blob
    client = client_for(hub)
    cut = 5 * MiB + 123
    hub.drop_blob_once(digest, cut, expire_tokens=True)
    with client.open_blob("library/big", digest, size) as stream:
        assert read_all(stream) == size
        stream.verify()
        assert stream.resumes == 1
    assert hub.counts["cdn-dropped"] == 1
    assert hub.counts["token"] == 2  # one refresh after the expiry
    assert hub.counts["GET blob"] == 4  # 401, 307, 401 (expired), 307
    cdn = cdn_requests(hub)
    assert len(cdn) == 2
    assert not any(k.lower() == "authorization" for r in cdn for k in r[3])
    ranges = [{k.lower(): v for k, v in r[3].items()}.get("range") for r in cdn]
    assert ranges == [None, f"bytes={cut}-"]
    assert hub.counts["cdn-auth-refused"] == 0


def test_simulator_answers_are_quiet_and_json(hub, http):
    """Unknown paths and write methods get clear errors, not tracebacks."""
    assert http.get(hub.url + "/nothing").status_code == 404
    tok = token(http, hub, f"repository:{REPO}:pull")
    put = http.put(f"{hub.url}/v2/{REPO}/manifests/x", data=b"{}", headers=bearer(tok))
    assert put.status_code == 405 and json.loads(put.content)["errors"][0]["code"] == "UNSUPPORTED"
    assert http.get(hub.cdn_url + "/elsewhere").status_code == 403
