"""The mirror config and tag selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_mirror.errors import UsageError
from ecr_mirror.sync.config import load_config
from ecr_mirror.sync.tags import SemverRange, as_version

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mirror-config.yaml"
TAGS = ["latest", "stable", "1", "1.25", "1.25.3", "1.26.0", "1.26.1", "1.27.0", "1.27.1-alpine",
        "2.0.0", "v2.1.0", "2.2.0-rc1", "mainline", "mainline-alpine", "stable-alpine"]


def select(yaml_text: str) -> list[str]:
    config = load_config(yaml_text)
    assert not config.errors, config.errors
    return config.images[0].selector.select(lambda: TAGS)


@pytest.mark.parametrize("selection,expected", [
    ("tags: [stable, latest]", ["latest", "stable"]),
    ("tags: ['*-alpine']", ["1.27.1-alpine", "mainline-alpine", "stable-alpine"]),
    ("tags: ['*-alpine']\n    exclude: [mainline*]", ["1.27.1-alpine", "stable-alpine"]),
    ("regex: ['^1\\.2[67]\\.\\d+$']", ["1.26.0", "1.26.1", "1.27.0"]),
    ("semver: '>=1.26 <2'", ["1.26.0", "1.26.1", "1.27.0"]),
    ("semver: '^2.0'", ["2.0.0", "v2.1.0"]),
    ("semver: '~1.26'", ["1.26.0", "1.26.1"]),
    ("semver: '=1.25'", ["1.25", "1.25.3"]),
    ("semver: '1.25.3 || >=2.1'", ["1.25.3", "v2.1.0"]),
    ("latest: 2", ["2.0.0", "v2.1.0"]),
    ("semver: '<2'\n    latest: 3", ["1.26.0", "1.26.1", "1.27.0"]),
    ("tags: [stable]\n    semver: '>=2'", ["2.0.0", "stable", "v2.1.0"]),
])
def test_tag_selection(selection, expected):
    assert select(f"images:\n  - source: nginx\n    {selection}\n") == expected


def test_exact_tags_need_no_tag_listing():
    config = load_config("images:\n  - source: nginx\n    tags: [stable, '1.27']\n")
    def no_listing():
        raise AssertionError("listed tags")
    assert config.images[0].selector.select(no_listing) == ["1.27", "stable"]


@pytest.mark.parametrize("tag,version", [("1", "1.0.0"), ("v1.2", "1.2.0"), ("1.2.3", "1.2.3"),
                                         ("1.2.3-alpine", None), ("latest", None), ("1.2.3.4", None)])
def test_only_plain_release_tags_are_versions(tag, version):
    v = as_version(tag)
    assert (str(v) if v else None) == version


@pytest.mark.parametrize("text", [">>1", "1.x", ">=1 <", "^", "abc"])
def test_bad_semver_range(text):
    with pytest.raises(ValueError) as err:
        SemverRange.parse(text)
    assert text.split()[0] in str(err.value) or text in str(err.value)


def test_one_bad_entry_never_stops_the_good_ones():
    config = load_config("""
images:
  - source: nginx
    tags: [stable]
  - source: Redis
    tags: ['7']
  - source: library/httpd
  - source: alpine
    tags: [latest]
    semver: '>>3'
  - source: busybox
    tags: [latest]
    colour: blue
  - source: ubuntu:22.04
    tags: [latest]
  - source: bitnami/redis
    regex: ['(']
  - source: debian
    tags: [bookworm]
    platforms: [linux]
  - source: node
    tags: [1.20]
""")
    assert [i.source.familiar() for i in config.images] == ["nginx"]
    errors = {e.entry: e.message for e in config.errors}
    assert "lowercase" in errors["images[1] (Redis)"]
    assert "tags, regex, semver or latest" in errors["images[2] (library/httpd)"]
    assert "semver" in errors["images[3] (alpine)"] and ">>3" in errors["images[3] (alpine)"]
    assert "colour" in errors["images[4] (busybox)"]
    assert "tags:" in errors["images[5] (ubuntu:22.04)"]
    assert "regex" in errors["images[6] (bitnami/redis)"]
    assert "platforms" in errors["images[7] (debian)"]
    assert "tags[0]" in errors["images[8] (node)"] and "quote" in errors["images[8] (node)"]


@pytest.mark.parametrize("text,needle", [
    ("images: [", "not valid YAML"),
    ("- a\n- b", "mapping"),
    ("registries: {}", "images"),
    ("images: {}", "images"),
    ("images: []\ndefaults: {targetPrefix: 3}", "targetPrefix"),
    ("images: []\nregistries: {docker.io: {password: x}}", "password"),
    ("images: []\ndefaults: {repository: {encryption: KMS}}", "kmsKey"),
])
def test_config_errors_name_the_field(text, needle):
    with pytest.raises(UsageError) as err:
        load_config(text, origin="mirror.yaml")
    assert "mirror.yaml" in str(err.value) and needle in str(err.value)


def test_the_shipped_example_is_valid():
    config = load_config(EXAMPLE.read_text())
    assert not config.errors
    assert len(config.images) >= 4
    assert config.registries["docker.io"].credentials_secrets


def test_registry_settings_several_credentials_and_a_reserve():
    config = load_config("""
registries:
  docker.io: {credentials: [hub-a, hub-b], reserve: 10}
  ghcr.io: {credentials: ghcr-token}
  registry.internal:5000: {insecure: true}
images: []
""")
    hub = config.registries["docker.io"]
    assert hub.credentials_secrets == ("hub-a", "hub-b") and hub.reserve == 10
    assert config.registries["ghcr.io"].credentials_secrets == ("ghcr-token",)
    assert config.registries["registry.internal:5000"].insecure


def test_an_unknown_field_is_named_with_its_place_and_the_closest_known_one():
    config = load_config("images:\n  - source: nginx\n    tags: ['1']\n  - source: redis\n    tagz: ['7']\n")
    [error] = config.errors
    assert error.message == "unknown field `tagz` in images[1]; did you mean `tags`?"
    with pytest.raises(UsageError, match=r"unknown field `imagez` at the top level; did you mean "
                                         r"`images`\?"):
        load_config("images: []\nimagez: []\n")
    with pytest.raises(UsageError, match=r"unknown field `scanOnPsh` in defaults.repository; did "
                                         r"you mean `scanOnPush`\?"):
        load_config("defaults: {repository: {scanOnPsh: true}}\nimages: []\n")
    with pytest.raises(UsageError, match=r"unknown field `zzz` at the top level$"):
        load_config("images: []\nzzz: 1\n")
