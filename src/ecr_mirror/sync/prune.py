"""Prune: untag what an entry no longer selects, when ecr-mirror put it there.

Opt-in per image (`prune: true`, `pruneMax: N`, also in `defaults`). After
planning, for each such entry whose selection is known (its tag listing
worked, something matched), the candidates are the tags recorded as
ecr-mirror's in the target repository (ownership.py) that the selection no
longer names: fell out of `latest: N` or a semver range, or removed from
`tags`. A candidate whose ECR digest is not the recorded one was moved by
someone else: it is forgotten, never touched. At most `pruneMax` are untagged
(`BatchDeleteImage` by tag) a run; the rest are listed for the next. A dry run
lists and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import MirrorError
from ..mirror import Mirror
from .config import ImageEntry, MirrorConfig
from .plan import Plan, default_target

log = logging.getLogger(__name__)


@dataclass
class PruneResult:
    #: Untagged this run ({"target": "repo:tag", "digest"}); on a dry run, would be.
    pruned: list[dict[str, str]] = field(default_factory=list)
    #: Beyond an entry's `pruneMax`: left for the next runs.
    later: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned, "pruneLater": self.later}


def wanted(config: MirrorConfig) -> bool:
    """Does any entry ask for pruning (and so the answer show it)?"""
    return any(entry.prune for entry in config.images)


def prune(config: MirrorConfig, plan: Plan, mirror: Mirror, *, dry_run: bool) -> PruneResult:
    result = PruneResult()
    kept = _kept_by_repository(config, plan, mirror)
    for entry in config.images:
        selection = plan.selections.get(entry.index)
        if not entry.prune or selection is None:
            continue  # not asked, or the selection is unknown: nothing is pruned on a guess
        repository = selection[0]
        if kept[repository] is None:
            continue  # another entry writing here has an unknown selection
        try:
            _prune_entry(entry, repository, kept[repository] or set(), mirror, dry_run, result)
        except MirrorError as exc:
            result.errors.append({"entry": f"{entry.label} prune", "message": f"{exc.kind}: {exc}"})
    return result


def _kept_by_repository(config: MirrorConfig, plan: Plan, mirror: Mirror) -> dict[str, set[str] | None]:
    """Repository → the tags every entry writing there selects (two entries may share a
    target); None when one of them has an unknown selection (its listing failed)."""
    kept: dict[str, set[str] | None] = {}
    for entry in config.images:
        selection = plan.selections.get(entry.index)
        repository = selection[0] if selection else _target_repository(entry, config, mirror)
        if repository is None:
            continue  # a target refused outright: nothing was ever written there by it
        tags = kept.setdefault(repository, set())
        if selection is None or tags is None:
            kept[repository] = None
        else:
            tags.update(selection[1])
    return kept


def _target_repository(entry: ImageEntry, config: MirrorConfig, mirror: Mirror) -> str | None:
    try:  # no request: the name alone, as planning computes it
        return mirror.target_for(entry.source, entry.target or default_target(
            entry.source, config, mirror))[0]
    except MirrorError:
        return None


def _prune_entry(entry: ImageEntry, repository: str, selected: set[str], mirror: Mirror,
                 dry_run: bool, result: PruneResult) -> None:
    owned = mirror.ownership.owned(repository)
    candidates = sorted(set(owned) - selected)
    if not candidates:
        return
    target = mirror.repository(repository)
    current = target.tagged_many(candidates)
    mine = [t for t in candidates if t in current and current[t].digest == owned[t]]
    moved = [t for t in candidates if t not in mine]  # deleted or moved by hand since: not ours
    now, later = mine[:entry.prune_max], mine[entry.prune_max:]
    result.later += [_item(repository, t, owned[t]) for t in later]
    if dry_run:
        result.pruned += [_item(repository, t, owned[t]) for t in now]
        return
    removed, refused = target.untag(now) if now else ([], {})
    mirror.ownership.forget(repository, removed + moved)
    result.pruned += [_item(repository, t, owned[t]) for t in removed]
    for tag, why in sorted(refused.items()):
        result.errors.append({"entry": f"{entry.label} prune {repository}:{tag}", "message": why})
    if removed:
        log.info("pruned tags", extra={"repository": repository, "tags": removed})


def _item(repository: str, tag: str, digest: str) -> dict[str, str]:
    return {"target": f"{repository}:{tag}", "digest": digest}
