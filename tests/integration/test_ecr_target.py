"""The ECR side on its own: batches, resumes, idempotent answers, read-ahead."""

from __future__ import annotations

import hashlib
import threading

import pytest

from ecr_mirror.ecr import EcrRepository
from ecr_mirror.errors import TargetError
from ecr_mirror_testing import strict_ecr
from tests.integration.conftest import MiB

pytestmark = pytest.mark.integration


class FakeStream:
    """Stands in for a source blob: known bytes, a running digest, read calls logged."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset, self.size = data, 0, len(data)
        self.digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.reads: list[int] = []
        self.read_called = threading.Condition()

    def readinto(self, buffer: bytearray) -> int:
        chunk = self.data[self.offset:self.offset + len(buffer)]
        buffer[:len(chunk)] = chunk
        self.offset += len(chunk)
        with self.read_called:
            self.reads.append(self.offset)
            self.read_called.notify_all()
        return len(chunk)

    def verify(self) -> None:
        assert self.offset == len(self.data)


class Wrapped:
    """The real boto3 client, with one method wrapped."""

    def __init__(self, client, **overrides) -> None:
        self._client, self._overrides = client, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._client, name)


def test_layer_checks_go_in_batches_of_at_most_100(ecr):
    repo = EcrRepository(ecr, "mirror/batches")
    repo.ensure_exists()
    digests = [f"sha256:{i:064x}" for i in range(250)]
    strict_ecr.reset_calls()
    assert repo.missing_layers(digests) == set(digests)
    assert strict_ecr.calls["BatchCheckLayerAvailability"] == 3


def test_a_part_ecr_already_received_is_not_sent_twice(ecr):
    """A lost answer: the part reached ECR, the retry gets InvalidLayerPartException."""
    data = bytes(range(256)) * (12 * MiB // 256)  # 3 parts of 5 MiB
    calls = []

    def upload_layer_part(**kwargs):
        calls.append(kwargs["partFirstByte"])
        if len(calls) == 2:
            ecr.upload_layer_part(**kwargs)  # ECR stores it; the answer is "lost"
        return ecr.upload_layer_part(**kwargs)

    repo = EcrRepository(Wrapped(ecr, upload_layer_part=upload_layer_part), "mirror/resume")
    repo.ensure_exists()
    stream = FakeStream(data)
    assert repo.upload_blob(stream) == len(data)
    assert calls == [0, 5 * MiB, 10 * MiB]
    assert not repo.missing_layers([stream.digest])


def test_a_gap_before_the_current_part_restarts_the_blob_as_temporary(ecr):
    def upload_layer_part(**kwargs):
        if kwargs["partFirstByte"] > 0:  # pretend the first part was dropped
            kwargs = {**kwargs, "partFirstByte": kwargs["partFirstByte"] + 1}
        return ecr.upload_layer_part(**kwargs)

    repo = EcrRepository(Wrapped(ecr, upload_layer_part=upload_layer_part), "mirror/gap")
    repo.ensure_exists()
    with pytest.raises(TargetError) as err:
        repo.upload_blob(FakeStream(b"x" * (6 * MiB)))
    assert err.value.temporary and err.value.code == "InvalidLayerPartException"


def test_existing_layer_and_existing_image_count_as_success(ecr):
    repo = EcrRepository(ecr, "mirror/idem")
    repo.ensure_exists()
    stream = FakeStream(b"config")
    repo.upload_blob(stream)
    assert repo.upload_blob(FakeStream(b"config")) == 6  # LayerAlreadyExistsException
    manifest = ('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"' + stream.digest + '",'
                '"size":6},"layers":[]}')
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    media = "application/vnd.oci.image.manifest.v1+json"
    assert repo.put_image(manifest, media, digest, "t") == digest
    assert repo.put_image(manifest, media, digest, "t") == digest  # ImageAlreadyExistsException


def test_the_next_part_is_read_while_the_current_one_uploads(ecr):
    """Read-ahead: when part k is being uploaded, part k+1 has been asked of the source."""
    data = b"y" * (15 * MiB + 1)
    stream = FakeStream(data)
    read_ahead = []

    def upload_layer_part(**kwargs):
        end = kwargs["partLastByte"] + 1
        with stream.read_called:  # wait (bounded) for the reader to move past this part
            stream.read_called.wait_for(lambda: stream.reads[-1] > end or end == len(data), timeout=10)
        read_ahead.append(stream.reads[-1] > end or end == len(data))
        return ecr.upload_layer_part(**kwargs)

    repo = EcrRepository(Wrapped(ecr, upload_layer_part=upload_layer_part), "mirror/overlap")
    repo.ensure_exists()
    repo.upload_blob(stream)
    assert read_ahead == [True, True, True, True]


def test_a_part_ecr_received_in_part_is_resumed_mid_part(ecr, monkeypatch):
    """ECR kept the first 6 MiB + 7 bytes of a 12 MiB part and the answer was lost:
    the rest of the part is sent from there (a slice of the part buffer, at an
    odd offset) and the layer is complete and intact."""
    monkeypatch.setenv(strict_ecr.PART_SIZE_ENV, str(12 * MiB))  # the rest is >= 5 MiB, as ECR wants
    data = bytes((i * 31) % 251 for i in range(256)) * (15 * MiB // 256)
    cut, calls = 6 * MiB + 7, []

    def upload_layer_part(**kwargs):
        calls.append((kwargs["partFirstByte"], kwargs["partLastByte"]))
        if len(calls) == 1:
            ecr.upload_layer_part(**{**kwargs, "partLastByte": cut - 1,
                                     "layerPartBlob": kwargs["layerPartBlob"][:cut]})
        return ecr.upload_layer_part(**kwargs)

    repo = EcrRepository(Wrapped(ecr, upload_layer_part=upload_layer_part), "mirror/midpart")
    repo.ensure_exists()
    stream = FakeStream(data)
    assert repo.upload_blob(stream) == len(data)
    assert calls == [(0, 12 * MiB - 1), (cut, 12 * MiB - 1), (12 * MiB, len(data) - 1)]
    assert not repo.missing_layers([stream.digest])
