"""The spliced UploadLayerPart body is the body botocore would have sent."""

import json

import boto3
import pytest

from ecr_mirror.ecr import parts


def serialized_body(install: bool, blob: bytes) -> bytes:
    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    if install:
        parts.install(client)
    captured = {}

    def capture(request, **_):
        captured["body"] = bytes(request.body)
        raise RuntimeError("stop before sending")

    client.meta.events.register("before-send.ecr.UploadLayerPart", capture)
    with pytest.raises(RuntimeError):
        client.upload_layer_part(repositoryName="mirror/x", uploadId="u", partFirstByte=0,
                                 partLastByte=len(blob) - 1, layerPartBlob=blob)
    return captured["body"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 196_607, 196_608, 196_609, 10 * 1024 * 1024 + 1])
def test_same_json_and_length_as_botocore(size, monkeypatch):
    pieces = []
    real = parts.pybase64.b64encode
    monkeypatch.setattr(parts.pybase64, "b64encode", lambda data: pieces.append(type(data)) or real(data))
    blob = bytes((i * 7) % 251 for i in range(size))
    ours = serialized_body(True, blob)
    assert memoryview in pieces, "the splice hook did not run"
    theirs = serialized_body(False, blob)
    assert json.loads(ours) == json.loads(theirs)
    assert len(ours) == len(theirs)
