"""Source-registry credentials from the environment or the docker config file.

Order: `ECR_MIRROR_SOURCE_USERNAME` / `ECR_MIRROR_SOURCE_PASSWORD`, then the
`auths` section of `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`),
read the way crane and skopeo read it. Credential helpers are not run.

The environment's pair belongs to ONE registry: Docker Hub, or the registry that
`ECR_MIRROR_SOURCE_REGISTRY` names. `ecr-mirror copy evil.example/x:y` must not
hand a Docker Hub token to evil.example. Docker-config entries are per registry.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path

from .auth import Credentials

_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "https://index.docker.io/v1", "index.docker.io",
                    "docker.io", "registry-1.docker.io", "https://registry-1.docker.io")


def _config_path(env: Mapping[str, str]) -> Path:
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _keys_for(registry: str) -> list[str]:
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return list(_DOCKER_HUB_KEYS)
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]


def from_docker_config(registry: str, path: Path) -> Credentials | None:
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the docker config {path}: {exc}") from exc
    auths = config.get("auths") or {}
    for key in _keys_for(registry):
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f'{path}: auths["{key}"].auth is not base64 of user:password') from exc
            if user and password:
                return Credentials(user, password)
    return None


def _registry_key(name: str) -> str:
    """``https://Index.Docker.io/v1/`` → ``docker.io``; ``ghcr.io/`` → ``ghcr.io``."""
    name = name.strip().lower()
    name = name.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if name in ("docker.io", "index.docker.io", "registry-1.docker.io") else name


def environment_registry(env: Mapping[str, str]) -> str:
    """The one registry the environment's username and password are for."""
    return _registry_key(env.get("ECR_MIRROR_SOURCE_REGISTRY") or "docker.io")


def environment_applies_to(registry: str, env: Mapping[str, str] | None = None) -> bool:
    """Do the environment's credentials (username and password, or the secret
    ECR_MIRROR_SOURCE_SECRET_ARN names) belong to `registry`?"""
    return _registry_key(registry) == environment_registry(os.environ if env is None else env)


def load_credentials(registry: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    env = os.environ if env is None else env
    user, password = env.get("ECR_MIRROR_SOURCE_USERNAME"), env.get("ECR_MIRROR_SOURCE_PASSWORD")
    if user and password and environment_applies_to(registry, env):
        return Credentials(user, password)
    return from_docker_config(registry, _config_path(env))
