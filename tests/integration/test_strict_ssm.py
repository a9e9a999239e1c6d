"""SSM's value-size limits in the emulator (ecr_mirror_testing.strict_ssm), and
what they mean for the mirror config the stack keeps in SSM."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ecr_mirror_testing.configs import realistic_config
from ecr_mirror_testing.strict_ssm import strict_ssm
from tests.template.cfn import load_template


@pytest.fixture
def ssm(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), strict_ssm():
        yield boto3.client("ssm")


def refusal(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    return caught.value.response["Error"]["Message"]


@pytest.mark.parametrize("tier,limit", [("Standard", 4096), ("Advanced", 8192)])
def test_a_value_past_its_tiers_limit_is_refused_and_nothing_is_stored(ssm, tier, limit):
    ssm.put_parameter(Name="/p", Value="x" * limit, Type="String", Tier=tier)
    message = refusal(lambda: ssm.put_parameter(Name="/p", Value="y" * (limit + 1), Type="String",
                                                Tier=tier, Overwrite=True))
    assert f"{tier} tier parameters support a maximum parameter value of {limit}" in message
    assert ssm.get_parameter(Name="/p")["Parameter"]["Value"] == "x" * limit


def test_an_overwrite_without_a_tier_keeps_the_parameters_tier(ssm):
    ssm.put_parameter(Name="/std", Value="a", Type="String")  # the account default: Standard
    refusal(lambda: ssm.put_parameter(Name="/std", Value="b" * 5000, Type="String", Overwrite=True))
    ssm.put_parameter(Name="/adv", Value="a", Type="String", Tier="Advanced")
    ssm.put_parameter(Name="/adv", Value="b" * 5000, Type="String", Overwrite=True)
    assert len(ssm.get_parameter(Name="/adv")["Parameter"]["Value"]) == 5000


def test_intelligent_tiering_takes_advanced_only_when_needed(ssm):
    ssm.put_parameter(Name="/small", Value="a", Type="String", Tier="Intelligent-Tiering")
    ssm.put_parameter(Name="/big", Value="b" * 6000, Type="String", Tier="Intelligent-Tiering")
    tiers = {p["Name"]: p["Tier"] for p in ssm.describe_parameters()["Parameters"]}
    assert tiers == {"/small": "Standard", "/big": "Advanced"}
    refusal(lambda: ssm.put_parameter(Name="/huge", Value="c" * 9000, Type="String",
                                      Tier="Intelligent-Tiering"))


def test_a_300_entry_config_does_not_fit_the_parameter_any_tier_offers(ssm):
    """Why the config needs another store: a realistic 300-entry config is past
    even the Advanced tier's 8 KB, so the template's SSM parameter cannot hold it."""
    config = realistic_config(300)
    created = load_template()["Resources"]["ConfigParameter"]["Properties"]
    ssm.put_parameter(Name="/ecr-mirror/config", Value=created["Value"], Type=created["Type"],
                      Tier=created["Tier"])  # as the stack creates it
    for tier in ("Standard", "Advanced"):
        refusal(lambda tier=tier: ssm.put_parameter(Name="/ecr-mirror/config", Value=config,
                                                    Type="String", Overwrite=True, Tier=tier))
