"""Immutable tags: a release tag already in ECR is not asked about upstream again.

    defaults:
      immutableTags: ["*.*.*"]          # every entry's, unless it says otherwise
    images:
      - source: postgres
        tags: ["16.4", "16.3"]
        immutableTags: ["16.*"]         # replaces the default list; [] turns it off

A selected tag that matches one of the entry's globs (fnmatch-style, whole tag,
case-sensitive: the same matching as `tags` and `exclude`) and that the target
repository already holds is *pinned*: no HEAD, no referrer check, no copy. When
the entry names its tags exactly and every one is pinned, the source is not
contacted at all. A matching tag missing from ECR is copied once as usual.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..ecr import TaggedImage
from ..errors import UsageError

#: Characters a tag may hold, and those a glob adds (`*`, `?`, `[...]`, `[!...]`).
_GLOB = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]+")

SCHEMA = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 128}}


def immutable_globs(value: Any, where: str) -> tuple[str, ...]:
    """The globs of an `immutableTags` list the schema let through; UsageError if one
    can never match a tag (`where` names the field: `immutableTags`, `defaults.immutableTags`)."""
    globs = tuple(value or ())
    for i, glob in enumerate(globs):
        if not _GLOB.fullmatch(glob):
            raise UsageError(f"{where}[{i}]: {glob!r} can never match a tag (tags hold letters, "
                             "digits, _ . and -; a glob adds * ? and [...])")
    return globs


def is_immutable(tag: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(tag, glob) for glob in globs)


def split_pinned(tags: Iterable[str], current: Mapping[str, TaggedImage], globs: tuple[str, ...],
                 ) -> tuple[dict[str, TaggedImage], list[str]]:
    """(tag → what ECR holds, for the pinned tags; the tags still to look at upstream)."""
    pinned: dict[str, TaggedImage] = {}
    rest: list[str] = []
    for tag in tags:
        held = current.get(tag)
        if held is not None and is_immutable(tag, globs):
            pinned[tag] = held
        else:
            rest.append(tag)
    return pinned, rest
