"""The one entry the CLI, the Lambda handlers and the planner share.

It turns strings and settings into a source client and an ECR repository, then
calls the engine. Bad input raises `UsageError` before anything is sent.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from . import aws
from .copy import CopyOptions, CopyReport, Progress, copy_image
from .copy.options import ReferrerPolicy, VerifyPolicy
from .copy.report import COPIED, FAILED
from .deadline import Deadline
from .ecr import EcrRepository, default_repository
from .ecr.mount import BlobMounts
from .ecr.names import check_target
from .errors import MirrorError, SecretError, UsageError
from .landed import BlobHomes
from .leases import DynamoLeases, Leases, NoLeases
from .manifest import Platform
from .ownership import DynamoOwnership, NoOwnership, Ownership
from .reference import Reference, parse, quote
from .registry import Credentials, RegistryClient
from .registry.credentials import environment_applies_to, load_credentials
from .settings import MirrorSettings, SourceRegistry

__all__ = ["Mirror", "MirrorSettings", "SourceRegistry", "credentials_from_secret", "parse_platforms"]

def parse_platforms(values: list[str] | tuple[str, ...] | None) -> tuple[Platform, ...]:
    try:
        return tuple(Platform.parse(v) for v in values or ())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


class Mirror:
    """Holds clients across images, so tokens and connections are reused.

    It is shared by the events a warm Lambda runs, so nothing one copy asks
    for (a target's region, the time left) is kept in it: those are arguments.
    """

    def __init__(self, settings: MirrorSettings | None = None, *, ecr_client: Any = None,
                 secrets_client: Any = None) -> None:
        self.settings = settings or MirrorSettings()
        self._ecr = ecr_client  # used for the settings' region (tests pass their own)
        self._secrets = secrets_client
        self._sources: dict[tuple[str, bool], RegistryClient] = {}
        self._lock = threading.Lock()
        table = self.settings.lease_table
        leases = DynamoLeases(table, region=self.settings.region) if table else None
        self.leases: Leases = leases or NoLeases()
        #: Which tags ecr-mirror moved (what `prune` may untag), in the same table.
        self.ownership: Ownership = DynamoOwnership(leases) if leases else NoOwnership()
        #: ECR blob mounts, with where blobs landed kept in the same table.
        self.mounts = BlobMounts(BlobHomes(leases), prefix=self.settings.prefix,
                                 endpoint=self.settings.ecr_registry_endpoint
                                 ) if leases and self.settings.blob_mounting else None

    def close(self) -> None:
        """Close the connections it keeps to source registries (and the mounts' own);
        the AWS clients are the process's (`aws.client`), kept for the next Mirror."""
        with self._lock:
            sources, self._sources = list(self._sources.values()), {}
        for client in sources:
            client.close()
        if self.mounts is not None:
            self.mounts.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def ecr(self) -> Any:
        return self.ecr_client(None)

    def ecr_client(self, region: str | None) -> Any:
        """The ECR client for `region` (None: the settings' region, see `aws.region`)."""
        region = region or self.settings.region
        if self._ecr is not None and region == self.settings.region:
            return self._ecr
        return aws.client("ecr", region, concurrency=self.settings.connections)

    def _secrets_client(self) -> Any:
        return self._secrets or aws.client("secretsmanager", self.settings.region)

    def source_client(self, ref: Reference, insecure: bool = False) -> RegistryClient:
        registry = self.settings.registries.get(ref.registry, SourceRegistry())
        insecure = insecure or registry.insecure
        key = (ref.registry, insecure)
        with self._lock:
            if key not in self._sources:
                api_host, scheme = ref.api_host, None
                if registry.endpoint:
                    parts = urlsplit(registry.endpoint)
                    api_host, scheme = parts.netloc, parts.scheme
                    insecure = insecure or scheme == "http"
                self._sources[key] = RegistryClient(
                    ref.registry, api_host=api_host, credentials=self._credentials(ref.registry),
                    reserve=registry.reserve, insecure=insecure, scheme=scheme,
                    retry=self.settings.retry, pool_size=2 * self.settings.connections)
            return self._sources[key]

    def pull_budgets(self) -> dict:
        """Registry → its pull budget (credentials, reserve, what was last seen)."""
        with self._lock:
            return {registry: client.transport.budget
                    for (registry, _), client in self._sources.items()}

    def source_request_stats(self) -> list:
        """Each source client's request stats (with the last rate limit it saw)."""
        with self._lock:
            return [client.stats for client in self._sources.values()]

    def source_stats(self) -> dict[str, int]:
        """Requests sent to source registries so far, by kind, all registries summed."""
        total: dict[str, int] = {}
        for stats in self.source_request_stats():
            for kind, n in stats.snapshot().items():
                total[kind] = total.get(kind, 0) + n
        return total

    def _credentials(self, registry: str) -> list[Credentials]:
        """The registry's secrets if it has some, else the environment / docker config."""
        secrets = self.settings.registries.get(registry, SourceRegistry()).credentials_secrets
        if (not secrets and os.environ.get("ECR_MIRROR_SOURCE_SECRET_ARN")
                and environment_applies_to(registry)):
            secrets = (os.environ["ECR_MIRROR_SOURCE_SECRET_ARN"],)
        if secrets:
            return [credentials_from_secret(s, self._secrets_client()) for s in secrets]
        found = load_credentials(registry)
        return [found] if found else []

    def target_for(self, ref: Reference, target: str | None) -> tuple[str, str | None, str | None]:
        """(repository, tag, registry id) for a source and an optional target."""
        return self._target(ref, target)[:3]

    def _target(self, ref: Reference, target: str | None) -> tuple[str, str | None, str | None,
                                                                    str | None]:
        """(repository, tag, registry id, region); the region is the target's
        when it names one, else None (the settings' region). Changes nothing.

        Every entry point comes through here (`check_target`): the whole target
        is validated and, for the functions, kept under the prefix.
        """
        prefix = self.settings.prefix if self.settings.enforce_prefix else None
        if target is not None:
            name = check_target(target, default_tag=ref.tag, prefix=prefix)
            if name.region and self.settings.region and name.region != self.settings.region:
                raise UsageError(f"target {quote(target)} is in {name.region} but the region is "
                                 f"{self.settings.region}; drop --region or use a matching target")
            return name.repository, name.tag, name.registry_id, name.region
        repository = default_repository(ref, self.settings.prefix)
        return check_target(repository, default_tag=None, prefix=prefix).repository, ref.tag, None, None

    def resolve(self, source: str, target: str | None) -> tuple[Reference, str, str | None, str | None]:
        """(source reference, target repository, tag, registry id); raises UsageError."""
        ref = parse(source)
        return (ref, *self.target_for(ref, target))

    def repository(self, name: str, registry_id: str | None = None,
                   region: str | None = None) -> EcrRepository:
        return EcrRepository(self.ecr_client(region), name, registry_id=registry_id,
                             settings=self.settings.repository)

    def copy(self, source: str, target: str | None = None, *, platforms: tuple[Platform, ...] = (),
             insecure: bool = False, progress: Progress | None = None,
             time_left: Callable[[], float] | None = None,
             deadline: Deadline | None = None, referrers: ReferrerPolicy | None = None,
             verify: VerifyPolicy | None = None, hand_back: bool = False) -> CopyReport:
        """Copy one image. `time_left` (seconds, e.g. a Lambda's remaining time)
        makes the copy stop `settings.stop_margin` before it; or pass a `deadline`.
        `referrers`: copy referrers too; `verify`: the signature gate; `hand_back`:
        defer (UploadBusy) while another repository uploads a blob this image needs."""
        ref = parse(source)
        repository, tag, registry_id, region = self._target(ref, target)
        target_name = repository + (f":{tag}" if tag else "")
        try:
            client = self.source_client(ref, insecure)  # reads the registry's secret
        except MirrorError as exc:  # e.g. SecretError: a failed report, nothing sent
            return CopyReport(source=str(ref), target=target_name, status=FAILED, error={
                "type": exc.kind, "message": str(exc), "temporary": exc.temporary})
        if deadline is None and time_left is not None:
            deadline = Deadline(time_left, self.settings.stop_margin)
        options = CopyOptions(platforms=platforms, concurrency=self.settings.concurrency,
                              progress=progress or Progress(), deadline=deadline,
                              leases=self.leases, referrers=referrers, verify=verify,
                              mounts=self.mounts, hand_back=hand_back)
        report = copy_image(client, ref, self.repository(repository, registry_id, region), tag,
                            options, target_name=target_name)
        if report.status == COPIED and tag and report.target_digest and not registry_id:
            self.ownership.record(repository, tag, report.target_digest)
        return report


_SECRET_HINTS = {
    "AccessDeniedException": "grant secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)",
    "ResourceNotFoundException": "create it, or fix the name in the config",
}


def credentials_from_secret(secret_id: str, client: Any) -> Credentials:
    """A Secrets Manager secret holding {"username": ..., "password": ...}; `SecretError`
    (naming the secret, never its value) when it cannot be read or used."""
    value = aws.secret_string(client, secret_id, what=f"secret {secret_id}", error=SecretError,
                              store='{"username": ..., "password": ...}', hints=_SECRET_HINTS,
                              other="check the secret and the role's access to it")
    try:
        data = json.loads(value)
        return Credentials(str(data["username"]), str(data["password"]))
    except (ValueError, KeyError, TypeError, RecursionError):
        # Never echo the secret's content, only its name.
        raise SecretError(f'secret {secret_id} must be JSON {{"username": ..., "password": ...}}') from None
