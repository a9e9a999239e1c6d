"""Planning shards: a config too large for one planner, split into parts.

The size of an entry is an estimate made without a request: exact tags count
as themselves, `latest: N` as N, and any other pattern (globs, regex, semver
without `latest`) as PATTERN_TAGS. Entries that write to the same target
repository stay together (pruning keeps the union of what they select: split,
one shard would untag what the other selects). Groups are packed in config
order into shards of at most `limit` tags (a group larger than that is a shard
of its own), so the same config always splits the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .config import ImageEntry, MirrorConfig

#: Tags assumed for an entry whose tags are only known by listing the source's.
PATTERN_TAGS = 25


def estimated_tags(entry: ImageEntry) -> int:
    selector = entry.selector
    if selector.exact_only:
        return len(set(selector.names))
    if selector.latest is not None:
        return selector.latest
    return PATTERN_TAGS


def estimate(config: MirrorConfig) -> int:
    return sum(estimated_tags(e) for e in config.images)


def split(config: MirrorConfig, limit: int, target: Callable[[ImageEntry], str | None]
          ) -> list[list[int]]:
    """The entry indexes of each shard (one shard when the config is within `limit`).
    `target(entry)` names the entry's target repository (None: refused; alone)."""
    groups: dict[str, list[ImageEntry]] = {}
    for entry in config.images:
        repository = target(entry)
        groups.setdefault(repository if repository is not None else f"#{entry.index}", []).append(entry)
    shards: list[list[int]] = []
    size = limit  # the first group starts a shard
    for group in groups.values():  # in order of each group's first entry
        weight = sum(estimated_tags(e) for e in group)
        if size + weight > limit:
            shards.append([])
            size = 0
        shards[-1] += [e.index for e in group]
        size += weight
    return shards or [[]]


def part(config: MirrorConfig, indexes: list[int]) -> MirrorConfig:
    """The config with only these entries (its errors were the scheduler's to report)."""
    chosen = set(indexes)
    return replace(config, images=[e for e in config.images if e.index in chosen], errors=[])
