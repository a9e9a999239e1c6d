"""Manifest graphs beyond one index of images, pushed as exact bytes.

Nested indexes (an index listing indexes, as multi-level build outputs and
referrers-by-tag indexes have them), indexes and manifests without the optional
``mediaType`` field, and images whose layers are uncompressed or zstd. Every
manifest is serialised once and pushed as those bytes (see :mod:`.images`).
"""

from __future__ import annotations

from .artifacts import make_artifact
from .images import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_UNCOMPRESSED,
    PushedImage,
    _descriptor,
    _dumps,
    _platform_dict,
    layer_bytes,
    make_index,
    push_manifest,
)

OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
#: The first four bytes of every zstd frame.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def push_index(base_url: str, repo: str, tag: str | None, children: list[PushedImage], *,
               media_type_field: bool = True, annotations: dict | None = None) -> PushedImage:
    """An OCI index over already pushed ``children`` (images, artifacts or indexes),
    each descriptor with the child's own media type (and platform, when it has one).
    ``media_type_field=False`` leaves out the optional top-level ``mediaType``."""
    descriptors = []
    for child in children:
        extra = {"platform": _platform_dict(child.platform)} if child.platform else {}
        descriptors.append(_descriptor(child.media_type, child.digest, child.size, **extra))
    body: dict = {"schemaVersion": 2}
    if media_type_field:
        body["mediaType"] = OCI_INDEX
    body["manifests"] = descriptors
    if annotations:
        body["annotations"] = annotations
    raw = _dumps(body)
    digest = push_manifest(base_url, repo, tag, raw, OCI_INDEX)
    return PushedImage(repo=repo, ref=tag or digest, digest=digest, raw=raw, media_type=OCI_INDEX,
                       children=list(children))


def make_nested_index(base_url: str, repo: str, tag: str | None, *, levels: int = 2,
                      platforms: tuple = (("linux", "amd64", None), ("linux", "arm64", None)),
                      seed: str = "nested") -> PushedImage:
    """``levels`` levels of index: the top index lists an index that lists an
    index ... down to a multi-platform index of images with attestations (Docker
    Hub's shape). Each level also lists an image of its own, so every level has
    both kinds of child. ``levels=1`` is a plain index."""
    inner = make_index(base_url, repo, tag if levels == 1 else None, platforms=list(platforms),
                       attestations=True, layer_size=2048 + levels)
    for level in range(2, levels + 1):
        sibling = make_layered_image(base_url, repo, None, [(OCI_LAYER_UNCOMPRESSED, layer_bytes(
            f"{repo}:{tag}:{seed}:{level}", 1500))])
        inner = push_index(base_url, repo, tag if level == levels else None, [inner, sibling],
                           annotations={"org.example.level": str(level)})
    return inner


def make_build_tool_index(base_url: str, repo: str, tag: str) -> PushedImage:
    """A multi-level index as some build tools publish it: the top index lists one
    index per OS family, each an index of platform images with their attestations."""
    linux = make_index(base_url, repo, None, platforms=[("linux", "amd64", None), ("linux", "arm64", "v8")])
    other = make_index(base_url, repo, None, platforms=[("freebsd", "amd64", None)], layer_size=3000)
    return push_index(base_url, repo, tag, [linux, other])


def make_layered_image(base_url: str, repo: str, ref: str | None, layers: list[tuple[str, bytes]], *,
                       media_type_field: bool = True) -> PushedImage:
    """An OCI image manifest whose layers have the given media types (e.g.
    uncompressed or zstd), with an OCI image config naming their diff ids."""
    config = _dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [_descriptor("", data)["digest"]
                                                               for _, data in layers]}})
    image = make_artifact(base_url, repo, ref, artifact_type=None, layers=layers, config_type=OCI_CONFIG,
                          config=config, media_type_field=media_type_field)
    image.platform = ("linux", "amd64", None)
    return image


def zstd_layer(seed: str, size: int = 3000) -> bytes:
    """Bytes that start like a zstd frame (registries and ECR store them as given)."""
    return ZSTD_MAGIC + layer_bytes(seed, size)
