"""testing/ecr_mirror_testing/corpus.py: the benchmark corpus, checked by reading the registry it was built in back."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import yaml

from ecr_mirror.reference import DOCKER_HUB
from ecr_mirror.sync.config import load_config
from ecr_mirror_testing.corpus import Corpus, build_corpus, main, parse_size, plan_layer_sizes
from ecr_mirror_testing.images import (
    ATTESTATION_DIGEST_KEY,
    ATTESTATION_TYPE,
    ATTESTATION_TYPE_KEY,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IN_TOTO_LAYER,
    OCI_INDEX,
    OCI_MANIFEST,
    get_manifest,
    session,
)
from ecr_mirror_testing.registry import LocalRegistry

pytestmark = pytest.mark.integration

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZE = 48 * MiB
SEED = "corpus-test"
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


@dataclass
class Stored:
    """What the registry serves, walked from its catalog and tag lists."""

    tags: dict[str, list[str]] = field(default_factory=dict)  # repo -> tags
    tops: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (repo, tag) -> digest, type
    docs: dict[tuple[str, str], dict] = field(default_factory=dict)  # (repo, digest) -> manifest
    manifests: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (repo, tag) -> digests
    blobs: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (repo, tag) -> blob sizes


def fetch(url: str, repo: str, ref: str) -> tuple[str, str, dict]:
    """GET a manifest; check the registry's digest and content type against the bytes."""
    resp = get_manifest(url, repo, ref)
    assert resp.status_code == 200, (repo, ref, resp.text)
    digest = "sha256:" + hashlib.sha256(resp.content).hexdigest()
    doc = resp.json()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Content-Type"] == doc["mediaType"]
    return digest, doc["mediaType"], doc


def walk(url: str, repo: str, digest: str, doc: dict, stored: Stored, manifests: set[str],
         blobs: dict[str, int]) -> None:
    stored.docs[repo, digest] = doc
    manifests.add(digest)
    if doc["mediaType"] in INDEXES:
        for child in doc["manifests"]:
            got, media_type, child_doc = fetch(url, repo, child["digest"])
            assert got == child["digest"] and media_type == child["mediaType"]
            walk(url, repo, got, child_doc, stored, manifests, blobs)
    else:
        for descriptor in (doc["config"], *doc["layers"]):
            blobs[descriptor["digest"]] = descriptor["size"]


def read_back(url: str) -> Stored:
    resp = session().get(f"{url}/v2/_catalog", params={"n": 1000})
    stored = Stored()
    for repo in resp.json()["repositories"]:
        stored.tags[repo] = session().get(f"{url}/v2/{repo}/tags/list").json()["tags"]
        for tag in stored.tags[repo]:
            digest, media_type, doc = fetch(url, repo, tag)
            stored.tops[repo, tag] = digest, media_type
            stored.manifests[repo, tag], stored.blobs[repo, tag] = set(), {}
            walk(url, repo, digest, doc, stored, stored.manifests[repo, tag], stored.blobs[repo, tag])
    return stored


@pytest.fixture(scope="module")
def registry():
    """A registry of our own (not the session's): the corpus is its whole catalog."""
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="module")
def corpus(registry) -> Corpus:
    return build_corpus(registry, SIZE, SEED)


@pytest.fixture(scope="module")
def stored(registry, corpus) -> Stored:
    return read_back(registry.url)


def repo_blob_sizes(stored: Stored) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for (repo, _), blobs in stored.blobs.items():
        out[repo].update(blobs)
    return out


def platform_images(stored: Stored, repo: str, digest: str) -> list[dict]:
    """The image manifests under a tag: itself, or an index's children but its attestations."""
    doc = stored.docs[repo, digest]
    if doc["mediaType"] not in INDEXES:
        return [doc]
    return [stored.docs[repo, d["digest"]] for d in doc["manifests"]
            if d.get("annotations", {}).get(ATTESTATION_TYPE_KEY) != ATTESTATION_TYPE]


# -- what is stored -----------------------------------------------------------------
def test_registry_holds_exactly_the_corpus(corpus, stored):
    assert sorted(stored.tags) == corpus.repos()
    assert len(stored.tags) >= 20 and sum(map(len, stored.tags.values())) >= 30
    assert all(re.fullmatch(r"[a-z0-9-]+/[a-z0-9.-]+", repo) for repo in stored.tags)
    official = [r for r in stored.tags if r.startswith("library/")]
    assert official and len(official) < len(stored.tags)  # library/<name> and <org>/<name>
    for repo, tags in stored.tags.items():
        assert sorted(tags) == sorted(corpus.tags(repo))
    assert len(corpus.images) == len(stored.tops)
    for image in corpus.images:
        key = image.repo, image.tag
        assert stored.tops[key] == (image.digest, image.media_type)
        assert stored.manifests[key] == set(image.manifests)
        assert len(image.manifests) == len(set(image.manifests))
        assert stored.blobs[key] == image.blobs


def test_every_blob_is_served_with_its_size(registry, corpus):
    for repo, blobs in corpus.repo_blobs().items():
        for digest, size in blobs.items():
            resp = session().head(f"{registry.url}/v2/{repo}/blobs/{digest}")
            assert resp.status_code == 200, (repo, digest)
            assert int(resp.headers["Content-Length"]) == size


def test_indexes_with_attestations_and_docker_v2_images(corpus, stored):
    kinds = {image.media_type for image in corpus.images}
    assert {OCI_INDEX, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST} <= kinds
    for image in (i for i in corpus.images if i.media_type == OCI_INDEX):
        doc = stored.docs[image.repo, image.digest]
        images = {d["digest"]: d for d in doc["manifests"]
                  if d.get("annotations", {}).get(ATTESTATION_TYPE_KEY) != ATTESTATION_TYPE}
        attestations = [d for d in doc["manifests"] if d not in images.values()]
        assert {(d["platform"]["os"], d["platform"]["architecture"]) for d in images.values()} == \
            {("linux", "amd64"), ("linux", "arm64")}
        assert sorted(a["annotations"][ATTESTATION_DIGEST_KEY] for a in attestations) == sorted(images)
        for attestation in attestations:
            att = stored.docs[image.repo, attestation["digest"]]
            assert att["mediaType"] == OCI_MANIFEST
            assert [layer["mediaType"] for layer in att["layers"]] == [IN_TOTO_LAYER]


def test_configs_are_valid_and_distinct(registry, stored):
    configs = []
    for repo, digest in {(repo, top) for (repo, _), (top, _) in stored.tops.items()}:
        for doc in platform_images(stored, repo, digest):
            config = session().get(f"{registry.url}/v2/{repo}/blobs/{doc['config']['digest']}").json()
            assert config["rootfs"] == {"type": "layers", "diff_ids": [la["digest"] for la in doc["layers"]]}
            assert config["os"] == "linux" and config["architecture"] in ("amd64", "arm64")
            configs.append(doc["config"]["digest"])
    assert len(set(configs)) == len(configs)


def test_layers_are_shared_across_repos_tags_and_platforms(corpus, stored):
    repos_of = defaultdict(set)
    for (repo, _), blobs in stored.blobs.items():
        for digest in filter(corpus.layers.__contains__, blobs):
            repos_of[digest].add(repo)
    assert max(map(len, repos_of.values())) >= 5  # an OS base under many repositories
    for repo, tags in stored.tags.items():
        tops = {stored.tops[repo, tag][0] for tag in tags}
        layers = [{la["digest"] for doc in platform_images(stored, repo, top) for la in doc["layers"]}
                  for top in tops]
        if len(layers) > 1 and repo != "library/busybox":  # busybox: nothing but its own layer
            shared = set.intersection(*layers)
            assert shared and all(own - shared for own in layers), repo  # same base, own top layers
    both_platforms = []  # a platform-independent layer: the same blob in both platforms of an index
    for (repo, _), (top, media_type) in stored.tops.items():
        if media_type == OCI_INDEX:
            layers = [{la["digest"] for la in doc["layers"]} for doc in platform_images(stored, repo, top)]
            both_platforms += set.intersection(*layers)
    assert both_platforms


# -- sizes ---------------------------------------------------------------------------
def test_describe_matches_the_registry(corpus, stored):
    described = corpus.describe()
    distinct = {d: s for blobs in stored.blobs.values() for d, s in blobs.items()}
    per_repo = repo_blob_sizes(stored)
    assert described["repos"] == len(stored.tags)
    assert described["tags"] == sum(map(len, stored.tags.values()))
    assert described["manifests"] == len(stored.docs)
    assert described["blobs"] == len(distinct) == len(corpus.blob_sizes)
    assert described["unique_bytes"] == sum(distinct.values()) == corpus.unique_bytes
    assert described["per_repo_bytes"] == sum(sum(b.values()) for b in per_repo.values())
    assert described["per_repo_bytes"] > described["unique_bytes"]
    assert described["images_by_media_type"][OCI_INDEX] >= 5
    assert described["blobs_shared_across_repos"] > 0 and described["blobs_shared_across_tags"] > 0
    assert abs(corpus.unique_bytes - SIZE) <= 0.05 * SIZE
    json.dumps(described)


def test_layer_sizes_span_kib_to_the_largest(corpus):
    layers = sorted(corpus.blob_sizes[d] for d in corpus.layers)
    assert layers[0] <= 16 * KiB and layers[-1] >= SIZE // 8
    assert corpus.describe()["largest_layer"] == layers[-1]


def test_default_size_plan():
    sizes = sorted(plan_layer_sizes().values())
    assert sizes[-1] >= 200 * MiB and sizes[0] <= 16 * KiB
    assert abs(sum(sizes) - 2 * GiB) <= 0.01 * 2 * GiB
    assert len(plan_layer_sizes(SIZE)) == len(sizes)  # scaled sizes, same shape
    with pytest.raises(ValueError, match="too small"):
        plan_layer_sizes(100 * KiB)


def test_big_layer_does_not_compress(registry, corpus):
    digest = max(corpus.layers, key=corpus.blob_sizes.__getitem__)
    repo = next(i.repo for i in corpus.images if digest in i.blobs)
    resp = session().get(f"{registry.url}/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes=0-{MiB - 1}"})
    assert resp.status_code == 206 and len(resp.content) == MiB
    assert len(zlib.compress(resp.content)) / MiB > 0.99


def test_same_seed_same_digests(corpus):
    with LocalRegistry() as other:
        again = build_corpus(other, SIZE, SEED)
    assert [(i.repo, i.tag, i.digest, i.manifests) for i in again.images] == \
        [(i.repo, i.tag, i.digest, i.manifests) for i in corpus.images]
    assert again.blob_sizes == corpus.blob_sizes


# -- configs for the copiers -------------------------------------------------------
def test_mirror_config_selects_exactly_the_corpus(corpus, stored):
    config = load_config(corpus.mirror_config("bench"), origin="corpus")
    assert not config.errors and config.target_prefix == "bench"
    selected = {}
    for entry in config.images:
        repo = entry.source.repository
        assert entry.source.registry == DOCKER_HUB and entry.selector.exact_only
        selected[repo] = entry.selector.select(lambda repo=repo: stored.tags[repo])
    assert selected == {repo: sorted(tags) for repo, tags in stored.tags.items()}


def test_skopeo_sync_yaml(registry, corpus):
    doc = yaml.safe_load(corpus.skopeo_sync_yaml(registry.host))
    assert doc == {registry.host: {"images": {r: corpus.tags(r) for r in corpus.repos()}, "tls-verify": False}}


@pytest.mark.parametrize("text, expected", [
    ("2GiB", 2 * GiB), ("512MiB", 512 * MiB), ("48M", 48 * MiB), ("1.5G", 3 * GiB // 2),
    ("1048576", MiB), ("4 KiB", 4 * KiB), ("10kb", 10 * KiB), ("1t", 1 << 40), ("7B", 7), (".5k", 512),
])
def test_parse_size_accepts(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", " ", "abc", "-1G", "1.2.3M", "5XB", "G", "1e9", "nan", "2 GiB!"])
def test_parse_size_rejects_naming_the_input(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_size(text)


def test_command_line_prints_the_summary(tmp_path, capsys):
    assert main(["--size", "4MiB", "--seed", "cli", "--root", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unique_bytes"] == 4 * MiB and summary["seed"] == "cli"
    assert (tmp_path / "docker/registry/v2/repositories/library/nginx").is_dir()  # the root is kept
    with pytest.raises(SystemExit) as exc:
        main(["--size", "lots"])
    assert exc.value.code == 2 and "'lots'" in capsys.readouterr().err
