"""Auth challenges, rate-limit headers, error mapping, ECR names, credentials."""

import base64
import json

import pytest
import requests

from ecr_mirror.ecr.names import default_repository, parse_target
from ecr_mirror.errors import UsageError
from ecr_mirror.reference import parse
from ecr_mirror.registry import errors as rerr
from ecr_mirror.registry.auth import Credentials, parse_challenge, token_lifetime
from ecr_mirror.registry.credentials import load_credentials
from ecr_mirror.registry.ratelimit import parse_rate_limit


def test_bearer_challenge_params():
    c = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                        'scope="repository:library/nginx:pull,push"')
    assert c.scheme == "bearer" and c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    assert c.params["scope"] == "repository:library/nginx:pull,push"


def test_basic_challenge_and_missing_header():
    assert parse_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert parse_challenge(None) is None


@pytest.mark.parametrize("body,lifetime", [({"expires_in": 300}, 270), ({}, 54), ({"expires_in": 10}, 9)])
def test_token_lifetime_keeps_a_margin_and_defaults_to_60s(body, lifetime):
    assert token_lifetime(body) == pytest.approx(lifetime)


def test_credentials_never_show_the_password():
    assert "hunter2" not in repr(Credentials("u", "hunter2"))


@pytest.mark.parametrize("headers,expected", [
    ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}, (100, 76, 21600)),
    ({"X-RateLimit-Limit": "200;w=3600", "X-RateLimit-Remaining": "0;w=3600"}, (200, 0, 3600)),
    ({"RateLimit-Limit": "100", "RateLimit-Remaining": "5"}, (100, 5, None)),
])
def test_rate_limit_headers(headers, expected):
    r = parse_rate_limit(headers)
    assert (r.limit, r.remaining, r.window_seconds) == expected


def test_no_rate_limit_headers_means_no_limit():
    assert parse_rate_limit({"Content-Type": "x"}) is None


def _response(status, body=None, headers=None, url="https://r/v2/x/manifests/t"):
    r = requests.Response()
    r.status_code, r.url = status, url
    r._content = json.dumps(body).encode() if body is not None else b""
    r.headers.update(headers or {})
    return r


@pytest.mark.parametrize("status,code,cls,temporary", [
    (429, "TOOMANYREQUESTS", rerr.RateLimited, True),
    (401, "UNAUTHORIZED", rerr.Unauthorized, False),
    (403, "DENIED", rerr.Unauthorized, False),
    (404, "MANIFEST_UNKNOWN", rerr.ManifestUnknown, False),
    (404, "NAME_UNKNOWN", rerr.NotFound, False),
    (503, "", rerr.ServerError, True),
    (408, "", rerr.ServerError, True),
    (400, "MANIFEST_INVALID", rerr.RegistryError, False),
])
def test_oci_error_body_maps_to_typed_errors(status, code, cls, temporary):
    body = {"errors": [{"code": code, "message": "msg"}]} if code else None
    err = rerr.from_response(_response(status, body), "manifest x:t")
    assert type(err) is cls and err.temporary is temporary and "manifest x:t" in str(err)


def test_retry_after_seconds_and_date():
    assert rerr.parse_retry_after("7") == 7
    assert rerr.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert rerr.parse_retry_after("soon") is None


@pytest.mark.parametrize("text,default,expected", [
    ("mirror/nginx", "stable", ("mirror/nginx", "stable", None, None)),
    ("mirror/nginx:1.27", "stable", ("mirror/nginx", "1.27", None, None)),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/nginx:x", None,
     ("mirror/nginx", "x", "123456789012", "eu-west-1")),
])
def test_ecr_targets(text, default, expected):
    t = parse_target(text, default)
    assert (t.repository, t.tag, t.registry_id, t.region) == expected


@pytest.mark.parametrize("text,needle", [
    ("Mirror/Nginx", "lowercase"), ("mirror/nginx:-x", "tag"), ("", "repository"),
    ("mirror/nginx@sha256:" + "a" * 64, "digest"), ("x", "2-256"),
])
def test_bad_ecr_targets_are_named(text, needle):
    with pytest.raises(UsageError) as err:
        parse_target(text, None)
    assert f'"{text}"' in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize("source,prefix,expected", [
    ("nginx", "mirror", "mirror/dockerhub/library/nginx"),
    ("bitnami/redis", "", "dockerhub/bitnami/redis"),
    ("ghcr.io/o/r:t", "mirror", "mirror/ghcr.io/o/r"),
    ("localhost:5000/a/b", "m/", "m/localhost-5000/a/b"),
])
def test_default_target_naming_rule(source, prefix, expected):
    assert default_repository(parse(source), prefix) == expected


def test_credentials_from_environment_win(tmp_path):
    env = {"ECR_MIRROR_SOURCE_USERNAME": "u", "ECR_MIRROR_SOURCE_PASSWORD": "p",
           "DOCKER_CONFIG": str(tmp_path)}
    assert load_credentials("docker.io", env) == Credentials("u", "p")


@pytest.mark.parametrize("key,registry", [
    ("https://index.docker.io/v1/", "docker.io"), ("ghcr.io", "ghcr.io"),
    ("https://127.0.0.1:5000", "127.0.0.1:5000"),
])
def test_credentials_from_docker_config_auths(tmp_path, key, registry):
    auth = base64.b64encode(b"alice:tok:with:colons").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {key: {"auth": auth}}}))
    creds = load_credentials(registry, {"DOCKER_CONFIG": str(tmp_path)})
    assert creds == Credentials("alice", "tok:with:colons")
    assert load_credentials("other.example", {"DOCKER_CONFIG": str(tmp_path)}) is None


@pytest.mark.parametrize("text", [
    "mirror/x\n:v1",                                                # `$` matched before the newline
    "mirror/x\n",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com\n/mirror/x:v1",  # the host, same bug
])
def test_ecr_targets_are_validated_as_a_whole_string(text):
    with pytest.raises(UsageError) as err:
        parse_target(text, "v1")
    message = str(err.value)
    assert "\n" not in message and json.dumps(text) in message  # named, newline shown as \n


def test_a_tag_with_a_trailing_newline_is_not_a_version():
    from ecr_mirror.sync.tags import SemverRange, TagSelector, as_version

    assert as_version("1.2.3\n") is None
    selector = TagSelector(semver=SemverRange.parse(">=1"))
    assert selector.select(lambda: ["1.2.3\n", "1.2.4"]) == ["1.2.4"]
