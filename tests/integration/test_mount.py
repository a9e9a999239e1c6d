"""Shared layers uploaded once: ECR blob mounts (issue 14, acceptance 3).

The real distribution registry behind the counting proxy is the source; the
strict ECR emulator the target, with its registry endpoint's mount
(ecr_mount.py) modelling ECR's documented rules. Where blobs landed is kept in
a DynamoDB lease table on the same emulator.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import boto3
import pytest

from ecr_mirror.deadline import Deadline
from ecr_mirror.ecr import RepositorySettings
from ecr_mirror.errors import DeferReason
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.reference import parse
from ecr_mirror_testing import strict_ecr
from ecr_mirror_testing.ecr_mount import EcrMount
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.retry import FAST_RETRY
from tests.integration.conftest import MiB, create_lease_table, tags_in_ecr

pytestmark = pytest.mark.integration
TABLE = "mount-leases"
SHARED = layer_bytes("mount-shared", 2 * MiB + 5)  # big enough to take a lease too
A, B = "mirror/app-a", "mirror/app-b"


@pytest.fixture
def table(ecr, ecr_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ecr_endpoint)
    dynamodb = boto3.client("dynamodb", endpoint_url=ecr_endpoint, region_name="us-east-1")
    create_lease_table(TABLE, dynamodb)
    return TABLE


@pytest.fixture
def endpoint(ecr):
    with EcrMount() as mount:
        yield mount


@pytest.fixture
def images(registry):
    """Two upstream images sharing a layer (and each with one of its own)."""
    first = make_image(registry.url, "team/first", "v1", layers=[SHARED, layer_bytes("mount-a")])
    second = make_image(registry.url, "team/second", "v1", layers=[SHARED, layer_bytes("mount-b")])
    return first, second


def shared_digest(images) -> str:
    first, second = images
    (digest,) = set(first.blobs[1:]) & set(second.blobs[1:])
    return digest


def mirror(source, ecr, endpoint, *, mounting: bool = True, kms_key: str | None = None,
           setting: str | None = "ENABLED") -> Mirror:
    if setting:
        ecr.put_account_setting(name="BLOB_MOUNTING", value=setting)
    settings = MirrorSettings(prefix="mirror", retry=FAST_RETRY, region="us-east-1",
                              registries={source.host: SourceRegistry(insecure=True)},
                              repository=RepositorySettings.chosen(kms_key=kms_key),
                              lease_table=TABLE, blob_mounting=mounting,
                              ecr_registry_endpoint=endpoint.url)
    return Mirror(settings, ecr_client=ecr)


def blob_gets(source, digest: str) -> int:
    return sum(1 for method, path, _ in source.requests
               if method == "GET" and path.split("?")[0].endswith(f"/blobs/{digest}"))


def copy_both(m: Mirror, source, b_settings: Mirror | None = None):
    """A into mirror/app-a, then (counts reset) B into mirror/app-b."""
    first = m.copy(f"{source.host}/team/first:v1", f"{A}:v1")
    assert first.status == "copied", first.error
    source.reset_counts()
    strict_ecr.uploaded_bytes.clear()
    return (b_settings or m).copy(f"{source.host}/team/second:v1", f"{B}:v1")


def test_a_blob_held_by_another_repository_is_mounted_not_fetched_nor_uploaded(
        source, ecr, table, endpoint, images):
    digest = shared_digest(images)
    report = copy_both(mirror(source, ecr, endpoint), source)
    assert report.status == "copied", report.error
    assert (report.blobs_mounted, report.bytes_mounted) == (1, len(SHARED))
    assert blob_gets(source, digest) == 0  # never fetched from the source
    own = len(layer_bytes("mount-b"))
    config = strict_ecr.uploaded_bytes[B] - own
    assert 0 < config < 4096 and report.bytes_uploaded == strict_ecr.uploaded_bytes[B]
    assert endpoint.server.mounted == [(A, B, digest)]
    assert tags_in_ecr(ecr, B) == {"v1": report.target_digest}
    layers = ecr.batch_check_layer_availability(repositoryName=B, layerDigests=[digest])["layers"]
    assert layers[0]["layerAvailability"] == "AVAILABLE"


def test_where_a_mounted_blob_landed_is_recorded_so_a_third_repository_mounts_too(
        source, ecr, table, endpoint, images):
    m = mirror(source, ecr, endpoint)
    copy_both(m, source)
    third = m.copy(f"{source.host}/team/second:v1", "mirror/app-c:v1")
    assert third.status == "copied" and third.blobs_mounted == 3  # B's config and both layers
    assert third.bytes_uploaded == 0 and strict_ecr.uploaded_bytes["mirror/app-c"] == 0
    # The account setting and the token are asked once, whatever the number of mounts.
    assert strict_ecr.calls["GetAccountSetting"] == 1 and strict_ecr.calls["GetAuthorizationToken"] == 1
    # A token is asked for again shortly before it expires (ECR's last 12 hours).
    m.mounts.clock = lambda: time.time() + 12 * 3600 - 60
    assert m.copy(f"{source.host}/team/second:v1", "mirror/app-d:v1").blobs_mounted == 3
    assert strict_ecr.calls["GetAuthorizationToken"] > 1 and strict_ecr.calls["GetAccountSetting"] == 1


def test_a_blob_only_uploaded_to_a_without_a_manifest_is_refused_and_uploaded(
        source, ecr, table, endpoint, images):
    """ECR mounts only a blob a manifest of the source repository references:
    the 202's upload session is cancelled and the blob uploaded as usual."""
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    m.repository(A).ensure_exists()
    client = m.source_client(parse(f"{source.host}/team/first:v1"))
    with client.open_blob("team/first", digest, len(SHARED)) as stream:
        m.repository(A).upload_blob(stream)
    assert m.mounts is not None
    m.mounts.record(m.repository(A), [digest])  # a record, but no manifest in A names it
    source.reset_counts()
    report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1")
    assert report.status == "copied", report.error
    assert report.blobs_mounted == 0 and blob_gets(source, digest) == 1
    assert strict_ecr.uploaded_bytes[B] == report.bytes_uploaded >= len(SHARED)
    assert endpoint.server.requests["mount"] == 1
    assert endpoint.server.cancelled == 1 and endpoint.server.sessions == {}


def test_different_encryption_is_refused_and_uploaded(source, ecr, table, endpoint, images):
    digest = shared_digest(images)
    mirror(source, ecr, endpoint).copy(f"{source.host}/team/first:v1", f"{A}:v1")
    source.reset_counts()
    kms = mirror(source, ecr, endpoint, kms_key="alias/mirror")
    report = kms.copy(f"{source.host}/team/second:v1", f"{B}:v1")
    assert report.status == "copied", report.error
    assert report.blobs_mounted == 0 and blob_gets(source, digest) == 1
    assert endpoint.server.cancelled == 1


@pytest.mark.parametrize("how", ["parameter", "account setting"])
def test_mounting_off_is_todays_behaviour(source, ecr, table, endpoint, images, how):
    digest = shared_digest(images)
    m = (mirror(source, ecr, endpoint, mounting=False) if how == "parameter"
         else mirror(source, ecr, endpoint, setting="DISABLED"))
    report = copy_both(m, source)
    assert report.status == "copied" and report.blobs_mounted == 0
    assert blob_gets(source, digest) == 1 and strict_ecr.uploaded_bytes[B] >= len(SHARED)
    assert sum(endpoint.server.requests.values()) == 0  # the registry endpoint never asked
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert not [i for i in items if i["lease"]["S"].startswith("landed#")]  # nor any record written


@pytest.mark.parametrize("fault", ["wrong-digest", "500", "redirect", "foreign-location"])
def test_a_hostile_answer_falls_back_to_an_upload_and_leaks_no_token(
        source, ecr, table, endpoint, images, fault, caplog):
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    with EcrMount() as elsewhere:
        endpoint.server.fault, endpoint.server.redirect_to = fault, elsewhere.url
        m.copy(f"{source.host}/team/first:v1", f"{A}:v1")
        source.reset_counts()
        with caplog.at_level(logging.DEBUG, logger="ecr_mirror"):
            report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1")
        # neither a redirect followed nor a session on another host cancelled (with the token)
        assert sum(elsewhere.server.requests.values()) == 0 and elsewhere.server.authorizations == []
    assert report.status == "copied", report.error
    assert report.blobs_mounted == 0 and blob_gets(source, digest) == 1
    assert tags_in_ecr(ecr, B) == {"v1": report.target_digest}
    token = endpoint.server.authorizations[-1].split()[-1]
    assert token and token not in caplog.text and "auth-token" not in caplog.text
    assert sum(1 for r in caplog.records if "blob mount not done" in r.getMessage()) == 1


def test_without_a_lease_table_nothing_is_mounted_nor_asked(source, ecr, endpoint, images):
    ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    settings = MirrorSettings(prefix="mirror", retry=FAST_RETRY, region="us-east-1",
                              registries={source.host: SourceRegistry(insecure=True)},
                              ecr_registry_endpoint=endpoint.url)
    m = Mirror(settings, ecr_client=ecr)
    assert m.mounts is None
    report = copy_both(m, source)
    assert report.status == "copied" and report.blobs_mounted == 0
    assert sum(endpoint.server.requests.values()) == 0


def test_without_dynamodb_nothing_is_mounted_and_the_copy_still_succeeds(source, ecr, endpoint, images,
                                                                         monkeypatch, ecr_endpoint):
    """Where blobs landed is unreadable (here: no such table): no mount, an upload, as leases degrade."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ecr_endpoint)
    report = copy_both(mirror(source, ecr, endpoint), source)
    assert report.status == "copied" and report.blobs_mounted == 0, report.error
    assert strict_ecr.uploaded_bytes[B] >= len(SHARED)
    assert sum(endpoint.server.requests.values()) == 0


def one_try_client():
    """An ECR client without botocore's retries: an injected error reaches the mirror at once."""
    from botocore.config import Config

    return boto3.client("ecr", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))


@pytest.mark.parametrize("code", ["ThrottlingException", "ServerException"])
def test_a_temporary_account_setting_failure_is_asked_again_after_a_while(
        source, ecr, table, endpoint, images, code):
    """Throttling or a 5xx while reading BLOB_MOUNTING turns mounting off for a few
    minutes, not for the life of a warm Lambda."""
    m = mirror(source, ecr, endpoint)
    m = Mirror(m.settings, ecr_client=one_try_client())
    strict_ecr.fail_next("GetAccountSetting", code)
    assert copy_both(m, source).blobs_mounted == 0  # off: A was not recorded, B uploaded
    assert strict_ecr.calls["GetAccountSetting"] == 1
    assert m.copy(f"{source.host}/team/second:v1", "mirror/app-c:v1").blobs_mounted == 0
    assert strict_ecr.calls["GetAccountSetting"] == 1  # not asked again at once
    assert m.mounts is not None
    m.mounts.clock = lambda: time.time() + 600
    m.copy(f"{source.host}/team/second:v1", "mirror/app-x:v1")  # asked again: on; recorded
    assert strict_ecr.calls["GetAccountSetting"] == 2
    assert m.copy(f"{source.host}/team/second:v1", "mirror/app-d:v1").blobs_mounted == 3


def test_access_denied_to_the_account_setting_keeps_mounting_off(source, ecr, table, endpoint, images):
    m = Mirror(mirror(source, ecr, endpoint).settings, ecr_client=one_try_client())
    strict_ecr.fail_next("GetAccountSetting", "AccessDeniedException")
    assert copy_both(m, source).blobs_mounted == 0
    assert m.mounts is not None
    m.mounts.clock = lambda: time.time() + 24 * 3600
    assert m.copy(f"{source.host}/team/second:v1", "mirror/app-c:v1").blobs_mounted == 0
    assert strict_ecr.calls["GetAccountSetting"] == 1 and sum(endpoint.server.requests.values()) == 0


def markers(repository: str | None = None) -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return [i for i in items if i["lease"]["S"].startswith("uploading#")
            and (repository is None or i["repository"]["S"] == repository)]


def waiting() -> list[dict]:
    return [i for i in boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
            if i["lease"]["S"].startswith("waiting#")]


@contextlib.contextmanager
def a_uploading(m: Mirror, source):
    """A's copy into mirror/app-a runs in a thread, held at the proxy inside its first
    blob GET (so after it took its upload markers) until the block ends."""
    source.hold_until("GET blob", 1000, timeout=60)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        a=m.copy(f"{source.host}/team/first:v1", f"{A}:v1", hand_back=True)))
    thread.start()
    try:
        for _ in range(6000):  # a wait for A to reach the proxy, not a timing assertion
            if source.in_flight["GET blob"]:
                break
            time.sleep(0.01)
        assert source.in_flight["GET blob"], "A never fetched a blob"
        yield result
    finally:
        source._gates["GET blob"][1].set()
        thread.join()


def test_two_repositories_copying_a_shared_layer_at_once_upload_it_once(
        source, ecr, table, endpoint, images, fast_poll):
    """Issue 14, acceptance 4: B needs the layer A is uploading: B does not mark it,
    waits for A to be complete, and mounts the layer from A."""
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    second: dict = {}
    with a_uploading(m, source) as result:
        thread = threading.Thread(target=lambda: second.update(
            b=m.copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True)))
        thread.start()
        for _ in range(3000):  # a wait for B to wait for the layer, not a timing assertion
            if waiting() or not thread.is_alive():
                break
            time.sleep(0.01)
        assert waiting() and thread.is_alive()
        assert {i["lease"]["S"] for i in markers(A)} >= {f"uploading#us-east-1#{digest}"}
        assert f"uploading#us-east-1#{digest}" not in {i["lease"]["S"] for i in markers(B)}
    thread.join(60)
    assert result["a"].status == "copied", result["a"].error
    again = second["b"]
    assert again.status == "copied", again.error
    assert markers() == []  # both complete: their markers gone, their homes recorded
    assert endpoint.server.mounted == [(A, B, digest)]
    assert strict_ecr.uploaded_bytes[A] >= len(SHARED) > strict_ecr.uploaded_bytes[B]
    assert blob_gets(source, digest) == 1  # fetched once, by A
    assert tags_in_ecr(ecr, B) == {"v1": again.target_digest}


def test_past_the_bound_or_without_a_queue_the_layer_is_uploaded_anyway(
        source, ecr, table, endpoint, images):
    m = mirror(source, ecr, endpoint)
    with a_uploading(m, source):
        report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1")  # hand_back=False: bound reached
        assert report.status == "copied", report.error
        assert strict_ecr.uploaded_bytes[B] >= len(SHARED) and markers(B) == []


def test_mounting_off_takes_no_upload_markers(source, ecr, table, endpoint, images):
    m = mirror(source, ecr, endpoint, mounting=False)
    with a_uploading(m, source):
        report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True)
        assert report.status == "copied", report.error
        assert markers() == []
    assert sum(endpoint.server.requests.values()) == 0


def mark_uploading(digest: str, repository: str, expires_in: float, now: float | None = None) -> None:
    """The upload marker another worker (another process) holds: taken, not yet released."""
    expires = int((now if now is not None else time.time()) + expires_in)
    boto3.client("dynamodb").put_item(TableName=TABLE, Item={
        "lease": {"S": f"uploading#us-east-1#{digest}"}, "repository": {"S": repository},
        "owner": {"S": "another-worker"}, "expires": {"N": str(expires)}})


@pytest.fixture
def fast_poll(monkeypatch):
    from ecr_mirror.copy import blobs

    monkeypatch.setattr(blobs, "MARKER_POLL_SECONDS", 0.05)
    monkeypatch.setattr(blobs, "MARKER_POLL_MAX_SECONDS", 0.05)


def test_an_image_waiting_for_a_marked_layer_copies_its_own_blobs_meanwhile_then_mounts_it(
        source, ecr, table, endpoint, images, fast_poll):
    """Mounting on must not make a cold sync slower: B, which needs the layer another
    worker is uploading into A, is not handed back to start over later; it uploads
    what it does not share at once, waits in-process for A to be complete, mounts."""
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    mark_uploading(digest, A, expires_in=600)
    own = len(layer_bytes("mount-b"))
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        b=m.copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True)))
    thread.start()
    try:
        for _ in range(3000):  # a wait for B to upload its own layer, not a timing assertion
            if strict_ecr.uploaded_bytes.get(B, 0) >= own or not thread.is_alive():
                break
            time.sleep(0.01)
        assert thread.is_alive(), f"B did not wait for the marked layer: {result['b'].status}"
        assert strict_ecr.uploaded_bytes[B] >= own and blob_gets(source, digest) == 0
        first = m.copy(f"{source.host}/team/first:v1", f"{A}:v1")  # the other worker's image completes
        assert first.status == "copied", first.error
    finally:
        thread.join(60)
    report = result["b"]
    assert report.status == "copied", report.error
    assert endpoint.server.mounted == [(A, B, digest)] and report.blobs_mounted == 1
    assert blob_gets(source, digest) == 1  # fetched once, by A
    assert strict_ecr.uploaded_bytes[B] == report.bytes_uploaded < len(SHARED)
    assert tags_in_ecr(ecr, B) == {"v1": report.target_digest}
    assert markers(B) == []


def test_near_the_deadline_an_image_waiting_for_a_marked_layer_is_handed_back_holding_nothing(
        source, ecr, table, endpoint, images, fast_poll):
    """Too little time left to wait for the other image: handed back (UploadBusy, counted
    in handBacks), keeping the blobs it uploaded, holding no marker, nothing tagged."""
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    mark_uploading(digest, A, expires_in=600)
    deadline = Deadline(lambda: m.settings.stop_margin + 0.01, m.settings.stop_margin)
    report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True, deadline=deadline)
    assert report.status == "deferred" and report.defer_reason is DeferReason.UPLOAD_BUSY, report.error
    assert report.retry_after and markers(B) == [] and tags_in_ecr(ecr, B) == {}
    assert blob_gets(source, digest) == 0


def test_a_marker_left_by_a_crashed_worker_blocks_nothing_past_its_expiry(
        source, ecr, table, endpoint, images, fast_poll):
    """A worker that died (Lambda timeout, OOM) never releases its marker: once the
    marker expires, the waiting image takes it over and uploads the layer itself."""
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    start = time.time()
    now = [start]
    m.leases.clock = lambda: now[0]  # the lease table's "now", stepped by the waits below
    mark_uploading(digest, A, expires_in=30, now=now[0])

    def sleep(seconds: float) -> None:
        now[0] += seconds * 200  # each poll is 10 s of the fake clock

    deadline = Deadline(lambda: 900.0, m.settings.stop_margin, sleeper=sleep)
    report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True, deadline=deadline)
    assert report.status == "copied", report.error
    assert now[0] > start + 30  # it waited out the marker, not less
    assert blob_gets(source, digest) == 1 and strict_ecr.uploaded_bytes[B] >= len(SHARED)
    assert markers() == []  # B's markers released; the stale one was taken over, then released


def test_an_expired_marker_is_no_marker(source, ecr, table, endpoint, images):
    digest = shared_digest(images)
    mark_uploading(digest, A, expires_in=-1)
    report = mirror(source, ecr, endpoint).copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True)
    assert report.status == "copied", report.error
    assert blob_gets(source, digest) == 1 and markers() == []


def test_of_two_images_each_waiting_for_a_layer_the_other_marked_one_gives_way_at_once(
        source, ecr, table, endpoint, images, fast_poll):
    """A deadlock of two: another worker's image (into B) holds the shared layer's
    marker and waits for a blob this image (into mirror/app-c) has marked. Waiting
    would last until a marker expires; the image with the later repository name
    hands itself back at once, releasing its markers, so the other goes on."""
    digest = shared_digest(images)
    own = next(d for d in images[1].blobs[1:] if d != digest)
    m = mirror(source, ecr, endpoint)
    start = time.time()
    now = [start]
    m.leases.clock = lambda: now[0]
    mark_uploading(digest, B, expires_in=600, now=start)
    boto3.client("dynamodb").put_item(TableName=TABLE, Item={  # B's image waits for `own`
        "lease": {"S": "waiting#us-east-1#another-worker"}, "owner": {"S": "another-worker"},
        "for": {"SS": [own]}, "expires": {"N": str(int(start + 600))}})

    def sleep(seconds: float) -> None:
        now[0] += seconds * 200

    deadline = Deadline(lambda: 900.0, m.settings.stop_margin, sleeper=sleep)
    report = m.copy(f"{source.host}/team/second:v1", "mirror/app-c:v1", hand_back=True, deadline=deadline)
    assert report.status == "deferred" and report.defer_reason is DeferReason.UPLOAD_BUSY, report.error
    assert now[0] - start < 600  # not held until the other's marker expired
    assert blob_gets(source, digest) == 0 and markers("mirror/app-c") == []
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert [i["lease"]["S"] for i in items if i["lease"]["S"].startswith("waiting#")] == [
        "waiting#us-east-1#another-worker"]  # its own "waiting" record is gone too


def test_no_wait_for_a_marked_layer_crosses_the_deadline_margin(source, ecr, table, endpoint, images):
    """The looks at a marked layer back off (0.5, 1, 2, 4 s): each wait must still fit
    in the time left before the margin, or the image is handed back first."""
    digest = shared_digest(images)
    m = mirror(source, ecr, endpoint)
    mark_uploading(digest, A, expires_in=600)
    slept: list[float] = []
    usable = 3.0

    def time_left() -> float:
        return m.settings.stop_margin + usable - sum(slept)

    deadline = Deadline(time_left, m.settings.stop_margin, sleeper=slept.append)
    report = m.copy(f"{source.host}/team/second:v1", f"{B}:v1", hand_back=True, deadline=deadline)
    assert report.status == "deferred" and report.defer_reason is DeferReason.UPLOAD_BUSY, report.error
    assert slept and sum(slept) <= usable, slept
