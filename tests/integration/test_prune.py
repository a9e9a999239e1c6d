"""prune: true through the real handlers (issue 13, item 3).

The scheduler plans from the SSM config, the worker copies (and records each tag
it moves as ecr-mirror's in the lease table), then a later scheduled run, with a
narrower selection, untags what the entry no longer selects. Everything AWS is
moto (ECR with ECR's rules); the source is the real distribution registry.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from ecr_mirror.handlers import scheduler, worker
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, deliver
from tests.integration.conftest import create_lease_table, ecr_image, tags_in_ecr
from tests.integration.test_schedule import PARAMETER, app, scheduled_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
TABLE = "ecr-mirror-LeaseTable-prune"
TAGS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]


class Mirrored:
    """One upstream repository with TAGS, mirrored by the stack into `repository`."""

    def __init__(self, app, registry, ecr) -> None:
        self.sqs, self.queue_url = app
        self.ecr = ecr
        self.name = f"library/pruned-{uuid.uuid4().hex[:8]}"
        self.repository = f"mirror/dockerhub/{self.name}"
        self.digests = {tag: make_image(registry.url, self.name, tag,
                                        layers=[layer_bytes(f"{self.name}-{tag}")]).digest
                        for tag in TAGS}

    def configure(self, *others: dict, **entry) -> None:
        image = {"source": self.name, **entry}
        config = {"defaults": {"targetPrefix": "mirror"},
                  "images": [image, *({"source": self.name, **o} for o in others)]}
        boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(config), Type="String",
                                          Overwrite=True)

    def sync(self, dry_run: bool = False) -> dict:
        """A scheduled run, then the worker drains the queue."""
        answer = (scheduler.handler({"dryRun": True}, FakeContext()) if dry_run else scheduled_run())
        deliver(self.sqs, self.queue_url, worker.handler)
        return answer

    def tags(self) -> dict[str, str]:
        """Tag → digest of every tag in the ECR repository."""
        return tags_in_ecr(self.ecr, self.repository)

    def tag_by_hand(self, tag: str, like: str) -> None:
        image = ecr_image(self.ecr, self.repository, tag=like)
        self.ecr.put_image(repositoryName=self.repository, imageManifest=image["imageManifest"],
                           imageManifestMediaType=image["imageManifestMediaType"], imageTag=tag)

    def pruned(self, answer: dict, key: str = "pruned") -> list[str]:
        return [item["target"].rsplit(":", 1)[1] for item in answer[key]]


@pytest.fixture
def mirrored(app, registry, ecr, monkeypatch):
    create_lease_table(TABLE)
    monkeypatch.setenv("ECR_MIRROR_LEASE_TABLE", TABLE)
    m = Mirrored(app, registry, ecr)
    m.configure(latest=4, prune=True)
    first = m.sync()
    assert first["queued"] == 4 and first["pruned"] == [] and first["pruneLater"] == [], first
    assert m.tags() == m.digests
    return m


def metric(capsys, name: str) -> list:
    """The values of one metric in the EMF lines the handlers printed."""
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{") and "_aws" in line]
    return [m[name] for m in emitted if name in m]


def test_tags_that_fell_out_of_latest_are_untagged_and_a_hand_set_tag_is_not(mirrored, capsys):
    mirrored.tag_by_hand("hand", like="1.0.0")  # the same image as a tag about to be pruned
    mirrored.tag_by_hand("mine", like="1.3.0")
    mirrored.configure(latest=2, prune=True)
    capsys.readouterr()

    answer = mirrored.sync()
    assert metric(capsys, "TagsPruned") == [[2.0]]

    assert mirrored.pruned(answer) == ["1.0.0", "1.1.0"] and answer["errors"] == 0, answer
    assert answer["pruned"][0] == {"target": f"{mirrored.repository}:1.0.0",
                                   "digest": mirrored.digests["1.0.0"]}
    d = mirrored.digests
    assert mirrored.tags() == {"1.2.0": d["1.2.0"], "1.3.0": d["1.3.0"],
                               "hand": d["1.0.0"], "mine": d["1.3.0"]}
    # Nothing left to prune: the next run untags nothing.
    assert mirrored.sync()["pruned"] == []


def test_without_prune_nothing_is_untagged(mirrored):
    mirrored.configure(latest=2)
    answer = mirrored.sync()
    assert "pruned" not in answer
    assert set(mirrored.tags()) == set(TAGS)


def test_prune_max_caps_a_run_and_lists_the_rest_for_the_next(mirrored):
    mirrored.configure(latest=1, prune=True, pruneMax=1)

    first = mirrored.sync()
    assert mirrored.pruned(first) == ["1.0.0"]
    assert mirrored.pruned(first, "pruneLater") == ["1.1.0", "1.2.0"]
    assert set(mirrored.tags()) == {"1.1.0", "1.2.0", "1.3.0"}

    second = mirrored.sync()
    assert mirrored.pruned(second) == ["1.1.0"] and mirrored.pruned(second, "pruneLater") == ["1.2.0"]
    assert set(mirrored.tags()) == {"1.2.0", "1.3.0"}


def test_a_failed_upstream_listing_prunes_nothing(mirrored, source):
    mirrored.configure(latest=1, prune=True)
    source.fail("GET tags", 404, times=3)

    answer = mirrored.sync()

    assert answer["pruned"] == [] and answer["errors"] == 1, answer
    [error] = answer["errorDetails"]
    assert error["entry"] == f"images[0] ({mirrored.name})" and "NAME_UNKNOWN" in error["message"]
    assert set(mirrored.tags()) == set(TAGS)


def test_a_dry_run_lists_and_changes_nothing(mirrored, capsys):
    mirrored.configure(latest=2, prune=True, pruneMax=1)

    capsys.readouterr()
    answer = mirrored.sync(dry_run=True)

    assert metric(capsys, "TagsPrunable") == [[1.0]] and not metric(capsys, "TagsPruned")
    assert answer["dryRun"] and mirrored.pruned(answer) == ["1.0.0"]
    assert mirrored.pruned(answer, "pruneLater") == ["1.1.0"]
    assert set(mirrored.tags()) == set(TAGS)
    # Nothing forgotten either: the real run prunes what the dry run listed.
    assert mirrored.pruned(mirrored.sync()) == ["1.0.0"]
    assert set(mirrored.tags()) == {"1.1.0", "1.2.0", "1.3.0"}


def test_a_tag_moved_by_hand_since_is_not_pruned(mirrored):
    mirrored.tag_by_hand("1.0.0", like="1.3.0")  # someone re-pointed a mirrored tag
    mirrored.configure(latest=2, prune=True)

    answer = mirrored.sync()

    assert mirrored.pruned(answer) == ["1.1.0"], answer
    assert mirrored.tags()["1.0.0"] == mirrored.digests["1.3.0"]


def test_a_tag_another_entry_selects_in_the_same_repository_is_kept(mirrored):
    mirrored.configure({"tags": ["1.0.0"]}, latest=1, prune=True)

    answer = mirrored.sync()

    assert mirrored.pruned(answer) == ["1.1.0", "1.2.0"], answer
    assert set(mirrored.tags()) == {"1.0.0", "1.3.0"}


def test_when_another_entry_of_the_repository_failed_its_listing_nothing_is_pruned(mirrored):
    # Another upstream repository, mirrored into the same target, whose listing fails.
    other = {"source": "library/absent-upstream", "target": mirrored.repository, "latest": 1}
    mirrored.configure(other, latest=1, prune=True)

    answer = mirrored.sync()

    assert answer["pruned"] == [] and answer["errors"] == 1, answer
    assert "absent-upstream" in answer["errorDetails"][0]["entry"]
    assert set(mirrored.tags()) == set(TAGS)


def test_a_pinned_tag_is_still_selected_so_it_is_never_pruned(mirrored):
    """Immutable tags ECR holds are not asked about upstream (pinned), but they are
    still the entry's selection: prune must not take "not HEADed" for "not selected"."""
    mirrored.configure(tags=TAGS, immutableTags=["1.0.*", "1.1.*"], prune=True)
    answer = mirrored.sync()
    assert answer["pinned"] == 2 and answer["unchanged"] == 2 and answer["pruned"] == [], answer
    assert mirrored.tags() == mirrored.digests
