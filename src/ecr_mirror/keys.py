"""Cosign public keys for the signature gate, from where a config or a flag names them.

A key spec is one of:
- inline PEM text (`-----BEGIN PUBLIC KEY-----...`), e.g. in the mirror config;
- `ssm:/name` (or `ssm:<parameter ARN>`): an SSM parameter, read WithDecryption;
- `secretsmanager:<name or ARN>`: a secret whose SecretString is the PEM;
- a file name (the CLI's `--cosign-key cosign.pub` only: `files=True`).

`load_keys` turns specs into a `VerifyPolicy`, each key checked when it is read by
the rules the gate applies (`signatures.parse_keys`). A key read from AWS is cached
per process for KEY_TTL_SECONDS, so a warm Lambda reads it once in a while and
a rotated key applies within minutes. Every error names the spec, never the
content of what was read: a secret may hold something that is not meant to be
shown (a private key stored by mistake).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from . import aws
from .copy.options import VerifyPolicy
from .errors import CosignKeyError, UsageError
from .signatures import parse_keys

SSM, SECRETS = "ssm:", "secretsmanager:"
PEM_START = "-----BEGIN "
#: A key changed in SSM or Secrets Manager reaches a warm function within this many seconds.
KEY_TTL_SECONDS = 300
SPEC_SHAPE = "a PEM public key, ssm:/parameter-name or secretsmanager:secret-name"

_lock = threading.Lock()
_cache: dict[tuple[str, str | None], tuple[float, bytes]] = {}  # (spec, region) -> (read at, PEM)
clock = time.monotonic  # replaced in tests, to step past the TTL


def describe(spec: str) -> str:
    """The spec as messages show it: an inline key is never repeated."""
    return "an inline PEM key" if spec.lstrip().startswith(PEM_START) else spec


def check_spec(spec: Any, *, files: bool = False) -> str:
    """A key spec's shape (nothing is read, but an inline key is parsed); UsageError if wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"give {SPEC_SHAPE}")
    if spec.lstrip().startswith(PEM_START):
        try:
            public_key(spec.encode(), "the inline key")
        except CosignKeyError as exc:
            raise UsageError(str(exc)) from None
        return spec
    for prefix in (SSM, SECRETS):
        if spec.startswith(prefix):
            if not spec[len(prefix):].strip():
                raise UsageError(f"{spec!r} names no {prefix[:-1]} resource; e.g. {prefix}"
                                 f"{'/ecr-mirror/cosign.pub' if prefix == SSM else 'ecr-mirror/cosign'}")
            return spec
    if not files:
        raise UsageError(f"{spec[:40]!r} is not {SPEC_SHAPE}")
    return spec


def load_keys(specs: Iterable[str], *, region: str | None = None, files: bool = False) -> VerifyPolicy:
    """The gate's policy from key specs; `CosignKeyError` (or UsageError for a bad
    spec) naming the spec that could not be read or is not a public key."""
    specs = tuple(specs)
    if not specs:
        raise UsageError(f"the signature gate needs a key: {SPEC_SHAPE}")
    keys = tuple(_load(check_spec(spec, files=files), region) for spec in specs)
    return VerifyPolicy(keys=keys, origin=", ".join(describe(s) for s in specs))


def _load(spec: str, region: str | None) -> bytes:
    if spec.lstrip().startswith(PEM_START):
        return spec.encode()
    if not spec.startswith((SSM, SECRETS)):
        return public_key(_read_file(spec), spec)
    with _lock:
        cached = _cache.get((spec, region))
    if cached and clock() - cached[0] < KEY_TTL_SECONDS:
        return cached[1]
    pem = public_key(_read_aws(spec, region).encode(), spec)
    with _lock:
        _cache[(spec, region)] = (clock(), pem)
    return pem


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(64 * 1024)  # a public key is a few hundred bytes
    except OSError as exc:
        raise CosignKeyError(f"cannot read the cosign key {path}: {exc.strerror}; give a file "
                             "such as cosign.pub, or ssm:/name or secretsmanager:name") from None


def _read_aws(spec: str, region: str | None) -> str:
    what, hint = f"the cosign key {spec}", "check it and the role's access to it"
    if spec.startswith(SSM):
        answer = aws.read(lambda: aws.client("ssm", region).get_parameter(
            Name=spec[len(SSM):], WithDecryption=True), what=what, service="ssm",
            error=CosignKeyError, hints=_HINTS, other=hint)
        return str(answer["Parameter"]["Value"])
    return aws.secret_string(aws.client("secretsmanager", region), spec[len(SECRETS):], what=what,
                             store="the PEM public key", error=CosignKeyError, hints=_HINTS, other=hint)


_HINTS = {
    "ParameterNotFound": "create it, or fix verify.cosignKey",
    "ResourceNotFoundException": "create it, or fix verify.cosignKey",
    "AccessDeniedException": "the worker may read only the SSM parameters under the template's "
                             "CosignKeyParameterPrefix and the secrets under its SecretNamePrefix",
}


def public_key(pem: bytes, where: str) -> bytes:
    """`pem` if it holds only public keys the gate can use (`signatures.parse_keys`:
    the same rules the gate applies); else CosignKeyError naming `where`."""
    parse_keys(pem, where)
    return pem
