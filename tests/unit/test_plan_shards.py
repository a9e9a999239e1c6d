"""Splitting a config into planning shards (sync/shards.py): sizes, groups, order."""

from ecr_mirror.handlers.shards import parts_of, target_repository
from ecr_mirror.mirror import Mirror, MirrorSettings
from ecr_mirror.sync.config import load_config
from ecr_mirror.sync.plan import fitting
from ecr_mirror.sync.shards import PATTERN_TAGS, estimate, part, split

MIRROR = Mirror(MirrorSettings(prefix="mirror", enforce_prefix=True, region="us-east-1"))


def shards_of(text: str, limit: int) -> list[list[int]]:
    config = load_config(text)
    return split(config, limit, lambda entry: target_repository(entry, config, MIRROR))


def test_entries_writing_to_one_repository_are_planned_in_one_shard():
    # nginx and docker.io/library/nginx are one target (mirror/dockerhub/library/nginx), as
    # are the two entries naming mirror/shared: split, one shard would prune the other's tags.
    text = """
images:
  - {source: nginx, tags: ['1', '2']}
  - {source: redis, tags: ['7']}
  - {source: ghcr.io/o/x, tags: [a], target: mirror/shared}
  - {source: alpine, tags: ['3']}
  - {source: docker.io/library/nginx, tags: ['3'], prune: true}
  - {source: quay.io/o/y, tags: [b, c], target: mirror/shared}
"""
    shards = shards_of(text, 2)
    together = {frozenset(s) for s in shards}
    assert any({0, 4} <= s for s in together) and any({2, 5} <= s for s in together), shards
    assert sorted(i for s in shards for i in s) == [0, 1, 2, 3, 4, 5]  # each entry once
    assert shards == shards_of(text, 2)  # the same config splits the same way


def test_shards_hold_at_most_the_limit_unless_one_repository_is_larger():
    text = "images:\n" + "".join(f"  - {{source: r{i}, tags: [a, b, c]}}\n" for i in range(10)) + \
        "  - {source: big, latest: 40}\n"
    config = load_config(text)
    shards = shards_of(text, 7)
    sizes = [estimate(part(config, s)) for s in shards]
    assert sizes == [6, 6, 6, 6, 6, 40]
    assert parts_of(config, MIRROR, 70) == [list(range(11))]  # 70 tags estimated: one planner, as before
    assert parts_of(config, MIRROR, 69) == [list(range(10)), [10]]


def test_the_estimate_needs_no_request():
    config = load_config("""
images:
  - {source: a, tags: ['1', '2', '1']}
  - {source: b, latest: 5}
  - {source: c, semver: '>=1', latest: 3}
  - {source: d, regex: ['^v.*']}
  - {source: e, tags: ['1.*']}
""")
    assert estimate(config) == 2 + 5 + 3 + PATTERN_TAGS + PATTERN_TAGS


def test_a_part_of_the_config_keeps_its_settings_and_not_its_errors():
    config = load_config("registries: {docker.io: {reserve: 3}}\n"
                         "images:\n  - {source: a, tags: ['1']}\n  - {source: b}\n  - {source: c, tags: ['2']}\n")
    sub = part(config, [2])
    assert [e.index for e in sub.images] == [2] and sub.errors == [] and config.errors
    assert sub.registries == config.registries


def test_a_shard_spends_its_budget_as_one_planner_would():
    # In order; once a job does not fit, only jobs costing nothing go (apply_budget's rule).
    assert fitting([1, 2, 1, 0, 1], 3) == [True, True, False, True, False]
    assert fitting([5], 4) == [False] and fitting([], 9) == []
