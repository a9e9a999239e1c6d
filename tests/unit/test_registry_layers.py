"""Each layer of the registry HTTP stack on its own, over a scripted layer below it."""

from __future__ import annotations

import io
import json

import pytest
import requests

from ecr_mirror.registry.auth import Credentials, TokenCache
from ecr_mirror.registry.authorize import Authorizer
from ecr_mirror.registry.budget import PullBudget
from ecr_mirror.registry.errors import RateLimited, RedirectRefused
from ecr_mirror.registry.follow import Follower
from ecr_mirror.registry.limits import PullGate, RateReader
from ecr_mirror.registry.redirects import RedirectPolicy
from ecr_mirror.registry.sender import Request
from ecr_mirror.stats import RequestStats

HOME = "https://registry.example"


def answer(status: int, body: bytes = b"", **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.raw = io.BytesIO(body)
    response.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return response


class Scripted:
    """The layer below: answers from a script, records what it was sent."""

    def __init__(self, *answers: requests.Response) -> None:
        self.answers = list(answers)
        self.sent: list[Request] = []

    def send(self, request: Request) -> requests.Response:
        self.sent.append(request)
        return self.answers.pop(0)

    def follow(self, request: Request) -> tuple[requests.Response, bool]:
        return self.send(request), True


def policy() -> RedirectPolicy:
    return RedirectPolicy("registry.example", HOME, insecure=False)


def test_the_follower_keeps_authorization_at_home_and_turns_a_303_into_a_get():
    below = Scripted(answer(303, Location="https://93.184.216.34/blob?sig=1"), answer(200))
    response, at_home = Follower(below, policy).follow(
        Request("POST", HOME + "/v2/a/blobs/uploads/", kind="upload", what="x", auth="Bearer t",
                params={"mount": "y"}))
    assert response.status_code == 200 and not at_home
    first, second = below.sent
    assert first.headers["Authorization"] == "Bearer t" and first.hop == 0
    assert "Authorization" not in second.headers and second.hop == 1
    assert (second.method, second.params) == ("GET", None)


def test_the_follower_refuses_an_internal_target_before_sending_to_it():
    below = Scripted(answer(307, Location="http://169.254.169.254/latest/meta-data/"))
    with pytest.raises(RedirectRefused):
        Follower(below, policy).send(Request("GET", HOME + "/v2/", kind="ping", what="x"))
    assert len(below.sent) == 1


def test_the_rate_reader_reads_the_registry_only():
    stats, budget = RequestStats(), PullBudget()
    headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "7;w=21600"}
    below = Scripted(answer(200, **headers), answer(200, **headers))
    reader = RateReader(below, home=lambda: HOME, stats=stats, budget=budget)
    reader.send(Request("GET", "https://cdn.example/blob", kind="blob_get", what="x"))
    assert budget.headroom() is None
    reader.send(Request("HEAD", HOME + "/v2/a/manifests/1", kind="manifest_head", what="x"))
    assert budget.headroom() == 7


def test_the_authorizer_fetches_a_token_once_per_scope_and_refreshes_once_on_a_401():
    token = json.dumps({"token": "t1", "expires_in": 300}).encode()
    challenge = 'Bearer realm="https://auth.example/token",service="registry.example"'
    below = Scripted(answer(401, WWW_Authenticate=challenge), answer(200, token), answer(200),
                     answer(200))
    budget = PullBudget([Credentials("alice", "secret")])
    auth = Authorizer(below, registry="registry.example", budget=budget, tokens=TokenCache(),
                      insecure=False, policy=policy)
    manifest = Request("GET", HOME + "/v2/a/manifests/1", kind="manifest_get", what="x",
                       scope="repository:a:pull")
    assert auth.send(manifest).status_code == 200
    assert auth.send(manifest).status_code == 200  # the cached token, no new fetch
    kinds = [(r.kind, r.auth.split()[0] if r.auth else None) for r in below.sent]
    assert kinds == [("manifest_get", None), ("token", "Basic"), ("manifest_get", "Bearer"),
                     ("manifest_get", "Bearer")]
    assert below.sent[1].params == {"service": "registry.example", "scope": "repository:a:pull"}


def test_the_pull_gate_hands_over_to_the_next_credential_on_a_pull_limit_429():
    limited = json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": "pull rate limit"}]})
    below = Scripted(answer(429, limited.encode(), Retry_After="600"), answer(200))
    budget = PullBudget([Credentials("alice", "a"), Credentials("bob", "b")])
    gate = PullGate(below, budget)
    assert gate.send(Request("GET", HOME + "/v2/a/manifests/1", kind="manifest_get",
                             what="x")).status_code == 200
    assert budget.principal == "bob" and len(below.sent) == 2
    with pytest.raises(RateLimited) as spent:
        PullGate(Scripted(answer(429, limited.encode(), Retry_After="600")), budget).send(
            Request("GET", HOME + "/v2/a/manifests/1", kind="manifest_get", what="x"))
    assert spent.value.pull_limit and spent.value.retry_after == 600
