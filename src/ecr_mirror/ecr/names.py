"""ECR target names: `repo[:tag]` or `ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo[:tag]`,
and the naming rule that maps a source image to a mirror repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from ..reference import Reference, quote

# Always used with fullmatch: `re.match(...$)` accepts a trailing newline.
_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_ECR_HOST = re.compile(r"(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")

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
    if not (2 <= len(name) <= 256) or not _REPOSITORY.fullmatch(name):
        raise UsageError(
            f"invalid ECR target {quote(given)}: repository {quote(name)} must be 2-256 characters of "
            "lowercase letters, digits and . _ - separated by /, e.g. mirror/library/nginx")
    return name


def parse_target(text: str, default_tag: str | None) -> EcrName:
    """Parse a target; a missing tag becomes `default_tag` (the source's tag)."""
    if not text or text != text.strip():
        raise UsageError(f"invalid ECR target {quote(text)}: give a repository such as mirror/nginx[:tag]")
    registry_id = region = None
    rest = text
    first, slash, remainder = text.partition("/")
    m = _ECR_HOST.fullmatch(first)
    if slash and m:
        registry_id, region, rest = m.group(1), m.group(2), remainder
    elif slash and ("." in first or ":" in first) and "amazonaws.com" in first:
        raise UsageError(f"invalid ECR target {quote(text)}: expected "
                         "ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo[:tag]")
    if "@" in rest:
        raise UsageError(f"invalid ECR target {quote(text)}: a target names a tag, not a digest")
    repository, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon and not _TAG.fullmatch(tag):
        raise UsageError(f"invalid ECR target {quote(text)}: tag {quote(tag)} must be 1-128 characters of "
                         "letters, digits, _ . - and not start with . or -")
    check_repository(repository, given=text)
    return EcrName(repository=repository, tag=tag if colon else default_tag,
                   registry_id=registry_id, region=region)


def check_prefix_text(prefix: str, *, what: str) -> str:
    """A repository prefix (`mirror`, `team/mirror`), validated like a repository name."""
    prefix = prefix.strip("/") if isinstance(prefix, str) else prefix
    if not isinstance(prefix, str) or not _REPOSITORY.fullmatch(prefix):
        raise UsageError(f"{what} {quote(str(prefix))} is not a valid repository prefix: use lowercase "
                         "letters, digits and . _ - separated by /, e.g. mirror")
    return prefix


def check_target(text: str, *, default_tag: str | None, prefix: str | None) -> EcrName:
    """THE target check: every entry point (CLI, console event, SQS record, the
    planner, config files) runs its target through this before anything is sent.

    The whole string must be a valid target (`parse_target`). With a `prefix`
    (the Lambda functions, whose IAM allows writes only under it) the repository
    must also lie under `prefix/`; without one (the CLI, with the user's own
    credentials) any repository is allowed.
    """
    name = parse_target(text, default_tag)
    if prefix is not None:
        prefix = check_prefix_text(prefix, what="the mirror prefix")
        if not name.repository.startswith(prefix + "/"):
            raise UsageError(f"target repository {quote(name.repository)} is outside the mirror prefix "
                             f'"{prefix}/"; the functions may only write there: use a target such as '
                             f'"{prefix}/{name.repository.rpartition("/")[2]}"')
    return name


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
