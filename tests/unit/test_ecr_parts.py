"""The spliced UploadLayerPart body is the body botocore would have sent."""

import base64
import json
import threading
import tracemalloc

import boto3
import pytest

from ecr_mirror.ecr import parts


def prepared_upload(blob, *, install: bool = True):
    """An UploadLayerPart of `blob`, signed (through the hooks if `install`), as it
    would go on the wire (the prepared request); nothing is sent."""
    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="secret", endpoint_url="http://127.0.0.1:9")
    if install:
        parts.install(client)
    captured = {}

    def capture(request, **_):
        captured["request"] = request
        raise RuntimeError("stop before sending")

    client.meta.events.register("before-send.ecr.UploadLayerPart", capture)
    with pytest.raises(RuntimeError):
        client.upload_layer_part(repositoryName="mirror/x", uploadId="u", partFirstByte=0,
                                 partLastByte=len(blob) - 1, layerPartBlob=blob)
    return captured["request"]


def serialized_body(install: bool, blob: bytes) -> bytes:
    body = prepared_upload(blob, install=install).body
    return body if isinstance(body, memoryview) else bytes(body)


@pytest.mark.parametrize("kind", [bytes, bytearray])  # read-only, and a part buffer (as uploaded)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 196_607, 196_608, 196_609, 10 * 1024 * 1024 + 1])
def test_same_json_and_length_as_botocore(size, kind):
    blob = kind((i * 7) % 251 for i in range(size))
    ours = serialized_body(True, blob)
    assert isinstance(ours, memoryview), "the splice hook did not run"
    theirs = serialized_body(False, blob)
    assert json.loads(bytes(ours)) == json.loads(theirs)
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


def test_a_part_is_encoded_straight_into_the_body_buffer():
    """No base64 piece is allocated and copied: a 2 MiB part (from a part
    buffer, as the uploader hands it over) is spliced without the hook
    allocating anything near a piece's size."""
    part = bytearray(bytes(range(256)) * 8192)

    def splice_twice():
        spliced(memoryview(part))  # the thread's body buffer now exists
        tracemalloc.start()
        try:
            body = spliced(memoryview(part), first=len(part))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert decoded(body) == part
        assert peak < 64 * 1024, f"splicing one part allocated {peak} bytes at once"

    in_new_thread(splice_twice)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 196_607, 196_608, 196_609])
def test_encoded_in_place_as_pybase64_encodes(size):
    part = bytearray((i * 13) % 256 for i in range(size))
    for offset in (0, 1, 2):  # a part that starts inside its buffer (a resumed part)
        view = memoryview(part)[offset:]
        if len(view):
            assert decoded(spliced(view)) == bytes(view)
            assert json.loads(bytes(spliced(view)))["layerPartBlob"] == parts.pybase64.b64encode(view).decode()


# -- the spliced body is the body signed ------------------------------------------

def signature_checks(sent) -> bool:
    """Does the Authorization sent match SigV4 computed from scratch over exactly
    the bytes sent (what ECR verifies)?"""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in sent.headers.items()}
    authorization = headers.pop("Authorization")
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {k: v for k, v in headers.items() if k.lower() in signed}  # as the server does
    request = AWSRequest(method=sent.method, url=sent.url, data=bytes(sent.body), headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "ecr", "us-east-1")
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return authorization.endswith(f"Signature={expected}")


@pytest.mark.parametrize("size", [1, 5, 196_607, 196_608, 196_609, 3 * 1024 * 1024 + 2])
@pytest.mark.parametrize("c_encoder", [True, False])
def test_signature_covers_exactly_the_body_sent(size, c_encoder, monkeypatch):
    if not c_encoder:
        monkeypatch.setattr(parts, "_c_encoder", lambda: None)
    blob = bytearray((i * 31) % 256 for i in range(size))
    sent = prepared_upload(memoryview(blob))
    assert decoded(sent.body) == blob
    assert "X-Amz-Content-SHA256" not in sent.headers, "a header ECR's signer does not expect was added"
    assert signature_checks(sent)


def test_a_body_changed_after_signing_fails_the_check():
    """The check above is not vacuous: one byte changed after signing is noticed."""
    sent = prepared_upload(bytearray(b"\x01\x02\x03" * 100_000))
    assert signature_checks(sent)
    sent.body[len(sent.body) // 2] ^= 0x01
    assert not signature_checks(sent)
