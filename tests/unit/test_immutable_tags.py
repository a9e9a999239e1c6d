"""`immutableTags`: which tags an entry treats as never moving, and the errors
that name the entry and the field when the list is malformed."""

from __future__ import annotations

import pytest

from ecr_mirror.ecr import TaggedImage
from ecr_mirror.errors import UsageError
from ecr_mirror.sync.config import load_config
from ecr_mirror.sync.pinned import split_pinned


def test_an_entry_list_replaces_the_default_and_an_empty_one_turns_it_off():
    config = load_config("""
defaults:
  immutableTags: ["*.*.*"]
images:
  - source: nginx
    tags: [stable]
  - source: postgres
    tags: ["16.4"]
    immutableTags: ["16.*"]
  - source: redis
    tags: ["7.2.4"]
    immutableTags: []
""")
    assert not config.errors
    assert [e.immutable_tags for e in config.images] == [("*.*.*",), ("16.*",), ()]


def test_globs_match_whole_tags_like_tags_and_exclude_do():
    held = {t: TaggedImage(f"sha256:{i:064x}", "", None)
            for i, t in enumerate(["16.4", "16.4-alpine", "latest", "V16.3"])}
    pinned, rest = split_pinned(["16.4", "16.4-alpine", "latest", "V16.3", "16.5"], held,
                                ("16.?", "v16.*"))
    # 16.5 matches but is not in ECR: it is looked at (and copied) as usual;
    # globs are case-sensitive and whole-tag, as everywhere else in the config.
    assert sorted(pinned) == ["16.4"]
    assert rest == ["16.4-alpine", "latest", "V16.3", "16.5"]


def test_bad_entries_are_named_with_the_field_and_the_good_ones_still_run():
    config = load_config("""
images:
  - source: nginx
    tags: [stable]
    immutableTags: ["1.*"]
  - source: postgres
    tags: ["16.4"]
    immutableTags: "16.*"
  - source: node
    tags: ["20"]
    immutableTags: [20.11]
  - source: redis
    tags: ["7"]
    immutableTags: ["7 .*"]
  - source: httpd
    tags: ["2"]
    immutableTags: [""]
""")
    assert [i.source.familiar() for i in config.images] == ["nginx"]
    errors = {e.entry: e.message for e in config.errors}
    assert "immutableTags must be array" in errors["images[1] (postgres)"]
    assert "immutableTags[0]" in errors["images[2] (node)"] and "quote" in errors["images[2] (node)"]
    assert "immutableTags[0]" in errors["images[3] (redis)"] and "never match" in errors["images[3] (redis)"]
    assert "immutableTags[0]" in errors["images[4] (httpd)"]


@pytest.mark.parametrize("text,needle", [
    ("images: []\ndefaults: {immutableTags: '*'}", "defaults.immutableTags must be array"),
    ("images: []\ndefaults: {immutableTags: ['a/b']}", "defaults.immutableTags[0]"),
    ("images: []\ndefaults: {immutableTag: ['*']}", "did you mean `immutableTags`"),
])
def test_a_bad_default_stops_the_config_with_one_line(text, needle):
    with pytest.raises(UsageError) as err:
        load_config(text, origin="mirror.yaml")
    assert str(err.value).startswith("mirror.yaml: ") and needle in str(err.value)
    assert "\n" not in str(err.value)
