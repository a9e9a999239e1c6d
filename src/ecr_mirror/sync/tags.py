"""Tag selection: exact names, globs, regular expressions, semver ranges, latest N.

A tag is chosen when it is named exactly, matches a glob in `tags`, matches
a regular expression in `regex` (whole tag), or is a version inside the
`semver` range; then `exclude` globs remove tags, and `latest: N` keeps the N
newest by version. With only exact names, no tag list is needed at all.

Versions are plain release tags, `1`, `1.27`, `1.27.3`, with an optional `v`.
A tag with a suffix (`1.27-alpine`) is not a version here: choose variants
with a glob or a regular expression.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import semver

GLOB_CHARS = frozenset("*?[")
# Used with fullmatch: `re.match(...$)` would accept a trailing newline.
_RELEASE = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_COMPARATOR = re.compile(r"(>=|<=|>|<|==|=|!=|\^|~)?\s*v?(\d+(?:\.\d+){0,2})")


def as_version(tag: str) -> semver.Version | None:
    m = _RELEASE.fullmatch(tag)
    if not m:
        return None
    major, minor, patch = (int(g) if g is not None else 0 for g in m.groups())
    return semver.Version(major, minor, patch)


def _partial(text: str) -> tuple[semver.Version, int]:
    parts = [int(p) for p in text.split(".")]
    return semver.Version(*(parts + [0] * (3 - len(parts)))), len(parts)


@dataclass(frozen=True)
class SemverRange:
    """`>=1.25 <2`, `^1.4`, `~1.27.0`, `1.2 || >=2.1`: comparators joined by
    spaces or commas (all must hold) and alternatives joined by `||`."""

    text: str
    alternatives: tuple[tuple[Callable[[semver.Version], bool], ...], ...]

    @classmethod
    def parse(cls, text: str) -> SemverRange:
        alternatives = []
        for alternative in text.split("||"):
            tokens = [t for t in re.split(r"[\s,]+", alternative.strip()) if t]
            # allow ">= 1.2" written with a space
            merged: list[str] = []
            for token in tokens:
                if merged and merged[-1] in (">=", "<=", ">", "<", "==", "=", "!=", "^", "~"):
                    merged[-1] += token
                else:
                    merged.append(token)
            if not merged:
                raise ValueError(f'"{text}" has an empty alternative; write e.g. ">=1.25 <2"')
            alternatives.append(tuple(cls._comparator(t, text) for t in merged))
        return cls(text, tuple(alternatives))

    @staticmethod
    def _comparator(token: str, text: str) -> Callable[[semver.Version], bool]:
        m = _COMPARATOR.fullmatch(token)
        if not m:
            raise ValueError(f'"{token}" in "{text}" is not a version comparator; '
                             'use >=, <=, >, <, =, !=, ^ or ~ before a version such as 1.25 or 1.25.3')
        op, (version, given) = m.group(1) or "=", _partial(m.group(2))
        if op == "^":  # same major (or same minor below 1.0)
            upper = version.bump_major() if version.major else version.bump_minor()
            return lambda v: version <= v < upper
        if op == "~":  # same minor (or same major when only the major is given)
            upper = version.bump_minor() if given >= 2 else version.bump_major()
            return lambda v: version <= v < upper
        if op in ("=", "==") and given < 3:  # "=1.27" means any 1.27.x
            upper = version.bump_minor() if given == 2 else version.bump_major()
            return lambda v: version <= v < upper
        compare = {">=": lambda v: v >= version, "<=": lambda v: v <= version,
                   ">": lambda v: v > version, "<": lambda v: v < version,
                   "=": lambda v: v == version, "==": lambda v: v == version,
                   "!=": lambda v: v != version}
        return compare[op]

    def __contains__(self, version: semver.Version) -> bool:
        return any(all(check(version) for check in alt) for alt in self.alternatives)


@dataclass(frozen=True)
class TagSelector:
    names: tuple[str, ...] = ()  # exact tags and globs
    regexes: tuple[re.Pattern, ...] = ()
    semver: SemverRange | None = None
    exclude: tuple[str, ...] = ()
    latest: int | None = None

    @property
    def exact_only(self) -> bool:
        """True when the tags are known without listing the source's tags."""
        return (bool(self.names) and not self.regexes and self.semver is None
                and self.latest is None and not any(GLOB_CHARS & set(n) for n in self.names))

    def select(self, list_tags: Callable[[], Iterable[str]]) -> list[str]:
        if self.exact_only:
            return sorted(n for n in set(self.names) if not self._excluded(n))
        available = list(dict.fromkeys(list_tags()))
        chosen = [t for t in available if self._chosen(t) and not self._excluded(t)]
        if self.latest is not None:
            versions = sorted(((as_version(t), t) for t in chosen if as_version(t) is not None),
                              key=lambda pair: (pair[0], pair[1]), reverse=True)
            chosen = [t for _, t in versions[:self.latest]]
        return sorted(chosen)

    def _chosen(self, tag: str) -> bool:
        if not (self.names or self.regexes or self.semver):  # only `latest: N`
            return True
        if any(tag == n or fnmatch.fnmatchcase(tag, n) for n in self.names):
            return True
        if any(r.fullmatch(tag) for r in self.regexes):
            return True
        version = as_version(tag)
        return self.semver is not None and version is not None and version in self.semver

    def _excluded(self, tag: str) -> bool:
        return any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.exclude)
