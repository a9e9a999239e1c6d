"""Image references are normalised exactly as the docker CLI does."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ecr_mirror.errors import MirrorError
from ecr_mirror.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    InvalidReference,
    Reference,
    parse,
)

H = "0123456789abcdef" * 4  # 64 lowercase hex
D = f"sha256:{H}"
D512 = f"sha512:{H * 2}"
HUB = "docker.io"

VALID = [
    # input, registry, repository, tag, digest, str(), familiar()
    ("nginx", HUB, "library/nginx", "latest", None,
     "docker.io/library/nginx:latest", "nginx:latest"),
    ("nginx:stable", HUB, "library/nginx", "stable", None,
     "docker.io/library/nginx:stable", "nginx:stable"),
    ("library/nginx", HUB, "library/nginx", "latest", None,
     "docker.io/library/nginx:latest", "nginx:latest"),
    ("docker.io/nginx", HUB, "library/nginx", "latest", None,
     "docker.io/library/nginx:latest", "nginx:latest"),
    ("index.docker.io/bitnami/redis", HUB, "bitnami/redis", "latest", None,
     "docker.io/bitnami/redis:latest", "bitnami/redis:latest"),
    ("index.docker.io/nginx", HUB, "library/nginx", "latest", None,
     "docker.io/library/nginx:latest", "nginx:latest"),
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None,
     "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    (f"127.0.0.1:5000/x@{D}", "127.0.0.1:5000", "x", None, D,
     f"127.0.0.1:5000/x@{D}", f"127.0.0.1:5000/x@{D}"),
    (f"ghcr.io/o/r:t@{D}", "ghcr.io", "o/r", "t", D,
     f"ghcr.io/o/r:t@{D}", f"ghcr.io/o/r:t@{D}"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None,
     "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("[2001:db8::1]/team/x:v2", "[2001:db8::1]", "team/x", "v2", None,
     "[2001:db8::1]/team/x:v2", "[2001:db8::1]/team/x:v2"),
    (f"nginx@{D}", HUB, "library/nginx", None, D,
     f"docker.io/library/nginx@{D}", f"nginx@{D}"),
    (f"nginx:1.27@{D}", HUB, "library/nginx", "1.27", D,
     f"docker.io/library/nginx:1.27@{D}", f"nginx:1.27@{D}"),
    (f"nginx@{D512}", HUB, "library/nginx", None, D512,
     f"docker.io/library/nginx@{D512}", f"nginx@{D512}"),
    ("docker.io/library/nginx:1.27-alpine", HUB, "library/nginx", "1.27-alpine", None,
     "docker.io/library/nginx:1.27-alpine", "nginx:1.27-alpine"),
    ("registry.example.com:443/team/app", "registry.example.com:443", "team/app", "latest", None,
     "registry.example.com:443/team/app:latest", "registry.example.com:443/team/app:latest"),
    ("localhost/foo", "localhost", "foo", "latest", None,
     "localhost/foo:latest", "localhost/foo:latest"),
    ("foo.bar/baz", "foo.bar", "baz", "latest", None,
     "foo.bar/baz:latest", "foo.bar/baz:latest"),
    ("my_registry/x", HUB, "my_registry/x", "latest", None,
     "docker.io/my_registry/x:latest", "my_registry/x:latest"),
    ("a/b/c/d:1", HUB, "a/b/c/d", "1", None,
     "docker.io/a/b/c/d:1", "a/b/c/d:1"),
    # "library/" is only dropped from the familiar form for one-level names.
    ("library/a/b", HUB, "library/a/b", "latest", None,
     "docker.io/library/a/b:latest", "library/a/b:latest"),
    # Separators: one '.', one or two '_', any number of '-'.
    ("x/a--b__c.d_e", HUB, "x/a--b__c.d_e", "latest", None,
     "docker.io/x/a--b__c.d_e:latest", "x/a--b__c.d_e:latest"),
    # Tags may be upper case and contain '.', '-' and '_'.
    ("nginx:LATEST_1.x-y", HUB, "library/nginx", "LATEST_1.x-y", None,
     "docker.io/library/nginx:LATEST_1.x-y", "nginx:LATEST_1.x-y"),
    # Docker quirks kept on purpose: a lone "host:port" is a name and a tag ...
    ("localhost:5000", HUB, "library/localhost", "5000", None,
     "docker.io/library/localhost:5000", "localhost:5000"),
    # ... and an upper-case first component is a registry host.
    ("Foo/bar", "Foo", "bar", "latest", None, "Foo/bar:latest", "Foo/bar:latest"),
]


@pytest.mark.parametrize(
    "text,registry,repository,tag,digest,full,familiar", VALID, ids=[v[0][:40] for v in VALID]
)
def test_parse_valid(text, registry, repository, tag, digest, full, familiar):
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert parse(str(ref)) == ref  # the normalised form round-trips
    assert parse(ref.familiar()) == ref


INVALID = [
    ("", 'empty; give a name like "nginx:stable"'),
    ("Nginx", 'repository names must be lowercase (try "nginx")'),
    ("ghcr.io/Org/App:V1", 'repository names must be lowercase (try "ghcr.io/org/app:V1")'),
    ("Foo/Bar", 'repository names must be lowercase (try "foo/bar")'),
    ("nginx@sha256:abc", "the digest must be sha256: followed by 64 lowercase hex characters"),
    (f"nginx@sha256:{H[:-1]}", "the digest must be sha256: followed by 64 lowercase hex characters"),
    (f"nginx@sha256:{H}0", "the digest must be sha256: followed by 64 lowercase hex characters"),
    (f"nginx@sha256:{H.upper()}", "the digest must be sha256: followed by 64 lowercase hex characters"),
    (f"nginx@sha512:{H}", "the digest must be sha512: followed by 128 lowercase hex characters"),
    (f"nginx@{H}", "the digest must be sha256: followed by 64 lowercase hex characters"),
    (f"nginx@md5:{H}", 'unsupported digest algorithm "md5"'),
    ("nginx@", "there is no digest after the '@'"),
    (f"nginx@{D}@{D}", "the digest must be sha256"),
    ("nginx:", "there is no tag after the ':'"),
    (f"nginx:@{D}", "there is no tag after the ':'"),
    ("nginx:" + "a" * 129, "the tag is 129 characters long; tags are at most 128"),
    ("nginx:-bad", 'the tag "-bad" is invalid'),
    ("nginx:bad!tag", 'the tag "bad!tag" is invalid'),
    ("nginx:a:b", 'the tag "a:b" is invalid'),
    (H, "cannot specify 64-byte hexadecimal strings"),
    ("a//b", "empty path component"),
    ("ghcr.io//x", "empty path component"),
    ("x/", "empty path component"),
    ("/x", "empty path component"),
    ("ghcr.io/", "empty path component"),
    ("-nginx", 'path component "-nginx" is invalid'),
    ("x/a..b", 'path component "a..b" is invalid'),
    ("a___b", 'path component "a___b" is invalid'),
    ("ngïnx", 'path component "ngïnx" is invalid'),
    ("a/" + "b" * 254, "the repository name is 256 characters long; the limit is 255"),
    ("x" * 300, "the repository name is 308 characters long; the limit is 255"),
    ("host:port/x", '"host:port" is not a valid registry host'),
    ("my_reg.io/x", '"my_reg.io" is not a valid registry host'),
    ("-bad.io/x", '"-bad.io" is not a valid registry host'),
    (" nginx", "contains whitespace"),
    ("nginx\n", "contains whitespace"),
    ("nginx :stable", "contains whitespace"),
]


@pytest.mark.parametrize("text,reason", INVALID, ids=[repr(t[:30]) for t, _ in INVALID])
def test_parse_invalid(text, reason):
    with pytest.raises(InvalidReference) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith(f"invalid image reference {json.dumps(text, ensure_ascii=False)}: ")
    assert reason in message
    assert info.value.reference == text


def test_error_taxonomy():
    with pytest.raises(ValueError) as info:
        parse("Nginx")
    err = info.value
    assert isinstance(err, InvalidReference) and isinstance(err, MirrorError)
    assert err.temporary is False
    assert err.reference == "Nginx"


def test_name_length_boundary_is_the_path_only():
    assert parse("a/" + "b" * 253).repository == "a/" + "b" * 253
    assert len(parse("registry.example.com/" + "a/" + "b" * 253).repository) == 255


def test_hosts_and_refs():
    hub = parse("nginx:stable")
    assert hub.is_docker_hub and hub.api_host == DOCKER_HUB_API == "registry-1.docker.io"
    assert hub.registry == DOCKER_HUB == "docker.io"
    assert hub.name == "docker.io/library/nginx"
    assert hub.ref == "stable"
    other = parse(f"ghcr.io/o/r:t@{D}")
    assert not other.is_docker_hub and other.api_host == "ghcr.io"
    assert other.ref == D  # the digest wins for fetching
    assert parse("localhost:5000/x").api_host == "localhost:5000"


def test_default_tag():
    assert parse("nginx", default_tag=None) == Reference(DOCKER_HUB, "library/nginx", None, None)
    assert parse("nginx", default_tag="stable").tag == "stable"
    assert parse("nginx:1", default_tag=None).tag == "1"
    assert parse(f"nginx@{D}", default_tag="stable").tag is None  # digest only: no tag added
    untagged = parse("nginx", default_tag=None)
    assert str(untagged) == "docker.io/library/nginx" and untagged.familiar() == "nginx"
    with pytest.raises(InvalidReference, match="neither a tag nor a digest"):
        _ = untagged.ref


def test_with_tag_and_digest():
    ref = parse("bitnami/redis")
    assert str(ref.with_tag("7.2")) == "docker.io/bitnami/redis:7.2"
    both = ref.with_tag("7.2").with_digest(D)
    assert str(both) == f"docker.io/bitnami/redis:7.2@{D}" and both.ref == D
    assert both.with_tag("8").digest == D  # like docker's WithTag, the digest is kept
    with pytest.raises(InvalidReference, match=r"the tag .* is invalid"):
        ref.with_tag(".x")
    with pytest.raises(InvalidReference, match="64 lowercase hex"):
        ref.with_digest("sha256:abc")


def test_with_tag_keeps_every_other_field():
    """with_tag builds its copy field by field (cheaper than dataclasses.replace): a
    field added to Reference and not copied there would be lost."""
    both = parse(f"registry.test:5000/team/app:1@{D}")
    assert both.with_tag("2") == dataclasses.replace(both, tag="2")


def test_reference_is_frozen_and_hashable():
    ref = parse("nginx")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
    assert len({ref, parse("docker.io/library/nginx:latest")}) == 1
