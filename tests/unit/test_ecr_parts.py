"""The spliced UploadLayerPart body is the body botocore would have sent."""

import base64
import json
import threading

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


def spliced(part: bytes, first: int = 0) -> memoryview:
    """The body `splice_part` makes for `part`, as botocore would send it."""
    params = {"body": json.dumps({"repositoryName": "mirror/x", "uploadId": "u",
                                  "partFirstByte": first, "partLastByte": first + len(part) - 1,
                                  "layerPartBlob": ""}).encode()}
    context = {}
    parts.take_part({"layerPartBlob": part}, context)
    parts.splice_part(params, context)
    return memoryview(params["body"])


def decoded(body) -> bytes:
    return base64.b64decode(json.loads(bytes(body))["layerPartBlob"])


def test_one_body_buffer_per_thread_reused_from_part_to_part():
    big, short = bytes(range(256)) * 4096, b"tail of the blob"  # 1 MiB, then a short final part
    first = spliced(big)
    assert decoded(first) == big
    second = spliced(short)  # shorter: nothing of the first part's body follows it
    assert decoded(second) == short and len(second) == len(bytes(second))
    assert second.obj is first.obj, "a fresh body buffer was allocated for the second part"
    third = spliced(big + b"x")  # longer than any before: a bigger buffer, still correct
    assert decoded(third) == big + b"x"
    assert spliced(big).obj is third.obj


def test_threads_never_share_a_body_buffer():
    bodies = {}
    barrier = threading.Barrier(2)

    def upload(name, part):
        body = spliced(part)
        barrier.wait()  # both bodies exist at once, as with two upload threads
        bodies[name] = (body, part)

    threads = [threading.Thread(target=upload, args=(n, bytes([n]) * (300_000 + n))) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bodies[1][0].obj is not bodies[2][0].obj
    for body, part in bodies.values():  # read after both threads wrote theirs
        assert decoded(body) == part


def in_new_thread(test):
    """Run `test` on a thread of its own (no body buffer yet), raising what it raises."""
    errors = []
    thread = threading.Thread(target=lambda: errors.extend(catch(test)))
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def catch(test):
    try:
        test()
    except BaseException as exc:
        return [exc]
    return []


def test_later_parts_reuse_the_buffer_though_their_offsets_have_more_digits():
    part = bytes(range(256)) * 4096

    def upload_parts():
        buffer = spliced(part, first=0).obj  # the first part of a blob
        for first in (len(part), 10 * len(part), 1000 * len(part), 10**12):  # 7 to 13 digits
            body = spliced(part, first=first)
            assert body.obj is buffer, f"a new body buffer was allocated for the part at byte {first}"
            assert decoded(body) == part and json.loads(bytes(body))["partFirstByte"] == first

    in_new_thread(upload_parts)
