"""YAML for untrusted-shaped text: bounded, and every failure one line with its place.

PyYAML's safe loader composes recursively (1,000 nested `[` raise
RecursionError), turns a 5,000-digit integer into Python's int-string
ValueError, expands aliases by reference (a few lines can stand for millions of
entries) and writes multi-line error messages. Here each of those is a
`UsageError` naming the input, the line and column, and what to do.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import UsageError

#: Nesting a mirror config never needs (it is four levels deep).
MAX_DEPTH = 32
#: Nodes, counting each alias as the size of what it names.
MAX_NODES = 100_000


class _Refused(yaml.MarkedYAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}

    def _count(self, n: int, mark: yaml.Mark) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise _Refused(None, None, f"too large: more than {MAX_NODES:,} values (aliases counted "
                                       "as what they repeat); split the config or repeat less", mark)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), mark)
            return node
        mark = self.peek_event().start_mark
        if self._depth >= MAX_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep; a mirror config "
                                       "needs four, look for an unclosed [ or {", mark)
        self._depth += 1
        before = self._nodes
        self._count(1, mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            digits = sum(ch.isdigit() for ch in node.value)
            raise _Refused(None, None, f"a number of {digits} digits is too long to be a count; "
                                       "use a smaller one", node.start_mark) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


def load_yaml(text: str, *, origin: str) -> Any:
    """The YAML document in `text`; any problem is one `UsageError` line naming `origin`."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader
    except _Refused as exc:
        raise UsageError(f"{origin}: {_where(exc)}{exc.problem}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        context = " ".join(str(getattr(exc, "context", None) or "").split())
        detail = f"{problem} ({context})" if context else problem
        raise UsageError(f"{origin} is not valid YAML: {_where(exc)}{detail}") from None
