"""Planning: which configured image tags need copying, decided without a pull.

For each image entry: choose the tags (listing the source's tags only when a
pattern needs it), resolve each with HEAD (free on Docker Hub), read what the
target tags hold from ECR in batches, and keep the ones that differ. Errors
stay with their entry or tag: one bad image never stops the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..copy.graph import MAX_INDEX_DEPTH
from ..copy.options import ReferrerPolicy
from ..copy.referrers import ReferrerWalk, unchanged_subjects
from ..ecr import TaggedImage
from ..errors import MirrorError, SetupError
from ..jsonkeys import camel_keys
from ..manifest import INDEX_TYPES, Platform
from ..mirror import Mirror
from ..mirrored import already_mirrored
from ..queue import Message, options_body
from ..reference import Reference
from ..signatures import gate_pulls
from .config import ImageEntry, MirrorConfig
from .heads import HeadPools
from .pinned import is_immutable, split_pinned

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One image to copy: what the scheduler queues and the worker takes."""

    source: str  # fully qualified, with the tag
    target: str  # repository:tag
    platforms: list[str]
    source_digest: str
    #: Manifest GETs (counted pulls) the copy is expected to cost.
    cost: int = 1
    #: Epoch seconds before which the worker must not start (budget deferral).
    not_before: float | None = None
    #: The entry's referrer policy and signature gate (key specs), for the worker.
    referrers: ReferrerPolicy | None = None
    verify: tuple[str, ...] = ()

    def message(self) -> Message:
        return Message(self.source, self.target, tuple(self.platforms), self.source_digest,
                       self.not_before, referrers=self.referrers, verify=self.verify)

    def as_dict(self) -> dict[str, Any]:
        """The job as JSON shows it (camelCase; `referrers`/`verify` as a message has them)."""
        data = camel_keys({k: v for k, v in asdict(self).items() if k not in ("referrers", "verify")})
        return {**data, **options_body(self.referrers, self.verify)}

    @property
    def registry(self) -> str:
        return self.source.split("/", 1)[0]


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    unchanged: list[dict[str, str]] = field(default_factory=list)
    #: Immutable tags already in ECR: not asked about upstream (sync/pinned.py).
    pinned: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    source_requests: dict[str, int] = field(default_factory=dict)
    #: Jobs held back by a pull budget (queued with `not_before`).
    deferred: int = 0
    #: Entry index → (target repository, the tags selected upstream), for the entries
    #: whose selection is known (their tag listing worked): what `prune` keeps.
    selections: dict[int, tuple[str, list[str]]] = field(default_factory=dict)

    @property
    def planned(self) -> int:
        return len(self.jobs) + len(self.unchanged) + len(self.pinned)

    def summary(self) -> dict[str, Any]:
        return {"planned": self.planned, "unchanged": len(self.unchanged), "pinned": len(self.pinned),
                "toCopy": len(self.jobs), "deferred": self.deferred, "errors": len(self.errors)}

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON shows it (camelCase, see docs/schema/output.schema.json)."""
        return {**self.summary(), "jobs": [j.as_dict() for j in self.jobs],
                "unchangedImages": self.unchanged, "pinnedImages": self.pinned,
                "errorDetails": self.errors,
                "sourceRequests": camel_keys(self.source_requests)}


def build_plan(config: MirrorConfig, mirror: Mirror) -> Plan:
    """The mirror's settings say whether targets must lie under its prefix (the
    functions) or not (the CLI): each target goes through `Mirror.target_for`.

    Entries are planned `plan_concurrency` at once, and their HEADs go to one pool
    per source registry of that size, shared by every entry: as many HEADs in
    flight whether one repository holds all the tags or each repository one."""
    plan = Plan(errors=[e.as_dict() for e in config.errors])
    heads = HeadPools(mirror.settings.plan_concurrency)
    try:
        with ThreadPoolExecutor(mirror.settings.plan_concurrency) as pool:
            results = list(pool.map(lambda e: _plan_entry(e, config, mirror, heads), config.images))
    finally:
        heads.close()
    for entry, (jobs, unchanged, pinned, errors, selection) in zip(config.images, results, strict=True):
        if selection is not None:
            plan.selections[entry.index] = selection
        plan.jobs += jobs
        plan.unchanged += unchanged
        plan.pinned += pinned
        plan.errors += errors
    plan.jobs = spread_by_repository(plan.jobs)
    plan.source_requests = mirror.source_stats()
    return plan


def spread_by_repository(jobs: list[Job]) -> list[Job]:
    """The queue's order: one image of each target repository in turn, those with
    the most images first, each repository's in their planned order.

    Workers take messages in about this order, so concurrent workers are seldom
    on the same repository, where they would wait for each other's shared layers."""
    by_repository: dict[str, list[Job]] = {}
    for job in jobs:
        by_repository.setdefault(job.target.rpartition(":")[0], []).append(job)
    queues = sorted(by_repository.values(), key=len, reverse=True)
    return [q[i] for i in range(len(queues[0]) if queues else 0) for q in queues if i < len(q)]


def _plan_entry(entry: ImageEntry, config: MirrorConfig, mirror: Mirror, heads: HeadPools,
                ) -> tuple[list[Job], list[dict], list[dict], list[dict], tuple[str, list[str]] | None]:
    """(jobs, unchanged, pinned, errors, selection): the selection is the target
    repository and every tag selected (pinned ones too), for `prune`."""
    jobs: list[Job] = []
    unchanged: list[dict] = []
    errors: list[dict] = []
    try:
        # The target first: a refused one costs no request, to the source or to ECR.
        # (The config already holds a bare repository: no tag, no registry host.)
        target_repo, _, _ = mirror.target_for(
            entry.source, entry.target or _default_target(entry.source, config, mirror))
        client = mirror.source_client(entry.source)
        tags = entry.selector.select(lambda: client.list_tags(entry.source.repository))
        # HEADs start before ECR is read (and before the ECR client is made, the
        # first time), so the two overlap; a tag that may be pinned waits for what
        # ECR holds (a pinned tag costs no HEAD).
        asked = heads.batch()
        for tag in tags:
            if not is_immutable(tag, entry.immutable_tags):
                asked.ask(client, entry.source, tag)
        target = mirror.repository(target_repo)
        current = target.tagged_many(tags)
        # One walk for the entry: the fallback tags are listed once, a subject looked at once.
        walk = ReferrerWalk(client, entry.source.repository, target, entry.referrers, fetch=False,
                            image=entry.label) if entry.referrers else None
    except SetupError:
        raise  # no AWS credentials: said once, not once per image
    except MirrorError as exc:
        return [], [], [], [{"entry": entry.label, "message": f"{exc.kind}: {exc}"}], None
    if not tags:
        errors.append({"entry": entry.label, "message": "no source tag matches the selection"})
    selection = (target_repo, list(tags)) if tags else None  # nothing selected: an error, not "prune all"
    # Immutable tags ECR holds: no HEAD, no referrer check (with exact names, no request at all).
    held, tags = split_pinned(tags, current, entry.immutable_tags)
    pinned = [{"source": str(entry.source.with_tag(tag)), "target": f"{target_repo}:{tag}",
               "digest": image.digest} for tag, image in held.items()]

    for tag in tags:
        if tag not in asked:
            asked.ask(client, entry.source, tag)
    answers = asked.answers()
    for tag in tags:
        answer = answers[tag]
        ref = entry.source.with_tag(tag)
        if isinstance(answer, MirrorError):
            errors.append({"entry": f"{entry.label} tag {tag}", "message": f"{answer.kind}: {answer}"})
            continue
        item = {"source": str(ref), "target": f"{target_repo}:{tag}", "digest": answer.digest}
        same = already_mirrored(answer.digest, current.get(tag), entry.platforms)
        try:
            # Referrers missing in ECR, found without a pull (the image's own
            # when it changed: its children's are only known once it is fetched).
            missing, writes = (0, 0) if walk is None else _missing_referrers(
                walk, unchanged_subjects(answer.digest, current.get(tag)) if same else [answer.digest])
        except MirrorError as exc:
            errors.append({"entry": f"{entry.label} tag {tag}", "message": f"{exc.kind}: {exc}"})
            continue
        if same and not writes:
            unchanged.append(item)
        else:
            cost = 0 if same else (_pull_cost(answer.media_type, current.get(tag), entry.platforms,
                                              target.manifests) + gate_pulls(entry.verify))
            jobs.append(Job(source=str(ref), target=f"{target_repo}:{tag}",
                            platforms=[str(p) for p in entry.platforms], source_digest=answer.digest,
                            cost=cost + missing, referrers=entry.referrers, verify=entry.verify))
    return jobs, unchanged, pinned, errors, selection


def _missing_referrers(walk: ReferrerWalk | None, subjects: list[str]) -> tuple[int, int]:
    """(counted pulls, manifests and tags to write) the referrers of `subjects`
    would take; (0, 0) with referrers off."""
    if walk is None:
        return 0, 0
    before = walk.outcome.missing, walk.outcome.writes
    walk.walk(subjects)
    return walk.outcome.missing - before[0], walk.outcome.writes - before[1]


#: Children assumed for an index never seen before (an official image has
#: about eight platforms, each with an attestation manifest).
DEFAULT_INDEX_CHILDREN = 16

#: Reads manifests from ECR by digest (free: no pull); see `EcrRepository.manifests`.
ManifestReader = Callable[[list[str]], dict[str, str]]


def _pull_cost(media_type: str, current: TaggedImage | None, platforms: tuple[Platform, ...],
               read: ManifestReader | None = None) -> int:
    """Counted pulls a copy will take: the manifest, and for an index its children.

    The graph of the index now in ECR is the best guess: its children, and for a
    child that is an index its own children, read from ECR level by level (one
    BatchGetImage a level, at most `MAX_INDEX_DEPTH` levels). A child index ECR
    cannot show counts as one never seen. With a platform subset, two per
    platform (image and attestation).
    """
    if media_type not in INDEX_TYPES:
        return 1
    if platforms:
        return 1 + 2 * len(platforms)
    children = _children(current.manifest) if current is not None else None
    if children is None:
        return 1 + DEFAULT_INDEX_CHILDREN
    cost, depth = 1, 1
    while children:
        cost += len(children)
        nested = [d["digest"] for d in children
                  if d.get("mediaType") in INDEX_TYPES and isinstance(d.get("digest"), str)]
        depth += 1
        if not nested or depth > MAX_INDEX_DEPTH:
            break
        texts = _read_quietly(read, nested)
        children = []
        for digest in nested:
            below = _children(texts.get(digest))
            if below is None:
                cost += DEFAULT_INDEX_CHILDREN
            else:
                children += below
    return cost


def _children(manifest: str | None) -> list[dict[str, Any]] | None:
    """The descriptors an index lists; None when it is not one we can read. (What
    ECR holds was pushed by anyone with access to the repository: only a guess.)"""
    if manifest is None:
        return None
    try:
        children = json.loads(manifest).get("manifests")
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(children, list):
        return None
    return [d for d in children if isinstance(d, dict)]


def _read_quietly(read: ManifestReader | None, digests: list[str]) -> dict[str, str]:
    """An estimate never fails a plan: what ECR cannot show is guessed."""
    if read is None:
        return {}
    try:
        return read(digests)
    except MirrorError as exc:
        log.info("pull estimate: ECR manifests not read", extra={"error": str(exc)})
        return {}


#: Which of a registry's jobs (their costs, in plan order) a payer pays for, given
#: the registry's headroom and its window: (registry, headroom, costs, window) -> paid.
Payer = Callable[[str, int, list[int], float], list[bool]]


def fitting(costs: list[int], available: int) -> list[bool]:
    """Which jobs `available` pulls pay for: in plan order, first come, first
    served; once one does not fit, only those that cost nothing."""
    paid = []
    for cost in costs:
        paid.append(cost <= available)
        available = available - cost if cost <= available else 0
    return paid


def apply_budget(plan: Plan, mirror: Mirror, now: float, pay: Payer | None = None) -> None:
    """Hold back the jobs a registry's pull budget cannot pay for now.

    Each registry's headroom (remaining pulls above the reserve, over all its
    credentials, as the HEADs of planning reported them) pays for jobs in plan
    order (`fitting`, or `pay`: shards reserve from a shared counter); the rest
    get `not_before` = now + the registry's window, so the worker starts them
    once the budget should have reset.
    """
    for registry, budget in mirror.pull_budgets().items():
        headroom = budget.headroom()
        if headroom is None:
            continue  # no rate limit known: nothing to hold back
        positions = [i for i, job in enumerate(plan.jobs) if job.registry == registry]
        costs = [plan.jobs[i].cost for i in positions]
        window = budget.wait_seconds()
        paid = pay(registry, headroom, costs, window) if pay else fitting(costs, headroom)
        for i in (i for i, ok in zip(positions, paid, strict=True) if not ok):
            plan.jobs[i] = replace(plan.jobs[i], not_before=now + window)
            plan.deferred += 1


def _default_target(source: Reference, config: MirrorConfig, mirror: Mirror) -> str:
    from ..ecr.names import default_repository

    prefix = config.target_prefix if config.target_prefix is not None else mirror.settings.prefix
    return default_repository(source, prefix)


#: The target repository an entry without `target` gets (prune needs it too).
default_target = _default_target
