"""ConfigStore=s3: the mirror config as an S3 object, read by the functions
through handlers/common.read_config (moto's S3 on the emulator)."""

from __future__ import annotations

import time

import boto3
import pytest

from ecr_mirror import aws
from ecr_mirror.errors import UsageError
from ecr_mirror.handlers import common, config_s3
from ecr_mirror_testing.configs import realistic_config
from tests.integration.test_schedule import CONFIG, EXPECTED, app, queued_targets, scheduled_run, seed  # noqa: F401

URL = "s3://mirror-config/mirror.yaml"


@pytest.fixture
def store(app, monkeypatch):  # app: the stack on the emulator (test_schedule)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="mirror-config")
    s3.put_bucket_versioning(Bucket="mirror-config", VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv(config_s3.ENV, URL)
    monkeypatch.setattr(config_s3, "_cache", {})
    return s3


def upload(s3, text: str) -> None:
    s3.put_object(Bucket="mirror-config", Key="mirror.yaml", Body=text.encode())


def test_the_schedule_plans_from_the_config_in_s3(store, registry):
    """The SSM parameter (the fixture's) is ignored once the object is named."""
    seed(registry)
    upload(store, CONFIG)
    boto3.client("ssm").put_parameter(Name="/ecr-mirror/config", Value="images: []\n",
                                      Type="String", Overwrite=True)
    result = scheduled_run()
    assert result["errors"] == 0 and result["queued"] == len(EXPECTED), result


def test_a_300_entry_config_that_ssm_refuses_loads_from_s3(store):
    upload(store, realistic_config(300))
    config = common.read_config(fresh=True)
    assert not config.errors and len(config.images) == 300


def test_a_50000_tag_config_in_2000_entries_loads(store):
    text = realistic_config(2000, tags_per_entry=25)
    upload(store, text)
    started = time.perf_counter()
    config = common.read_config(fresh=True)
    elapsed = time.perf_counter() - started
    assert not config.errors and len(config.images) == 2000
    assert sum(len(entry.selector.names) for entry in config.images) == 50_000
    print(f"\n50,000 tags / 2,000 entries ({len(text) / 1e6:.2f} MB) loaded in {elapsed:.2f} s")


def test_a_changed_object_is_seen_when_read_fresh_and_not_before(store):
    upload(store, "images:\n  - source: nginx\n    tags: [stable]\n")
    assert len(common.read_config(fresh=True).images) == 1
    upload(store, "images: []\n")
    assert len(common.read_config().images) == 1  # cached for CONFIG_TTL_SECONDS
    assert common.read_config(fresh=True).images == []


def test_a_missing_object_says_how_to_upload_it(store):
    with pytest.raises(UsageError) as caught:
        common.read_config(fresh=True)
    assert str(caught.value) == (f"{URL} ({config_s3.ENV}) does not exist; upload the mirror "
                                 f"config: aws s3 cp mirror.yaml {URL}")


def test_a_bad_entry_is_reported_alone_as_from_ssm(store):
    upload(store, "images:\n  - source: nginx\n    tags: [x]\n    target: other/x\n")
    result = scheduled_run()
    assert result["queued"] == 0 and result["errors"] == 1
    message = result["errorDetails"][0]["message"]
    assert '"other/x"' in message and '"mirror/"' in message and "\n" not in message


def test_an_unchanged_config_is_not_transferred_again(store):
    """The scheduler reads fresh on every run: S3 answers 304 to the ETag it has."""
    upload(store, realistic_config(300))
    statuses = []
    client = aws.client("s3")
    record = lambda http_response, **_: statuses.append(http_response.status_code)  # noqa: E731
    client.meta.events.register("after-call.s3.GetObject", record)
    try:
        first = common.read_config(fresh=True)
        again = common.read_config(fresh=True)
    finally:
        client.meta.events.unregister("after-call.s3.GetObject", record)
    assert statuses == [200, 304]
    assert len(again.images) == len(first.images) == 300
