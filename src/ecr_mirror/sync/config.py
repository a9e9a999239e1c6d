"""The mirror config: which images, which tags, from which registries.

YAML, read from an SSM parameter by the Lambda functions and from a file by the
CLI. Validated with JSON Schema, each image entry on its own: a bad entry is
reported with its index, source and field, and never stops the good ones.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema

from ..copy.options import ReferrerPolicy
from ..ecr.names import check_prefix_text, check_target
from ..errors import UsageError
from ..manifest import PLATFORM_PATTERN, Platform
from ..policies import REFERRERS_SHAPE, image_options
from ..reference import InvalidReference, Reference, is_registry_host, parse, quote
from ..settings import DEFAULT_PRUNE_MAX, RepositorySettings, SourceRegistry
from . import pinned
from .tags import GLOB_CHARS, SemverRange, TagSelector
from .yamlload import load_yaml

_PLATFORM = f"^{PLATFORM_PATTERN}$"

REGISTRY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "credentials": {
            "description": "Secrets Manager secret(s) (name or ARN) holding "
                           '{"username", "password"}; with several, the next is used '
                           "when one account's pull budget is spent",
            "anyOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}]},
        "reserve": {"type": "integer", "minimum": 0,
                    "description": "pulls to keep in reserve: stop pulling when this many are left"},
        "insecure": {"type": "boolean"},
        "endpoint": {"type": "string", "pattern": r"^https?://[A-Za-z0-9.:\[\]-]+/?$"},
    },
}

#: `referrers` and `verify`, per image and in `defaults` (see policies.py).
OPTION_SCHEMAS = {
    "referrers": {"anyOf": [
        {"type": "boolean"},
        {"type": "object", "additionalProperties": False, "required": ["artifactTypes"],
         "properties": {"artifactTypes": {"type": "array", "minItems": 1,
                                          "items": {"type": "string", "minLength": 1}}}}]},
    "verify": {"type": "object", "additionalProperties": False, "required": ["cosignKey"],
               "properties": {"cosignKey": {"anyOf": [
                   {"type": "string", "minLength": 1},
                   {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}]}}},
}

#: `prune` and `pruneMax`, per image and in `defaults` (see sync/prune.py).
PRUNE_SCHEMAS = {
    "prune": {"type": "boolean"},
    "pruneMax": {"type": "integer", "minimum": 1},
}

TOP_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["images"],
    "properties": {
        "registries": {"type": "object", "additionalProperties": REGISTRY_SCHEMA},
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "targetPrefix": {"type": "string"},
                "platforms": {"type": "array", "items": {"type": "string", "pattern": _PLATFORM}},
                **OPTION_SCHEMAS,
                "immutableTags": pinned.SCHEMA,
                **PRUNE_SCHEMAS,
                "repository": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "scanOnPush": {"type": "boolean"},
                        "tagMutability": {"enum": ["MUTABLE", "IMMUTABLE"]},
                        "encryption": {"enum": ["AES256", "KMS"]},
                        "kmsKey": {"type": "string"},
                    },
                },
            },
        },
        "images": {"type": "array"},
    },
}

IMAGE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["source"],
    "anyOf": [{"required": ["tags"]}, {"required": ["regex"]}, {"required": ["semver"]},
              {"required": ["latest"]}],
    "properties": {
        "source": {"type": "string", "minLength": 1},
        "target": {"type": "string", "minLength": 2},
        "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "regex": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "semver": {"type": "string", "minLength": 1},
        "exclude": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "latest": {"type": "integer", "minimum": 1},
        "platforms": {"type": "array", "items": {"type": "string", "pattern": _PLATFORM}},
        **OPTION_SCHEMAS,
        "immutableTags": pinned.SCHEMA,
        **PRUNE_SCHEMAS,
    },
}

_validate_top = fastjsonschema.compile(TOP_SCHEMA)
_validate_image = fastjsonschema.compile(IMAGE_SCHEMA)


@dataclass(frozen=True)
class ImageEntry:
    index: int
    source: Reference  # registry and repository; no tag
    target: str | None
    selector: TagSelector
    platforms: tuple[Platform, ...]
    written: str = ""  # the source as the config spells it, for messages
    #: Copy referrers (signatures, SBOMs...) too; None: not looked up.
    referrers: ReferrerPolicy | None = None
    #: The signature gate's key specs (keys.py reads them), not the keys; (): no gate.
    verify: tuple[str, ...] = ()
    #: Globs of tags that never move: held in ECR, they are not asked about upstream (sync/pinned.py).
    immutable_tags: tuple[str, ...] = ()
    #: Untag the tags ecr-mirror put in the target that the selection no longer
    #: names, at most `prune_max` a run (sync/prune.py).
    prune: bool = False
    prune_max: int = DEFAULT_PRUNE_MAX

    @property
    def label(self) -> str:
        return _label(self.index, {"source": self.written or self.source.familiar()})


@dataclass(frozen=True)
class ConfigError:
    entry: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"entry": self.entry, "message": self.message}

    def __str__(self) -> str:
        return f"{self.entry}: {self.message}"


@dataclass
class MirrorConfig:
    registries: dict[str, SourceRegistry] = field(default_factory=dict)
    target_prefix: str | None = None
    platforms: tuple[Platform, ...] = ()
    #: None: the deployment's settings (template parameters) apply.
    repository: RepositorySettings | None = None
    images: list[ImageEntry] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    #: `defaults.referrers` and `defaults.verify` as written (image entries fall back on them).
    option_defaults: dict[str, Any] = field(default_factory=dict)
    #: `defaults.immutableTags`: an entry's own list replaces it.
    immutable_tags: tuple[str, ...] = ()
    #: `defaults.prune` and `defaults.pruneMax` as written.
    prune_defaults: dict[str, Any] = field(default_factory=dict)


#: The config's `defaults.repository` keys and the RepositorySettings fields they set.
_REPOSITORY_KEYS = {"scanOnPush": "scan_on_push", "tagMutability": "tag_mutability",
                    "encryption": "encryption", "kmsKey": "kms_key"}

#: What each field taking one of several shapes (JSON Schema anyOf) must be.
_ANYOF_HINTS = {"credentials": "give a secret name, or a list of them",
                "referrers": f"must be {REFERRERS_SHAPE}",
                "cosignKey": "give a key (PEM, ssm:/name or secretsmanager:name), or a list of them"}

_PATTERN_HINTS = {"endpoint": "must be http(s)://host[:port], e.g. https://mirror.example",
                  "platforms": "must be os/arch or os/arch/variant, e.g. linux/arm64"}


def _schema_message(exc: fastjsonschema.JsonSchemaValueException, what: str) -> str:
    # fastjsonschema says "data.tags must be array"; name the field the user wrote.
    path = ".".join(str(p) for p in (exc.path or [])[1:])
    message = exc.message.replace("data.", "").replace("data ", "")
    if exc.rule == "anyOf" and not path:
        return "give at least one of tags, regex, semver or latest"
    if exc.rule == "anyOf":
        field = next((p for p in reversed(exc.path or []) if isinstance(p, str)), "")
        return f"{path}: {_ANYOF_HINTS.get(field, 'not one of the shapes it may take')}"
    if message.endswith("must be string"):
        return f"{message}: quote it, e.g. '1.20' (YAML reads 1.20 as the number 1.2)"
    if exc.rule == "pattern":
        field = next((p for p in reversed(exc.path or []) if isinstance(p, str)), "")
        shape = _PATTERN_HINTS.get(field, "")
        return f"{message.split(' must match pattern')[0]} {shape}".strip()
    if exc.rule == "additionalProperties" and isinstance(exc.value, dict):
        unknown = unknown_field(exc.value, exc.definition or {}, f"in {path}" if path else what)
        if unknown:
            return unknown
    return f"{path + ': ' if path and path not in message else ''}{message}"


def unknown_field(data: dict, schema: dict, where: str) -> str | None:
    """"unknown field `tagz` in images[0]; did you mean `tags`?", or None if all are known."""
    known = [str(k) for k in schema.get("properties", {})]
    unknown = sorted(str(k) for k in data if str(k) not in known)
    if not unknown:
        return None
    close = difflib.get_close_matches(unknown[0], known, n=1)
    return f"unknown field `{unknown[0]}` {where}" + (f"; did you mean `{close[0]}`?" if close else "")


def load_config(text: str, *, origin: str = "config") -> MirrorConfig:
    """Parse and validate; raise UsageError only when nothing usable is left."""
    data = load_yaml(text, origin=origin)
    if not isinstance(data, dict):
        raise UsageError(f"{origin} must be a YAML mapping with an `images:` list")
    images = data.get("images")
    top = {k: v for k, v in data.items() if k != "images"}
    try:
        _validate_top({**top, "images": images if isinstance(images, list) else []})
    except fastjsonschema.JsonSchemaValueException as exc:
        raise UsageError(f"{origin}: {_schema_message(exc, 'at the top level')}") from exc
    if not isinstance(images, list):
        raise UsageError(f"{origin}: `images:` must be a list of images to mirror")
    for host in data.get("registries") or {}:
        if not is_registry_host(host):
            raise UsageError(f"{origin}: registries: {quote(str(host))} is not a registry host; "
                             "write it as images name it, e.g. docker.io, ghcr.io or localhost:5000")

    defaults = data.get("defaults") or {}
    repo = defaults.get("repository") or {}
    if repo.get("encryption") == "KMS" and not repo.get("kmsKey"):
        raise UsageError(f"{origin}: defaults.repository: encryption KMS needs kmsKey")
    config = MirrorConfig(
        registries={host: SourceRegistry(credentials_secrets=_as_tuple(r.get("credentials")),
                                         reserve=int(r.get("reserve", 0)),
                                         insecure=bool(r.get("insecure", False)),
                                         endpoint=r.get("endpoint"))
                    for host, r in (data.get("registries") or {}).items()},
        target_prefix=_target_prefix(defaults.get("targetPrefix"), origin),
        platforms=tuple(Platform.parse(p) for p in defaults.get("platforms") or ()),
        repository=RepositorySettings(**{name: repo[key] for key, name in _REPOSITORY_KEYS.items()
                                         if key in repo}) if repo else None,
        option_defaults={k: defaults[k] for k in OPTION_SCHEMAS if k in defaults},
        prune_defaults={k: defaults[k] for k in PRUNE_SCHEMAS if k in defaults},
    )
    try:
        image_options({}, config.option_defaults)  # a bad default key is said once, not per image
        config.immutable_tags = pinned.immutable_globs(defaults.get("immutableTags"),
                                                       "defaults.immutableTags")
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc}") from exc
    for index, raw in enumerate(images):
        try:
            config.images.append(_image(index, raw, config))
        except fastjsonschema.JsonSchemaValueException as exc:
            config.errors.append(ConfigError(_label(index, raw), _schema_message(exc, f"in images[{index}]")))
        except (UsageError, ValueError) as exc:
            config.errors.append(ConfigError(_label(index, raw), str(exc)))
    return config


def _target_prefix(prefix: str | None, origin: str) -> str | None:
    if prefix is None:
        return None
    try:
        return check_prefix_text(prefix, what="defaults.targetPrefix")
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc}") from exc


def _as_tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _label(index: int, raw: Any) -> str:
    source = raw.get("source") if isinstance(raw, dict) else None
    # Escaped (a newline or a NUL would break the line), without quotes: images[0] (nginx)
    return f"images[{index}]" + (f" ({quote(source)[1:-1]})" if isinstance(source, str) else "")


def _image(index: int, raw: Any, config: MirrorConfig) -> ImageEntry:
    if not isinstance(raw, dict):
        raise UsageError("each image must be a mapping with at least `source` and `tags`")
    unknown = unknown_field(raw, IMAGE_SCHEMA, f"in images[{index}]")
    if unknown:  # before the other rules: `tagz` is the mistake, not a missing `tags`
        raise UsageError(unknown)
    _validate_image(raw)
    try:
        source = parse(raw["source"], default_tag=None)
    except InvalidReference as exc:
        raise UsageError(f"source: {exc}") from exc
    if source.tag or source.digest:
        raise UsageError(f'source: "{raw["source"]}" names a tag or digest; give the repository '
                         "alone and list tags under `tags:`")
    regexes = []
    for pattern in raw.get("regex") or ():
        try:
            regexes.append(re.compile(pattern))
        except re.error as exc:
            raise UsageError(f"regex: {pattern!r} is not a valid regular expression ({exc})") from exc
    for name in raw.get("tags") or ():
        if not GLOB_CHARS & set(name):  # an exact tag must be a whole, valid tag
            try:
                source.with_tag(name)
            except InvalidReference as exc:
                raise UsageError(f"tags: {exc.reason}") from exc
    latest = raw.get("latest")
    if latest is not None and type(latest) is not int:  # the schema lets 2.0 through
        raise UsageError(f"latest: give a whole number of tags to keep, such as 3, not {latest!r}")
    semver = None
    if raw.get("semver"):
        try:
            semver = SemverRange.parse(raw["semver"])
        except ValueError as exc:
            raise UsageError(f"semver: {exc}") from exc
    selector = TagSelector(names=tuple(raw.get("tags") or ()), regexes=tuple(regexes),
                           semver=semver, exclude=tuple(raw.get("exclude") or ()),
                           latest=raw.get("latest"))
    platforms = tuple(Platform.parse(p) for p in raw["platforms"]) if "platforms" in raw \
        else config.platforms
    referrers, verify = image_options(raw, config.option_defaults)
    immutable = pinned.immutable_globs(raw["immutableTags"], "immutableTags") \
        if "immutableTags" in raw else config.immutable_tags
    prune = {**config.prune_defaults, **{k: raw[k] for k in PRUNE_SCHEMAS if k in raw}}
    prune_max = prune.get("pruneMax", DEFAULT_PRUNE_MAX)
    if type(prune_max) is not int:  # the schema lets 2.0 through
        raise UsageError(f"pruneMax: give a whole number of tags, such as 10, not {prune_max!r}")
    return ImageEntry(index=index, source=source, target=_target(raw.get("target")), selector=selector,
                      platforms=platforms, written=raw["source"], referrers=referrers, verify=verify,
                      immutable_tags=immutable, prune=prune.get("prune", False), prune_max=prune_max)


def _target(text: str | None) -> str | None:
    """A config target is a repository: the tags come from the selection."""
    if text is None:
        return None
    name = check_target(text, default_tag=None, prefix=None)  # the one target check
    if name.tag or name.registry_id:
        raise UsageError(f"target: {quote(text)}: give the repository alone, e.g. mirror/nginx; "
                         "each selected tag is mirrored under its own name, in this account and region")
    return name.repository
