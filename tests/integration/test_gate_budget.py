"""The signature gate's own pulls in the scheduler's pull estimate.

With `verify`, the worker looks for a changed image's signature before copying it:
manifest GETs at the source (the `.sig` tag's manifest, the fallback referrers index,
each signature referrer), counted by Docker Hub like any pull. The planner reserves
them, so a budget that pays for the copy but not for the gate defers the image
instead of meeting a 429 in the worker. Same stack as test_rate_limits: the Docker
Hub simulator in front of the real distribution registry, the real handlers."""

from __future__ import annotations

import pytest

from ecr_mirror.handlers import common
from ecr_mirror.handlers.warm import mirror_settings
from ecr_mirror.mirror import Mirror
from ecr_mirror.signatures import GATE_PULLS
from ecr_mirror.sync.plan import build_plan
from ecr_mirror_testing.cosign import Signer, list_referrers
from ecr_mirror_testing.images import layer_bytes, make_image
from tests.integration.conftest import tags_in_ecr
from tests.integration.test_rate_limits import clock, drain, hub, schedule, stack, write_config  # noqa: F401

pytestmark = pytest.mark.integration
REPO = "library/gated"


def config(verify: Signer | None) -> str:
    """The image with the gate on `verify`'s key; without: its referrers copied all the
    same (what the gate implies), so the two plans differ by the gate alone."""
    text = f"registries:\n  docker.io: {{reserve: 0}}\nimages:\n  - source: {REPO}\n    tags: ['1.0']\n"
    if verify is None:
        return text + "    referrers: true\n"
    pem = "\n".join(f"        {line}" for line in verify.public_pem.decode().splitlines())
    return text + f"    verify:\n      cosignKey: |\n{pem}\n"


def planned_cost(text: str) -> int:
    write_config(text)
    loaded = common.read_config(fresh=True)
    (job,) = build_plan(loaded, Mirror(mirror_settings(loaded))).jobs
    return job.cost


@pytest.fixture
def signed(registry):
    """An image whose signature the gate finds last: a `.sig` tag signed by another
    key, then a signature referrer listed in the fallback index (3 counted pulls)."""
    signer, stranger = Signer.generate(), Signer.generate()
    img = make_image(registry.url, REPO, "1.0", oci=True, layers=[layer_bytes("gated")])
    stranger.push_sig_tag(registry.url, REPO, img.digest)
    list_referrers(registry.url, REPO, img, [signer.referrer(registry.url, REPO, img)])
    return signer, img


def test_a_gated_job_costs_the_gates_pulls_and_the_worker_stays_within_it(
        stack, hub, registry, ecr, clock, signed):
    sqs, queue_url, _ = stack
    signer, img = signed
    hub.reset_window()
    hub.set_remaining("anonymous", 100)
    ungated = planned_cost(config(None))
    gated = planned_cost(config(signer))
    assert gated == ungated + GATE_PULLS

    hub.reset_counts()
    assert schedule()["queued"] == 1
    assert drain(sqs, queue_url, clock)["failed"] == 0
    assert tags_in_ecr(ecr, "mirror/dockerhub/library/gated")["1.0"] == img.digest
    # what the worker pulled was reserved for it; without the gate's share it would not be
    assert ungated < hub.pulls() <= gated


def test_a_budget_that_pays_for_the_copy_but_not_the_gate_defers_the_image(
        stack, hub, registry, ecr, clock, signed):
    signer, _ = signed
    hub.reset_window()
    hub.set_remaining("anonymous", 100)
    copy = planned_cost(config(None))  # the image and its referrers, without the gate
    hub.reset_window()
    hub.set_remaining("anonymous", copy)
    write_config(config(signer))
    first = schedule()
    assert (first["queued"], first["deferred"]) == (1, 1), first
