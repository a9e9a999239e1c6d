"""ECR target names: `repo[:tag]` or `ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo[:tag]`,
and the naming rule that maps a source image to a mirror repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from ..reference import Reference

_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")

DOCKER_HUB_ALIAS = "dockerhub"


@dataclass(frozen=True)
class EcrName:
    repository: str
    tag: str | None = None
    registry_id: str | None = None
    region: str | None = None

    def __str__(self) -> str:
        host = f"{self.registry_id}.dkr.ecr.{self.region}.amazonaws.com/" if self.registry_id else ""
        return f"{host}{self.repository}" + (f":{self.tag}" if self.tag else "")


def check_repository(name: str, *, given: str) -> str:
    if not (2 <= len(name) <= 256) or not _REPOSITORY.match(name):
        raise UsageError(
            f'invalid ECR target "{given}": repository "{name}" must be 2-256 characters of '
            "lowercase letters, digits and . _ - separated by /, e.g. mirror/library/nginx")
    return name


def parse_target(text: str, default_tag: str | None) -> EcrName:
    """Parse a target; a missing tag becomes `default_tag` (the source's tag)."""
    if not text or text != text.strip():
        raise UsageError(f'invalid ECR target "{text}": give a repository such as mirror/nginx[:tag]')
    registry_id = region = None
    rest = text
    first, slash, remainder = text.partition("/")
    m = _ECR_HOST.match(first)
    if slash and m:
        registry_id, region, rest = m.group(1), m.group(2), remainder
    elif slash and ("." in first or ":" in first) and "amazonaws.com" in first:
        raise UsageError(f'invalid ECR target "{text}": expected ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo[:tag]')
    if "@" in rest:
        raise UsageError(f'invalid ECR target "{text}": a target names a tag, not a digest')
    repository, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon and not _TAG.match(tag):
        raise UsageError(f'invalid ECR target "{text}": tag "{tag}" must be 1-128 characters of '
                         "letters, digits, _ . - and not start with . or -")
    check_repository(repository, given=text)
    return EcrName(repository=repository, tag=tag if colon else default_tag,
                   registry_id=registry_id, region=region)


def default_repository(source: Reference, prefix: str) -> str:
    """The mirror repository for a source image when no target is given.

    `{prefix}/{registry alias}/{repository}`: Docker Hub is `dockerhub`, any
    other registry its host name with `:` as `-`. With prefix `mirror`:
    `nginx` → `mirror/dockerhub/library/nginx`,
    `ghcr.io/o/r` → `mirror/ghcr.io/o/r`, `localhost:5000/a` → `mirror/localhost-5000/a`.
    """
    alias = DOCKER_HUB_ALIAS if source.is_docker_hub else \
        source.registry.lower().replace(":", "-").strip("[]")
    prefix = prefix.strip("/")
    name = "/".join(p for p in (prefix, alias, source.repository) if p)
    return check_repository(name, given=name)
