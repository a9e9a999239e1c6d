"""OCI 1.1 artifacts and referrers, pushed the way real tools push them.

An artifact is an OCI image manifest with an ``artifactType`` and, usually,
the empty config (the 2-byte ``{}`` blob of ``application/vnd.oci.empty.v1+json``);
a referrer is any manifest whose ``subject`` names another manifest. Registries
with the referrers API list them at ``/v2/<name>/referrers/<digest>``; others
(Debian's distribution 2.8 among them) get the fallback tag schema: an index
tagged ``sha256-<hex of the subject>`` listing them. cosign's legacy tags
(``sha256-<hex>.sig``, ``.att``, ``.sbom``) name one manifest each.

Everything is pushed as exact bytes with :mod:`ecr_mirror_testing.images`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .images import OCI_INDEX, OCI_MANIFEST, PushedImage, _descriptor, _dumps, push_blob, push_manifest

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
SBOM_TYPE = "application/spdx+json"
HELM_CONFIG_TYPE = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def subject_tag(digest: str, suffix: str = "") -> str:
    """The fallback tag of a subject: ``sha256-<hex>`` (+ ``.sig`` etc. for cosign)."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}{suffix}"


def descriptor_of(image: PushedImage, **extra: object) -> dict:
    """The descriptor an index (or a subject field) uses for a pushed manifest."""
    body = image.json
    if "artifactType" in body and "artifactType" not in extra:
        extra["artifactType"] = body["artifactType"]
    if body.get("annotations") and "annotations" not in extra:
        extra["annotations"] = body["annotations"]
    return _descriptor(image.media_type, image.digest, image.size, **extra)


def make_artifact(base_url: str, repo: str, ref: str | None, *, artifact_type: str | None,
                  layers: Iterable[tuple[str, bytes] | tuple[str, bytes, dict]],
                  subject: PushedImage | None = None, config_type: str = EMPTY_TYPE,
                  config: bytes = EMPTY_CONFIG, annotations: dict | None = None,
                  media_type_field: bool = True) -> PushedImage:
    """Push an OCI artifact manifest: its blobs, then the manifest under ``ref``
    (a tag; by digest when None). ``layers`` are (media type, bytes[, annotations]).
    ``media_type_field=False`` leaves out the optional top-level ``mediaType``."""
    config_digest = push_blob(base_url, repo, config)
    descriptors, blobs = [], [config_digest]
    for media_type, data, *rest in layers:
        blobs.append(push_blob(base_url, repo, data))
        descriptors.append(_descriptor(media_type, data, **({"annotations": rest[0]} if rest else {})))
    manifest: dict = {"schemaVersion": 2}
    if media_type_field:
        manifest["mediaType"] = OCI_MANIFEST
    if artifact_type:
        manifest["artifactType"] = artifact_type
    manifest["config"] = _descriptor(config_type, config)
    manifest["layers"] = descriptors
    if subject is not None:
        manifest["subject"] = _descriptor(subject.media_type, subject.digest, subject.size)
    if annotations:
        manifest["annotations"] = annotations
    raw = _dumps(manifest)
    digest = push_manifest(base_url, repo, ref, raw, OCI_MANIFEST)
    return PushedImage(repo=repo, ref=ref or digest, digest=digest, raw=raw, media_type=OCI_MANIFEST,
                       blobs=list(dict.fromkeys(blobs)))


def push_fallback_index(base_url: str, repo: str, subject_digest: str,
                        referrers: list[PushedImage]) -> PushedImage:
    """The referrers tag schema: an index tagged ``sha256-<hex>`` listing
    ``referrers`` (with their artifactType and annotations), replacing any
    earlier one, as clients do on registries without the referrers API."""
    tag = subject_tag(subject_digest)
    raw = _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                  "manifests": [descriptor_of(r) for r in referrers]})
    digest = push_manifest(base_url, repo, tag, raw, OCI_INDEX)
    return PushedImage(repo=repo, ref=tag, digest=digest, raw=raw, media_type=OCI_INDEX)


def make_sbom(base_url: str, repo: str, subject: PushedImage, *, seed: str = "sbom") -> PushedImage:
    """An SPDX SBOM attached to ``subject`` as an OCI 1.1 referrer (pushed by digest)."""
    document = _dumps({"spdxVersion": "SPDX-2.3", "name": f"{repo}@{subject.digest}", "seed": seed})
    return make_artifact(base_url, repo, None, artifact_type=SBOM_TYPE,
                         layers=[(SBOM_TYPE, document)], subject=subject)


def make_helm_chart(base_url: str, repo: str, tag: str, *, seed: str = "chart") -> PushedImage:
    """A Helm chart as ``helm push`` stores it: a non-image config type, one tarball layer."""
    config = _dumps({"apiVersion": "v2", "name": repo.rsplit("/", 1)[-1], "version": "1.0.0"})
    chart = b"\x1f\x8b" + f"helm chart {repo}:{tag}:{seed}".encode() * 16
    return make_artifact(base_url, repo, tag, artifact_type=None, config_type=HELM_CONFIG_TYPE,
                         config=config, layers=[(HELM_CHART_TYPE, chart)])
