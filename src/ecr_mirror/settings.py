"""Every setting, defined once: its type, its default and what it means.

Three ways in: `MirrorSettings.from_env` (the Lambda functions' environment),
`MirrorSettings.from_args` (the CLI's options) and `merged_with` (a mirror
config's registries and repository defaults). Settings are frozen: what
changes from one call to the next (the time left, a target's region) is an
argument of that call, never state here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import UsageError
from .registry import RetryPolicy

if TYPE_CHECKING:
    from .sync.config import MirrorConfig

#: Repositories are named `{prefix}/...`; the functions may write only there.
DEFAULT_PREFIX = "mirror"
#: Blobs (and index children) copied in parallel per image.
DEFAULT_CONCURRENCY = 4
#: HEADs in flight per source registry while planning (shared by every entry).
DEFAULT_PLAN_CONCURRENCY = 16
#: A config estimated above this many tags is planned in shards (sync/shards.py),
#: each of at most about this many, by planner invocations fed through SQS.
DEFAULT_PLAN_SHARD_TAGS = 2000
#: Seconds before a Lambda's timeout at which a copy stops (defers).
DEFAULT_STOP_MARGIN_SECONDS = 60
#: Repositories made by ecr-mirror scan images on push.
DEFAULT_SCAN_ON_PUSH = True
#: Tag mutability of the repositories ecr-mirror creates: MUTABLE or IMMUTABLE.
DEFAULT_TAG_MUTABILITY = "MUTABLE"
#: Days after which untagged images expire in the repositories ecr-mirror creates (0: never).
DEFAULT_UNTAGGED_EXPIRY_DAYS = 14
#: Tags one image entry with `prune: true` may untag per run (the config's `pruneMax`).
DEFAULT_PRUNE_MAX = 10
#: Mount a blob another mirrored repository holds instead of uploading it (ecr/mount.py).
DEFAULT_BLOB_MOUNTING = True


@dataclass(frozen=True)
class RepositorySettings:
    """How a repository is created when it is missing."""

    #: Turn on ECR's basic scan on push.
    scan_on_push: bool = DEFAULT_SCAN_ON_PUSH
    #: MUTABLE or IMMUTABLE.
    tag_mutability: str = DEFAULT_TAG_MUTABILITY
    #: AES256 or KMS.
    encryption: str = "AES256"
    #: The KMS key when `encryption` is KMS (None: ECR's AWS-managed key).
    kms_key: str | None = None
    #: A lifecycle policy expires untagged images this many days after their push (0: none).
    untagged_expiry_days: int = DEFAULT_UNTAGGED_EXPIRY_DAYS

    def __post_init__(self) -> None:
        if self.untagged_expiry_days < 0:
            raise UsageError("untagged expiry must be 0 (never) or a number of days, "
                             f"got {self.untagged_expiry_days}")

    @classmethod
    def chosen(cls, *, scan_on_push: bool = DEFAULT_SCAN_ON_PUSH,
               tag_mutability: str = DEFAULT_TAG_MUTABILITY,
               kms_key: str | None = None,
               untagged_expiry_days: int = DEFAULT_UNTAGGED_EXPIRY_DAYS) -> RepositorySettings:
        """The settings for these choices: a KMS key means KMS encryption."""
        return cls(scan_on_push=scan_on_push, tag_mutability=tag_mutability,
                   encryption="KMS" if kms_key else "AES256", kms_key=kms_key or None,
                   untagged_expiry_days=untagged_expiry_days)

    def create_arguments(self) -> dict[str, Any]:
        encryption: dict[str, str] = {"encryptionType": self.encryption}
        if self.encryption == "KMS" and self.kms_key:
            encryption["kmsKey"] = self.kms_key
        return {
            "imageTagMutability": self.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": self.scan_on_push},
            "encryptionConfiguration": encryption,
            "tags": [{"Key": "managed-by", "Value": "ecr-mirror"}],
        }


@dataclass(frozen=True)
class SourceRegistry:
    """How to reach one source registry."""

    #: Secrets Manager secrets (names or ARNs), each holding {"username", "password"};
    #: with several (two Docker Hub accounts), the next is used when one is spent.
    credentials_secrets: tuple[str, ...] = ()
    #: Pulls to keep in reserve: stop pulling (defer) when this many are left.
    reserve: int = 0
    #: Plain HTTP or unverified TLS.
    insecure: bool = False
    #: Reach the registry here instead of its own host, e.g. a local mirror or,
    #: in the demo and the tests, a local registry standing in for Docker Hub.
    endpoint: str | None = None

    def merged_with(self, config: SourceRegistry) -> SourceRegistry:
        """The config's entry over this (the environment's) one: the config says
        which secrets and whether insecure; an endpoint set here wins."""
        return SourceRegistry(
            credentials_secrets=config.credentials_secrets or self.credentials_secrets,
            reserve=max(config.reserve, self.reserve), insecure=config.insecure or self.insecure,
            endpoint=self.endpoint or config.endpoint)


@dataclass(frozen=True)
class MirrorSettings:
    """What a caller can set."""

    #: Repository prefix (see DEFAULT_PREFIX).
    prefix: str = DEFAULT_PREFIX
    #: Refuse targets outside `prefix/` (the Lambda functions, whose IAM allows
    #: writes only there). The CLI uses the prefix for naming only.
    enforce_prefix: bool = False
    #: Blobs copied in parallel per image; also sizes the ECR connection pool.
    concurrency: int = DEFAULT_CONCURRENCY
    #: HEADs in flight per source registry while planning; also sizes the pools.
    plan_concurrency: int = DEFAULT_PLAN_CONCURRENCY
    #: Source registry host -> how to reach it.
    registries: Mapping[str, SourceRegistry] = field(default_factory=dict)
    #: How missing repositories are created.
    repository: RepositorySettings = field(default_factory=RepositorySettings)
    #: The AWS region of every client (None: AWS_REGION, AWS_DEFAULT_REGION, the profile).
    region: str | None = None
    #: Retries of the source registry's requests.
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: A Lambda copy stops this many seconds before its timeout.
    stop_margin: float = float(DEFAULT_STOP_MARGIN_SECONDS)
    #: DynamoDB table of blob and tag leases shared by concurrent workers (None: no leases).
    lease_table: str | None = None
    #: EventBridge bus for `Image Mirrored` / `Image Failed` (events.py; None: no events).
    event_bus: str | None = None
    #: Try ECR blob mounts before uploads (needs `lease_table`: where blobs landed).
    blob_mounting: bool = DEFAULT_BLOB_MOUNTING
    #: ECR's registry endpoint instead of the one GetAuthorizationToken names (tests:
    #: the emulator's; plain http only on a loopback address).
    ecr_registry_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.plan_concurrency < 1:
            raise UsageError(f"plan concurrency must be at least 1, got {self.plan_concurrency}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MirrorSettings:
        """Settings for the Lambda functions, from their environment variables."""
        env = os.environ if env is None else env
        mutability = env.get("ECR_MIRROR_TAG_MUTABILITY", DEFAULT_TAG_MUTABILITY).upper()
        if mutability not in ("MUTABLE", "IMMUTABLE"):
            raise UsageError(f"ECR_MIRROR_TAG_MUTABILITY={mutability!r}: expected MUTABLE or IMMUTABLE")
        registries = source_registries(env)
        from .ecr.names import check_prefix_text

        return cls(
            # The function's own region (Lambda sets AWS_REGION): its role may write
            # nowhere else, so a target in another region is refused up front.
            region=env.get("AWS_REGION") or None,
            prefix=check_prefix_text(env.get("ECR_MIRROR_PREFIX", DEFAULT_PREFIX),
                                     what="ECR_MIRROR_PREFIX"),
            enforce_prefix=True,
            concurrency=_env_number(env, "ECR_MIRROR_CONCURRENCY", DEFAULT_CONCURRENCY, int),
            plan_concurrency=_env_number(env, "ECR_MIRROR_PLAN_CONCURRENCY",
                                         DEFAULT_PLAN_CONCURRENCY, int),
            registries=registries,
            stop_margin=_env_number(env, "ECR_MIRROR_STOP_MARGIN_SECONDS",
                                    DEFAULT_STOP_MARGIN_SECONDS, float),
            lease_table=env.get("ECR_MIRROR_LEASE_TABLE") or None,
            event_bus=_event_bus(env.get("ECR_MIRROR_EVENT_BUS"), "ECR_MIRROR_EVENT_BUS"),
            **_mounting(env),
            repository=RepositorySettings.chosen(
                scan_on_push=_env_bool(env, "ECR_MIRROR_SCAN_ON_PUSH", DEFAULT_SCAN_ON_PUSH),
                tag_mutability=mutability, kms_key=env.get("ECR_MIRROR_KMS_KEY"),
                untagged_expiry_days=_env_days(env, "ECR_MIRROR_UNTAGGED_EXPIRY_DAYS")))

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  env: Mapping[str, str] | None = None) -> MirrorSettings:
        """Settings for the CLI, from its options (the prefix from ECR_MIRROR_PREFIX)."""
        env = os.environ if env is None else env
        expiry = getattr(args, "untagged_expiry_days", DEFAULT_UNTAGGED_EXPIRY_DAYS)
        repository = RepositorySettings(untagged_expiry_days=expiry)
        if hasattr(args, "immutable_tags"):  # `copy` sets how repositories are made
            repository = RepositorySettings.chosen(
                scan_on_push=not args.no_scan_on_push, kms_key=args.kms_key,
                tag_mutability="IMMUTABLE" if args.immutable_tags else "MUTABLE",
                untagged_expiry_days=expiry)
        registries = source_registries(
            env, insecure=getattr(args, "insecure_registry", None) or (),
            endpoints=getattr(args, "registry_endpoint", None) or ())
        return cls(prefix=env.get("ECR_MIRROR_PREFIX", DEFAULT_PREFIX), concurrency=args.concurrency,
                   region=args.region, repository=repository, registries=registries,
                   event_bus=_event_bus(getattr(args, "event_bus", None) or (
                       "default" if getattr(args, "events", False) else None), "--event-bus"),
                   # The stack's table, when given: leases shared with its workers, and the
                   # record of the tags ecr-mirror moved (what `prune: true` may untag).
                   lease_table=env.get("ECR_MIRROR_LEASE_TABLE") or None, **_mounting(env))

    @property
    def connections(self) -> int:
        """Threads that may use one client at once: a copy's or a plan's."""
        return max(self.concurrency, self.plan_concurrency)

    def merged_with(self, config: MirrorConfig) -> MirrorSettings:
        """These settings with the config's registries and repository defaults merged in."""
        registries = dict(self.registries)
        for host, registry in config.registries.items():
            registries[host] = registries.get(host, SourceRegistry()).merged_with(registry)
        # The config's `defaults.repository` says how repositories are made; the
        # untagged expiry is the deployment's (UntaggedExpiryDays), not the config's.
        repository = self.repository if config.repository is None else replace(
            config.repository, untagged_expiry_days=self.repository.untagged_expiry_days)
        return replace(self, registries=registries, repository=repository)


def source_registries(env: Mapping[str, str], *, insecure: Iterable[str] = (),
                      endpoints: Iterable[str] = ()) -> dict[str, SourceRegistry]:
    """Registry host -> how to reach it, from ECR_MIRROR_INSECURE_REGISTRIES and
    ECR_MIRROR_REGISTRY_ENDPOINTS plus the CLI's `--insecure-registry HOST` and
    `--registry-endpoint HOST=URL` (which win over the environment's entry for a host)."""
    hosts = env.get("ECR_MIRROR_INSECURE_REGISTRIES", "").split(",") + list(insecure)
    registries: dict[str, SourceRegistry] = {}
    for host in filter(None, (h.strip() for h in hosts)):
        registries[host] = SourceRegistry(insecure=True)
    urls = parse_endpoints(env.get("ECR_MIRROR_REGISTRY_ENDPOINTS", ""))
    for item in endpoints:
        urls.update(parse_endpoints(item, what="--registry-endpoint"))
    for host, url in urls.items():
        registries[host] = replace(registries.get(host, SourceRegistry()), endpoint=url)
    return registries


def _event_bus(name: str | None, what: str) -> str | None:
    """The bus events go to (None: no events); a malformed name is the user's one-line error."""
    if not name:
        return None
    from .events import check_bus

    return check_bus(name, what)


def _mounting(env: Mapping[str, str]) -> dict[str, Any]:
    """ECR_MIRROR_BLOB_MOUNTING (enabled or disabled; the template's BlobMounting) and
    ECR_MIRROR_ECR_REGISTRY_ENDPOINT (https://..., or http://127.0.0.1:PORT for tests)."""
    value = (env.get("ECR_MIRROR_BLOB_MOUNTING") or "enabled").lower()
    if value not in ("enabled", "disabled"):
        raise UsageError(f"ECR_MIRROR_BLOB_MOUNTING={value!r}: expected enabled or disabled")
    endpoint = env.get("ECR_MIRROR_ECR_REGISTRY_ENDPOINT") or None
    if endpoint:
        parts = urlsplit(endpoint)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not parts.netloc or parts.scheme not in ("http", "https") or (
                parts.scheme == "http" and not loopback):
            raise UsageError(f"ECR_MIRROR_ECR_REGISTRY_ENDPOINT={endpoint!r}: expected "
                             "https://host[:port] (plain http only on 127.0.0.1)")
        endpoint = f"{parts.scheme}://{parts.netloc}"
    return {"blob_mounting": value == "enabled", "ecr_registry_endpoint": endpoint}


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={value!r}: expected true or false")


def _env_number(env: Mapping[str, str], name: str, default: float, kind: type) -> Any:
    try:
        return kind(env.get(name) or default)
    except ValueError as exc:
        raise UsageError(f"{name}={env.get(name)!r}: expected a number") from exc


def plan_shard_tags(env: Mapping[str, str] | None = None) -> int:
    """ECR_MIRROR_PLAN_SHARD_TAGS: the scheduler shards a config estimated above it."""
    env = os.environ if env is None else env
    tags: int = _env_number(env, "ECR_MIRROR_PLAN_SHARD_TAGS", DEFAULT_PLAN_SHARD_TAGS, int)
    if tags < 1:
        raise UsageError(f"ECR_MIRROR_PLAN_SHARD_TAGS={env.get('ECR_MIRROR_PLAN_SHARD_TAGS')!r}: "
                         "expected a number of tags of at least 1")
    return tags


def _env_days(env: Mapping[str, str], name: str) -> int:
    days: int = _env_number(env, name, DEFAULT_UNTAGGED_EXPIRY_DAYS, int)
    if days < 0:
        raise UsageError(f"{name}={env.get(name)!r}: expected 0 (no lifecycle policy) or a number of days")
    return days


def parse_endpoints(text: str, what: str = "ECR_MIRROR_REGISTRY_ENDPOINTS") -> dict[str, str]:
    """`docker.io=http://127.0.0.1:5000,ghcr.io=https://ghcr.example` as a dict."""
    endpoints: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        registry, _, url = item.partition("=")
        parts = urlsplit(url.strip())
        if not registry.strip() or parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"{what} entry {item!r}: expected "
                             "registry=http(s)://host[:port], e.g. docker.io=https://mirror.example")
        endpoints[registry.strip()] = f"{parts.scheme}://{parts.netloc}"
    return endpoints
