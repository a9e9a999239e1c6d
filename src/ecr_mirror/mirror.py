"""The one entry the CLI and the Lambda handlers share: mirror one image.

It turns strings into a source client and an ECR repository, then calls the
engine. Bad input raises `UsageError` before anything is sent anywhere.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit
from dataclasses import dataclass, field

from .copy import CopyOptions, CopyReport, Progress, copy_image
from .ecr import EcrRepository, RepositorySettings, default_repository, parse_target
from .ecr.client import make_ecr_client
from .errors import UsageError
from .manifest import Platform
from .reference import Reference, parse
from .reference import DOCKER_HUB
from .registry import Credentials, RegistryClient, RetryPolicy
from .registry.credentials import load_credentials

DEFAULT_PREFIX = "mirror"


@dataclass
class MirrorSettings:
    """What a caller can set; defaults come from the environment."""

    prefix: str = field(default_factory=lambda: os.environ.get("ECR_MIRROR_PREFIX", DEFAULT_PREFIX))
    concurrency: int = 4
    insecure_registries: frozenset[str] = frozenset()
    #: Where to reach a registry instead of its own host, e.g.
    #: {"docker.io": "http://127.0.0.1:5000"} (a local mirror or a test registry).
    endpoints: dict[str, str] = field(default_factory=dict)
    repository: RepositorySettings = field(default_factory=RepositorySettings)
    region: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def parse_platforms(values: list[str] | tuple[str, ...] | None) -> tuple[Platform, ...]:
    try:
        return tuple(Platform.parse(v) for v in values or ())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


class Mirror:
    """Holds clients across images, so tokens and connections are reused."""

    def __init__(self, settings: MirrorSettings | None = None, *, ecr_client=None) -> None:
        self.settings = settings or MirrorSettings()
        if self.settings.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.settings.concurrency}")
        self._ecr = ecr_client
        self._sources: dict[tuple[str, bool], RegistryClient] = {}

    @property
    def ecr(self):
        if self._ecr is None:
            self._ecr = make_ecr_client(self.settings.region, concurrency=self.settings.concurrency)
        return self._ecr

    def source_client(self, ref: Reference, insecure: bool = False) -> RegistryClient:
        insecure = insecure or ref.registry in self.settings.insecure_registries
        key = (ref.registry, insecure)
        if key not in self._sources:
            api_host, scheme = ref.api_host, None
            endpoint = self.settings.endpoints.get(ref.registry)
            if endpoint:
                parts = urlsplit(endpoint)
                api_host, scheme = parts.netloc, parts.scheme
                insecure = insecure or scheme == "http"
            self._sources[key] = RegistryClient(
                ref.registry, api_host=api_host, credentials=self._credentials(ref.registry),
                insecure=insecure, scheme=scheme, retry=self.settings.retry)
        return self._sources[key]

    def _credentials(self, registry: str) -> Credentials | None:
        """Secrets Manager for the functions (Docker Hub), else env / docker config."""
        arn = os.environ.get("ECR_MIRROR_SOURCE_SECRET_ARN")
        if arn and registry == DOCKER_HUB:
            return credentials_from_secret(arn)
        return load_credentials(registry)

    def resolve(self, source: str, target: str | None) -> tuple[Reference, str, str | None, str | None]:
        """(source reference, target repository, tag, registry id); raises UsageError."""
        ref = parse(source)
        if target:
            name = parse_target(target, default_tag=ref.tag)
            if name.region and self.settings.region and name.region != self.settings.region:
                raise UsageError(f'target "{target}" is in {name.region} but the region is '
                                 f"{self.settings.region}; drop --region or use a matching target")
            if name.region and not self.settings.region:
                self.settings.region = name.region
            return ref, name.repository, name.tag, name.registry_id
        return ref, default_repository(ref, self.settings.prefix), ref.tag, None

    def copy(self, source: str, target: str | None = None, *, platforms: tuple[Platform, ...] = (),
             insecure: bool = False, progress: Progress | None = None) -> CopyReport:
        ref, repository, tag, registry_id = self.resolve(source, target)
        repo = EcrRepository(self.ecr, repository, registry_id=registry_id,
                             settings=self.settings.repository)
        options = CopyOptions(platforms=platforms, concurrency=self.settings.concurrency,
                              progress=progress or Progress())
        return copy_image(self.source_client(ref, insecure), ref, repo, tag, options,
                          target_name=repository + (f":{tag}" if tag else ""))


def _env_bool(env, name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={value!r}: expected true or false")


def settings_from_env(env=None) -> MirrorSettings:
    """Settings for the Lambda functions, from their environment variables."""
    env = os.environ if env is None else env
    try:
        concurrency = int(env.get("ECR_MIRROR_CONCURRENCY", "4"))
    except ValueError as exc:
        raise UsageError(f"ECR_MIRROR_CONCURRENCY={env.get('ECR_MIRROR_CONCURRENCY')!r}: "
                         "expected a whole number") from exc
    mutability = env.get("ECR_MIRROR_TAG_MUTABILITY", "MUTABLE").upper()
    if mutability not in ("MUTABLE", "IMMUTABLE"):
        raise UsageError(f"ECR_MIRROR_TAG_MUTABILITY={mutability!r}: expected MUTABLE or IMMUTABLE")
    kms_key = env.get("ECR_MIRROR_KMS_KEY") or None
    insecure = frozenset(h.strip() for h in env.get("ECR_MIRROR_INSECURE_REGISTRIES", "").split(",")
                         if h.strip())
    return MirrorSettings(
        prefix=env.get("ECR_MIRROR_PREFIX", DEFAULT_PREFIX), concurrency=concurrency,
        insecure_registries=insecure,
        endpoints=parse_endpoints(env.get("ECR_MIRROR_REGISTRY_ENDPOINTS", "")),
        repository=RepositorySettings(
            scan_on_push=_env_bool(env, "ECR_MIRROR_SCAN_ON_PUSH", True),
            tag_mutability=mutability, encryption="KMS" if kms_key else "AES256", kms_key=kms_key))


def credentials_from_secret(arn: str, client=None) -> Credentials:
    """A Secrets Manager secret holding {"username": ..., "password": ...}."""
    import json

    import boto3

    client = client or boto3.client("secretsmanager")
    value = client.get_secret_value(SecretId=arn)["SecretString"]
    try:
        data = json.loads(value)
        return Credentials(str(data["username"]), str(data["password"]))
    except (ValueError, KeyError, TypeError) as exc:
        # Never echo the secret's content, only its name.
        raise UsageError(f'secret {arn} must be JSON {{"username": ..., "password": ...}}') from exc


def parse_endpoints(text: str) -> dict[str, str]:
    """`docker.io=http://127.0.0.1:5000,ghcr.io=https://ghcr.example` as a dict."""
    endpoints: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        registry, _, url = item.partition("=")
        parts = urlsplit(url.strip())
        if not registry.strip() or parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"ECR_MIRROR_REGISTRY_ENDPOINTS entry {item!r}: expected "
                             "registry=http(s)://host[:port], e.g. docker.io=https://mirror.example")
        endpoints[registry.strip()] = f"{parts.scheme}://{parts.netloc}"
    return endpoints
