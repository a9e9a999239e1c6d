"""`referrers` and `verify` in the mirror config: per image, in defaults, and the errors."""

from __future__ import annotations

import pytest

from ecr_mirror.copy.options import ReferrerPolicy
from ecr_mirror.errors import UsageError
from ecr_mirror.sync.config import load_config
from tests.unit.test_keys import PUBLIC

SBOM = "application/spdx+json"


def entries(text: str):
    config = load_config(text)
    assert not config.errors, config.errors
    return {e.written: (e.referrers, e.verify) for e in config.images}


def test_per_image_values_override_the_defaults():
    got = entries(f"""
defaults:
  referrers: {{artifactTypes: [{SBOM}]}}
  verify: {{cosignKey: "ssm:/keys/default"}}
images:
  - {{source: nginx, tags: [stable]}}
  - {{source: redis, tags: ['7'], referrers: true}}
  - {{source: busybox, tags: [latest], referrers: false, verify: {{cosignKey: [secretsmanager:a, "ssm:/b"]}}}}
""")
    assert got == {
        "nginx": (ReferrerPolicy((SBOM,)), ("ssm:/keys/default",)),
        "redis": (ReferrerPolicy(), ("ssm:/keys/default",)),
        "busybox": (None, ("secretsmanager:a", "ssm:/b")),  # two keys: a rotation
    }


def test_nothing_said_means_no_referrers_and_no_gate():
    assert entries("images:\n  - {source: nginx, tags: [stable]}\n") == {"nginx": (None, ())}


def test_the_gate_brings_the_signatures_along_unless_referrers_are_turned_off():
    pem = PUBLIC.decode().replace("\n", "\\n")
    got = entries(f"""
images:
  - {{source: nginx, tags: [stable], verify: {{cosignKey: "{pem}"}}}}
  - {{source: redis, tags: ['7'], verify: {{cosignKey: "ssm:/k"}}, referrers: false}}
""")
    assert got == {"nginx": (ReferrerPolicy(), (PUBLIC.decode(),)), "redis": (None, ("ssm:/k",))}


@pytest.mark.parametrize("value, needle", [
    ("referrers: yes please", "referrers: must be true, false or {\"artifactTypes\""),
    ("referrers: {artifactTypes: []}", "referrers"),
    ("referrers: {types: [x]}", "referrers"),
    ("verify: {cosignKey: cosign.pub}", "verify.cosignKey: 'cosign.pub' is not a PEM public key, ssm:/"),
    ("verify: {cosignKey: [ssm:/a, 'ssm:']}", "verify.cosignKey[1]: 'ssm:' names no ssm resource"),
    ("verify: {cosignKey: 5}", "cosignKey: give a key (PEM, ssm:/name or secretsmanager:name)"),
    ("verify: {key: ssm:/a}", "verify"),
    ("verify: {cosignKey: '-----BEGIN PUBLIC KEY-----\\nxx\\n-----END PUBLIC KEY-----'}",
     "the inline key is not a PEM public key"),
])
def test_a_bad_value_is_an_error_of_that_entry_naming_the_field(value, needle):
    config = load_config(f"images:\n  - source: nginx\n    tags: [x]\n    {value}\n"
                         "  - source: redis\n    tags: ['7']\n")
    assert [i.written for i in config.images] == ["redis"]  # the good entry still runs
    [error] = config.errors
    assert error.entry == "images[0] (nginx)" and needle in error.message, error.message


@pytest.mark.parametrize("value, needle", [
    ("referrers: 1", "defaults.referrers: must be true, false"),
    ("verify: {cosignKey: nope}", "defaults.verify.cosignKey: 'nope' is not a PEM public key"),
])
def test_a_bad_default_is_said_once(value, needle):
    with pytest.raises(UsageError) as err:
        load_config(f"defaults:\n  {value}\nimages:\n  - {{source: nginx, tags: [x]}}\n", origin="m.yaml")
    assert str(err.value).startswith("m.yaml: ") and needle in str(err.value), str(err.value)
