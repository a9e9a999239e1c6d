"""`referrers` and `verify` as the config, SQS messages and direct events spell them.

    referrers: true | false | {"artifactTypes": ["application/spdx+json", ...]}
    verify: {"cosignKey": "<PEM> | ssm:/name | secretsmanager:name"}   (or a list, for rotation)

An image entry's own value wins over `defaults`. With `verify` and no
`referrers` anywhere, every referrer is copied: the signatures the gate checked
then sit next to the image in ECR, so `cosign verify` works against the mirror
(an explicit `referrers: false` still turns that off).
"""

from __future__ import annotations

import json
from typing import Any

from .copy.options import ReferrerPolicy
from .errors import UsageError
from .keys import check_spec

REFERRERS_SHAPE = 'true, false or {"artifactTypes": ["application/spdx+json", ...]}'
VERIFY_SHAPE = '{"cosignKey": "ssm:/name"} (a PEM key, ssm:/name or secretsmanager:name, or a list)'


def referrer_policy(value: Any, where: str = "referrers") -> ReferrerPolicy | None:
    """The policy a `referrers` value asks for (None: no referrers); UsageError if malformed."""
    if isinstance(value, bool):
        return ReferrerPolicy() if value else None
    types = value.get("artifactTypes") if isinstance(value, dict) and set(value) == {"artifactTypes"} \
        else None
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
        raise UsageError(f"{where} must be {REFERRERS_SHAPE}, got {json.dumps(value)[:60]}")
    return ReferrerPolicy(artifact_types=tuple(types))


def referrers_value(policy: ReferrerPolicy | None) -> bool | dict[str, list[str]]:
    """The JSON value of a policy (what `referrer_policy` reads back)."""
    if policy is None:
        return False
    return {"artifactTypes": list(policy.artifact_types)} if policy.artifact_types else True


def key_specs(value: Any, where: str = "verify") -> tuple[str, ...]:
    """The key specs of a `verify` value (not read: see keys.load_keys); UsageError if malformed."""
    keys = value.get("cosignKey") if isinstance(value, dict) and set(value) == {"cosignKey"} else None
    specs = [keys] if isinstance(keys, str) else keys
    if not isinstance(specs, list) or not specs:
        raise UsageError(f"{where} must be {VERIFY_SHAPE}")
    for i, spec in enumerate(specs):
        try:
            check_spec(spec)
        except UsageError as exc:
            index = f"[{i}]" if isinstance(keys, list) else ""
            raise UsageError(f"{where}.cosignKey{index}: {exc}") from None
    return tuple(specs)


def verify_value(specs: tuple[str, ...]) -> dict[str, Any]:
    return {"cosignKey": specs[0] if len(specs) == 1 else list(specs)}


def image_options(data: dict[str, Any], defaults: dict[str, Any] | None = None, *, where: str = ""
                  ) -> tuple[ReferrerPolicy | None, tuple[str, ...]]:
    """(referrer policy, key specs) of an image entry, message or event, `defaults`
    filling what it leaves out; `where` prefixes field names in errors."""
    defaults = defaults or {}
    source, label = (data, where) if "verify" in data else (defaults, "defaults.")
    specs = key_specs(source["verify"], f"{label}verify") if "verify" in source else ()
    if "referrers" in data:
        return referrer_policy(data["referrers"], f"{where}referrers"), specs
    if "referrers" in defaults:
        return referrer_policy(defaults["referrers"], "defaults.referrers"), specs
    return (ReferrerPolicy() if specs else None), specs
