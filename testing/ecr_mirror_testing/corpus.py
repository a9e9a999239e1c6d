"""Benchmark corpus: a synthetic mirror set in a local registry, shaped like a real one.

:func:`build_corpus` fills a :class:`~ecr_mirror_testing.registry.LocalRegistry`
with 24 Docker Hub-like repositories (``library/<name>``, ``<org>/<name>``)
and 51 tags: multi-arch OCI indexes (linux/amd64 + linux/arm64) with BuildKit
attestation manifests, Docker manifest lists and single-arch Docker v2 images,
a few tags being aliases of others. Layers are shared the way real ones are:
OS base families (debian, alpine, ubuntu, distroless) and runtimes built on
them (python, node, jre, cuda) across repositories; a repository's tags share
everything but their top layer(s); an index's platform-independent "assets"
layer is the same blob in both platforms. Layer sizes go from 1 KiB to several
hundred MiB, and the distinct blobs add up to ``total_bytes`` (default 2 GiB):
a smaller total scales the layer sizes (none under 1 KiB), never the shape.
Layer bytes are pseudo-random, so nothing compresses, and everything is
deterministic for a given ``(total_bytes, seed)``.

Blobs are written straight into the registry's storage
(``LocalRegistry.write_blob``, no HTTP) and layers are cross-repository
mounted into the other repositories that use them, so 2 GiB takes seconds;
manifests go through the registry's HTTP API, which checks every reference.
Run it for a look::

    .venv/bin/python -m ecr_mirror_testing.corpus [--size 2GiB] [--seed S] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import yaml

from .images import (
    ATTESTATION_DIGEST_KEY,
    ATTESTATION_TYPE,
    ATTESTATION_TYPE_KEY,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IN_TOTO_LAYER,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Platform,
    _check,
    _config,
    _descriptor,
    _dumps,
    _platform_dict,
    push_manifest,
    random_blob_chunks,
    session,
    sha256_digest,
)
from .registry import LocalRegistry

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
DEFAULT_TOTAL = 2 * GiB
DEFAULT_SEED = "ecr-mirror-bench"
MIN_LAYER = 1 * KiB  # no layer is scaled below this
AMD64: Platform = ("linux", "amd64", None)
ARM64: Platform = ("linux", "arm64", "v8")
_PROVENANCE = "https://slsa.dev/provenance/v0.2"
_PLACEHOLDER = "sha256:" + "0" * 64
_WORKERS = 4


# -- the plan ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Family:
    """A base image stack: its layers' planned sizes (bottom first), above ``parent``'s."""

    layers: tuple[int, ...]
    parent: str | None = None


@dataclass(frozen=True)
class _Repo:
    """One repository: every tag is ``family + shared (+ assets) + top``, per platform."""

    name: str
    kind: str  # OCI_INDEX (with attestations), DOCKER_MANIFEST_LIST or DOCKER_MANIFEST
    family: str | None
    tags: tuple[str, ...]
    shared: tuple[int, ...] = ()  # in every tag
    top: tuple[int, ...] = (8 * KiB,)  # each tag its own
    assets: int = 0  # an index's platform-independent layer: the same blob in every platform
    aliases: tuple[tuple[str, str], ...] = ()  # (tag, the tag it points at)

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return (AMD64,) if self.kind == DOCKER_MANIFEST else (AMD64, ARM64)


# Planned sizes add up to about 2 GiB, a third of it in the multi-arch images.
FAMILIES: dict[str, _Family] = {
    "debian": _Family((34 * MiB, 2_600 * KiB, 3 * KiB)),
    "alpine": _Family((3_400 * KiB,)),
    "ubuntu": _Family((27 * MiB, 2 * KiB)),
    "distroless": _Family((700 * KiB, 1_900 * KiB, 110 * KiB)),
    "python": _Family((14 * MiB, 3 * MiB, 240 * KiB), "debian"),
    "node": _Family((30 * MiB, 1_800 * KiB, 4 * KiB), "debian"),
    "jre": _Family((16 * MiB, 44 * MiB), "ubuntu"),
    "cuda": _Family((4 * MiB, 236 * MiB, 12 * KiB), "ubuntu"),
}

REPOS: tuple[_Repo, ...] = (
    # multi-arch OCI indexes with attestations
    _Repo("library/nginx", OCI_INDEX, "debian", ("1.27", "1.26"), (18 * MiB, 6 * KiB), (3 * KiB, 1 * KiB),
          aliases=(("mainline", "1.27"),)),
    _Repo("library/python", OCI_INDEX, "python", ("3.13", "3.12", "3.11"), (2 * KiB,), (15 * MiB, 9 * KiB)),
    _Repo("library/node", OCI_INDEX, "node", ("22", "20"), (4 * MiB,), (12 * MiB, 3 * KiB)),
    _Repo("library/alpine", OCI_INDEX, "alpine", ("3.20", "3.19"), (), (2 * KiB,),
          aliases=(("latest", "3.20"),)),
    _Repo("library/golang", OCI_INDEX, "debian", ("1.23", "1.22"), (22 * MiB,), (30 * MiB, 5 * KiB)),
    _Repo("library/redis", OCI_INDEX, "debian", ("7.4", "7.2"), (1 * KiB, 5 * MiB), (12 * KiB, 2 * KiB)),
    _Repo("grafana/grafana", OCI_INDEX, "alpine", ("11.3.0", "11.2.2"), (12 * MiB,), (36 * MiB, 6 * KiB),
          assets=28 * MiB),
    _Repo("myorg/web", OCI_INDEX, "node", ("2.8.0", "2.7.3"), (16 * MiB,), (48 * KiB, 2 * KiB),
          assets=5 * MiB),
    # Docker manifest lists (Docker v2 children, no attestations)
    _Repo("library/busybox", DOCKER_MANIFEST_LIST, None, ("1.37", "1.36"), (), (2 * MiB,),
          aliases=(("latest", "1.37"),)),
    _Repo("library/memcached", DOCKER_MANIFEST_LIST, "debian", ("1.6",), (), (1_500 * KiB, 3 * KiB)),
    # single-arch Docker v2 schema2 images
    _Repo("library/postgres", DOCKER_MANIFEST, "debian", ("17", "16"), (8 * MiB, 4 * KiB),
          (38 * MiB, 9 * KiB)),
    _Repo("library/ubuntu", DOCKER_MANIFEST, "ubuntu", ("24.04",), (), (1 * KiB,),
          aliases=(("noble", "24.04"),)),
    _Repo("library/debian", DOCKER_MANIFEST, "debian", ("bookworm", "bookworm-slim"), (), (2 * KiB,)),
    _Repo("library/eclipse-temurin", DOCKER_MANIFEST, "jre", ("21-jre", "17-jre"), (1 * KiB,), (4 * KiB,)),
    _Repo("jenkins/jenkins", DOCKER_MANIFEST, "jre", ("2.479.1-lts-jdk17", "2.462.3-lts-jdk17"),
          (24 * MiB, 2 * KiB), (88 * MiB, 6 * KiB)),
    _Repo("pytorch/pytorch", DOCKER_MANIFEST, "cuda",
          ("2.5.1-cuda12.4-cudnn9-runtime", "2.5.0-cuda12.4-cudnn9-runtime"), (340 * MiB,),
          (9 * MiB, 4 * KiB)),
    _Repo("nvidia/cuda", DOCKER_MANIFEST, "cuda", ("12.4.1-runtime-ubuntu22.04",), (), (3 * KiB,)),
    _Repo("bitnami/postgresql", DOCKER_MANIFEST, "debian", ("17.2.0", "16.6.0"), (14 * MiB,),
          (32 * MiB, 7 * KiB)),
    _Repo("prom/prometheus", DOCKER_MANIFEST, "distroless", ("v2.55.1", "v2.54.1"), (3 * KiB,),
          (52 * MiB, 2 * KiB)),
    _Repo("hashicorp/vault", DOCKER_MANIFEST, "alpine", ("1.18", "1.17"), (900 * KiB,), (64 * MiB,)),
    _Repo("myorg/api", DOCKER_MANIFEST, "python", ("1.4.2", "1.4.1", "1.4.0"), (26 * MiB, 1 * KiB),
          (180 * KiB, 2 * KiB)),
    _Repo("myorg/worker", DOCKER_MANIFEST, "python", ("1.4.2", "1.4.1"), (21 * MiB,), (96 * KiB, 1 * KiB)),
    _Repo("myorg/gateway", DOCKER_MANIFEST, "distroless", ("0.9.1", "0.9.0"), (), (13 * MiB, 1 * KiB)),
    _Repo("acme/billing", DOCKER_MANIFEST, "jre", ("3.2.0", "3.1.4"), (18 * MiB,), (40 * KiB, 1 * KiB)),
)


@dataclass(frozen=True)
class _Child:
    """One platform image of a tag: its layers as keys of the layer plan, bottom first."""

    platform: Platform
    layers: tuple[str, ...]


def _arch(platform: Platform) -> str:
    return "/".join(p for p in platform[1:] if p)


def _family_layers(name: str | None, platform: Platform) -> list[tuple[str, int]]:
    if name is None:
        return []
    family = FAMILIES[name]
    own = [(f"{name}/{i}@{_arch(platform)}", size) for i, size in enumerate(family.layers)]
    return _family_layers(family.parent, platform) + own


def _plan() -> tuple[dict[str, int], dict[tuple[str, str], list[_Child]]]:
    """Planned layer sizes by key, and the platform images of every (repo, tag) to build."""
    sizes: dict[str, int] = {}
    images: dict[tuple[str, str], list[_Child]] = {}
    for repo in REPOS:
        for tag in repo.tags:
            children = []
            for platform in repo.platforms:
                arch = _arch(platform)
                layers = _family_layers(repo.family, platform)
                layers += [(f"{repo.name}/shared/{i}@{arch}", s) for i, s in enumerate(repo.shared)]
                layers += [(f"{repo.name}/assets", repo.assets)] if repo.assets else []
                layers += [(f"{repo.name}:{tag}/top/{i}@{arch}", s) for i, s in enumerate(repo.top)]
                sizes.update(layers)
                children.append(_Child(platform, tuple(key for key, _ in layers)))
            images[repo.name, tag] = children
    return sizes, images


def _config_doc(repo: str, tag: str, platform: Platform, diff_ids: list[str]) -> dict:
    """A valid image config, distinct per (repo, tag, platform)."""
    return _config(platform, diff_ids, {"config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Labels": {"org.opencontainers.image.title": repo, "org.opencontainers.image.version": tag}}})


def _overhead(images: dict[tuple[str, str], list[_Child]]) -> int:
    """Bytes of the configs and attestation blobs (digests are all the same length)."""
    total = 0
    for (repo, tag), children in images.items():
        for child in children:
            total += len(_dumps(_config_doc(repo, tag, child.platform, [_PLACEHOLDER] * len(child.layers))))
            if _repo(repo).kind == OCI_INDEX:
                total += sum(map(len, _attestation_blobs(repo, _PLACEHOLDER)))
    return total


def _attestation_blobs(repo: str, subject: str) -> tuple[bytes, bytes]:
    """The in-toto statement and the config of a BuildKit attestation manifest for ``subject``
    (as ecr_mirror_testing.images._make_attestation makes them)."""
    statement = _dumps({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": _PROVENANCE,
                        "subject": [{"name": f"pkg:docker/{repo}",
                                     "digest": {"sha256": subject.split(":", 1)[1]}}],
                        "predicate": {"builder": {"id": "ecr-mirror-bench"}}})
    config = _dumps({"architecture": "unknown", "os": "unknown", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [sha256_digest(statement)]}})
    return statement, config


def _repo(name: str) -> _Repo:
    return next(r for r in REPOS if r.name == name)


def _scale(plan: dict[str, int], target: int) -> dict[str, int]:
    """The planned sizes scaled to add up to ``target`` exactly, none under MIN_LAYER."""

    def scaled(f: float) -> dict[str, int]:
        return {key: max(MIN_LAYER, int(size * f)) for key, size in plan.items()}

    lo, hi = 0.0, target / sum(plan.values())  # scaled(hi) adds up to at least target
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(scaled(mid).values()) <= target else (lo, mid)
    sizes = scaled(lo)
    largest = max(sizes, key=sizes.__getitem__)
    sizes[largest] += target - sum(sizes.values())
    return sizes


def _layer_sizes(total_bytes: int, plan: dict[str, int], images: dict[tuple[str, str], list[_Child]]
                 ) -> dict[str, int]:
    overhead = _overhead(images)
    least = overhead + MIN_LAYER * len(plan)
    if total_bytes < least:
        raise ValueError(f"a corpus of {total_bytes} bytes is too small: it takes at least {least} bytes "
                         f"({len(plan)} layers of {MIN_LAYER} bytes or more, {overhead} bytes of configs "
                         "and attestations)")
    return _scale(plan, total_bytes - overhead)


def plan_layer_sizes(total_bytes: int = DEFAULT_TOTAL) -> dict[str, int]:
    """The size of every distinct layer of a ``total_bytes`` corpus, by plan key (no I/O)."""
    return _layer_sizes(total_bytes, *_plan())


# -- the corpus -------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusImage:
    """One tag of the corpus and everything it references."""

    repo: str  # e.g. "library/nginx"
    tag: str  # e.g. "1.27"
    digest: str  # of the tagged manifest (index or manifest)
    media_type: str  # of the tagged manifest
    manifests: tuple[str, ...]  # every manifest of the image: the top one, children, attestations
    blobs: dict[str, int]  # every blob (configs and layers, of every child) -> size


@dataclass
class Corpus:
    """What :func:`build_corpus` stored in the registry."""

    images: list[CorpusImage]
    blob_sizes: dict[str, int]  # every distinct blob -> size
    layers: frozenset[str] = frozenset()  # the image layers among the blobs (not configs, not attestations)
    seed: str = DEFAULT_SEED
    total_bytes: int = 0  # as requested

    def repos(self) -> list[str]:
        """Distinct repositories, sorted."""
        return sorted({image.repo for image in self.images})

    def tags(self, repo: str) -> list[str]:
        """The tags of ``repo``, in corpus order."""
        return [image.tag for image in self.images if image.repo == repo]

    def repo_blobs(self) -> dict[str, dict[str, int]]:
        """repo -> its distinct blobs -> size."""
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for image in self.images:
            out[image.repo].update(image.blobs)
        return dict(out)

    @property
    def unique_bytes(self) -> int:
        """Bytes of the distinct blobs: the least a copier with cross-repo mounts must read."""
        return sum(self.blob_sizes.values())

    @property
    def per_repo_bytes(self) -> int:
        """Sum over repos of their distinct blobs: the least without cross-repo mounts."""
        return sum(sum(blobs.values()) for blobs in self.repo_blobs().values())

    def describe(self) -> dict:
        """A JSON-able summary."""
        by_type: dict[str, int] = defaultdict(int)
        for image in self.images:
            by_type[image.media_type] += 1
        repos_of: dict[str, set[str]] = defaultdict(set)
        tags_of: dict[tuple[str, str], set[str]] = defaultdict(set)  # (repo, blob) -> top digests
        for image in self.images:
            for blob in image.blobs:
                repos_of[blob].add(image.repo)
                tags_of[image.repo, blob].add(image.digest)  # an alias is not another tag's content
        layer_sizes = [self.blob_sizes[d] for d in self.layers]
        return {
            "seed": self.seed,
            "requested_bytes": self.total_bytes,
            "repos": len(self.repos()),
            "tags": len(self.images),
            "images_by_media_type": dict(sorted(by_type.items())),
            "manifests": len({(image.repo, m) for image in self.images for m in image.manifests}),
            "blobs": len(self.blob_sizes),
            "layers": len(self.layers),
            "unique_bytes": self.unique_bytes,
            "per_repo_bytes": self.per_repo_bytes,
            "largest_layer": max(layer_sizes, default=0),
            "smallest_layer": min(layer_sizes, default=0),
            "blobs_shared_across_repos": sum(len(repos) > 1 for repos in repos_of.values()),
            "blobs_shared_across_tags": len({blob for (_, blob), tops in tags_of.items() if len(tops) > 1}),
        }

    def mirror_config(self, target_prefix: str = "mirror") -> str:
        """ecr-mirror's YAML config selecting exactly the corpus's tags (Docker Hub names)."""
        lines = [(f"# ecr_mirror_testing/corpus.py, seed {self.seed!r}: {len(self.repos())} repositories, "
                  f"{len(self.images)} tags, {self.unique_bytes} bytes of distinct blobs"),
                 "defaults:", f"  targetPrefix: {json.dumps(target_prefix)}", "images:"]
        for repo in self.repos():
            lines += [f"  - source: {repo}", f"    tags: {json.dumps(self.tags(repo))}"]
        return "\n".join(lines) + "\n"

    def skopeo_sync_yaml(self, registry_host: str) -> str:
        """A ``skopeo sync --src yaml`` file for the corpus at ``registry_host`` (plain HTTP)."""
        doc = {registry_host: {"images": {repo: self.tags(repo) for repo in self.repos()},
                               "tls-verify": False}}
        return yaml.safe_dump(doc, sort_keys=False)


# -- building ---------------------------------------------------------------------
def _mount(base_url: str, repo: str, digest: str, source_repo: str) -> None:
    """Cross-repository mount: link ``source_repo``'s blob into ``repo`` (201, no upload)."""
    _check(session().post(f"{base_url}/v2/{repo}/blobs/uploads/",
                          params={"mount": digest, "from": source_repo}), 201)


def _chunks(size: int, seed: str) -> Iterable[bytes]:
    # A pool no bigger than the blob: drawing 8 MiB for a 1 KiB layer would dominate.
    return random_blob_chunks(size, seed, chunk=max(64, min(size, 8 * MiB)))


@dataclass
class _Builder:
    """Writes the layers, then pushes the repositories (a few at a time)."""

    reg: LocalRegistry
    sizes: dict[str, int]  # layer key -> size
    digests: dict[str, str] = field(default_factory=dict)  # layer key -> digest
    owners: dict[str, str] = field(default_factory=dict)  # layer key -> repo it was written into

    def write_layers(self, images: dict[tuple[str, str], list[_Child]], seed: str) -> None:
        for (repo, _), children in images.items():
            for child in children:
                for key in child.layers:
                    self.owners.setdefault(key, repo)
        keys = sorted(self.owners, key=self.sizes.__getitem__, reverse=True)  # big ones first
        def write(key: str) -> str:
            return self.reg.write_blob(self.owners[key], _chunks(self.sizes[key], f"{seed}:{key}"))

        with ThreadPoolExecutor(_WORKERS) as pool:
            self.digests.update(zip(keys, pool.map(write, keys), strict=True))

    def push_repo(self, repo: _Repo, images: dict[tuple[str, str], list[_Child]]) -> list[CorpusImage]:
        """Mount the layers ``repo`` lacks, push its tags (children by digest), then its aliases."""
        url, mounted, out = self.reg.url, set(), {}
        for tag in repo.tags:
            for key in (k for child in images[repo.name, tag] for k in child.layers):
                if self.owners[key] != repo.name and key not in mounted:
                    _mount(url, repo.name, self.digests[key], self.owners[key])
                    mounted.add(key)
            out[tag] = self.push_tag(repo, tag, images[repo.name, tag])
        for alias, target in repo.aliases:
            image, raw = out[target]
            push_manifest(url, repo.name, alias, raw, image.media_type)
            out[alias] = CorpusImage(repo.name, alias, image.digest, image.media_type, image.manifests,
                                     image.blobs), raw
        return [image for image, _ in out.values()]

    def push_tag(self, repo: _Repo, tag: str, children: list[_Child]) -> tuple[CorpusImage, bytes]:
        """Push one tag: configs, manifests, attestations, the index; return it and its raw top manifest."""
        url, oci, single = self.reg.url, repo.kind == OCI_INDEX, repo.kind == DOCKER_MANIFEST
        layer_type, config_type, manifest_type = (
            (OCI_LAYER, OCI_CONFIG, OCI_MANIFEST) if oci else (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST))
        blobs: dict[str, int] = {}
        manifests: list[str] = []
        descriptors: list[dict] = []
        for child in children:
            layers = {self.digests[k]: self.sizes[k] for k in child.layers}
            # Random "layers" are their own uncompressed content: diff_id = digest.
            config = _dumps(_config_doc(repo.name, tag, child.platform, list(layers)))
            blobs[self.reg.write_blob(repo.name, [config])] = len(config)
            blobs.update(layers)
            raw = _dumps({"schemaVersion": 2, "mediaType": manifest_type,
                          "config": _descriptor(config_type, config),
                          "layers": [_descriptor(layer_type, d, s) for d, s in layers.items()]})
            digest = push_manifest(url, repo.name, tag if single else None, raw, manifest_type)
            manifests.append(digest)
            if single:
                return CorpusImage(repo.name, tag, digest, manifest_type, (digest,), blobs), raw
            descriptors.append(_descriptor(manifest_type, digest, len(raw),
                                           platform=_platform_dict(child.platform)))
            if oci:
                att_digest, att_size = self.push_attestation(repo.name, digest, blobs)
                manifests.append(att_digest)
                descriptors.append(_descriptor(
                    OCI_MANIFEST, att_digest, att_size, platform={"architecture": "unknown", "os": "unknown"},
                    annotations={ATTESTATION_DIGEST_KEY: digest, ATTESTATION_TYPE_KEY: ATTESTATION_TYPE}))
        raw = _dumps({"schemaVersion": 2, "mediaType": repo.kind, "manifests": descriptors})
        digest = push_manifest(url, repo.name, tag, raw, repo.kind)
        return CorpusImage(repo.name, tag, digest, repo.kind, (digest, *manifests), blobs), raw

    def push_attestation(self, repo: str, subject: str, blobs: dict[str, int]) -> tuple[str, int]:
        """Push ``subject``'s attestation manifest by digest, noting its blobs; return (digest, size)."""
        statement, config = _attestation_blobs(repo, subject)
        for blob in (statement, config):
            blobs[self.reg.write_blob(repo, [blob])] = len(blob)
        raw = _dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(OCI_CONFIG, config),
                      "layers": [_descriptor(IN_TOTO_LAYER, statement,
                                             annotations={"in-toto.io/predicate-type": _PROVENANCE})]})
        return push_manifest(self.reg.url, repo, None, raw, OCI_MANIFEST), len(raw)


def build_corpus(registry: LocalRegistry, total_bytes: int = DEFAULT_TOTAL,
                 seed: str = DEFAULT_SEED) -> Corpus:
    """Store the corpus in ``registry`` (running); its distinct blobs add up to ``total_bytes``.

    Deterministic: the same ``(total_bytes, seed)`` gives the same digests.
    Building into a registry that already holds the same corpus is harmless.
    """
    plan, images = _plan()
    builder = _Builder(registry, _layer_sizes(total_bytes, plan, images))
    builder.write_layers(images, seed)
    with ThreadPoolExecutor(_WORKERS) as pool:
        per_repo = list(pool.map(lambda repo: builder.push_repo(repo, images), REPOS))
    corpus_images = [image for images_of_repo in per_repo for image in images_of_repo]
    blob_sizes: dict[str, int] = {}
    for image in corpus_images:
        blob_sizes.update(image.blobs)
    return Corpus(corpus_images, blob_sizes, frozenset(builder.digests.values()), seed, total_bytes)


# -- sizes and the command line -------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB,
          "g": GiB, "gb": GiB, "gib": GiB, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"2GiB"``, ``"512MiB"``, ``"48M"``, ``"1.5G"``, ``"1048576"`` -> bytes.

    Units are powers of 1024 however spelt (K, KB, KiB, ...; case-insensitive);
    a fraction of a byte is dropped. Anything else raises ValueError naming the input.
    """
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if unit is None:
        raise ValueError(f"invalid size {text!r}: give bytes or a number with a unit, "
                         "e.g. 2GiB, 512MiB, 48M, 1.5G (K, M, G, T are powers of 1024)")
    try:
        return int(Decimal(match.group(1)) * unit)
    except InvalidOperation:  # pragma: no cover - the pattern only lets decimals through
        raise ValueError(f"invalid size {text!r}") from None


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=_size_arg, default=DEFAULT_TOTAL,
                        help="total bytes of the distinct blobs, e.g. 2GiB (default), 48MiB")
    parser.add_argument("--seed", default=DEFAULT_SEED, help=f"default {DEFAULT_SEED!r}")
    parser.add_argument("--root", help="registry storage directory, kept afterwards "
                                       "(default: a temporary one)")
    args = parser.parse_args(argv)
    with LocalRegistry(args.root) as reg:
        started = time.monotonic()
        corpus = build_corpus(reg, args.size, args.seed)
        print(f"built in {time.monotonic() - started:.1f} s in {reg.root}", file=sys.stderr)
    print(json.dumps(corpus.describe(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
