"""YAML for untrusted-shaped text: bounded, and every failure one line with its place.

PyYAML's safe loader composes recursively (1,000 nested `[` raise
RecursionError), turns a 5,000-digit integer into Python's int-string
ValueError, expands aliases by reference (a few lines can stand for millions of
entries) and writes multi-line error messages. Here each of those is a
`UsageError` naming the input, the line and column, and what to do.

Two loaders, one set of bounds. The fast one is libyaml's parser and composer
(in C, in the PyYAML wheel; its own nesting limit keeps its recursion short):
the node graph it builds shares a node wherever an alias repeats one, so the
bounds are checked on the graph, counting a shared node as its size, before a
single value is constructed. A 50,000-tag config loads in a fifth of the CPU
(bench/config_load.py). Anything the fast loader does not accept as it is (a
bound passed, a YAML error, no libyaml) goes to the bounded Python loader,
which stops at the bound and says where: one message whichever way.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml

from ..errors import UsageError

#: Nesting a mirror config never needs (it is four levels deep).
MAX_DEPTH = 32
#: Nodes, counting each alias as the size of what it names.
MAX_NODES = 100_000


class _Refused(yaml.MarkedYAMLError):
    pass


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    """Both loaders' ints: a number too long to convert is refused where it is."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    except ValueError:
        digits = sum(ch.isdigit() for ch in node.value)
        raise _Refused(None, None, f"a number of {digits} digits is too long to be a count; "
                                   "use a smaller one", node.start_mark) from None


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


_INT = "tag:yaml.org,2002:int"
_BoundedLoader.add_constructor(_INT, _construct_int)

if yaml.__with_libyaml__:
    class _FastLoader(yaml.CSafeLoader):
        pass

    _FastLoader.add_constructor(_INT, _construct_int)


@functools.cache
def fast() -> bool:
    """Whether the fast loader may run: libyaml is there and refuses deep nesting
    itself (libyaml 0.2.6, in PyYAML's wheels), so its composer's recursion is short."""
    if not yaml.__with_libyaml__:
        return False
    try:
        for _ in yaml.parse("[" * 2000, Loader=yaml.CSafeLoader):  # events only: no recursion
            pass
    except yaml.YAMLError as exc:
        return "nesting depth" in str(exc)
    return False


def _within_bounds(root: yaml.Node) -> bool:
    """Whether the bounded loader would accept the graph: no node composed deeper
    than MAX_DEPTH, at most MAX_NODES nodes with a repeated (aliased) node counted
    as its size, as that loader counts them (a node repeated inside itself: 1).
    A scalar counts 1 wherever it is: only collections are walked one by one."""
    if not isinstance(root, yaml.CollectionNode):
        return True
    count = 0
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, int]] = [(root, 0, -1)]  # (node, depth, count before it or -1)
    while stack:
        node, depth, before = stack.pop()
        key = id(node)
        if before >= 0:  # every child done: the node's size
            sizes[key] = count - before
            continue
        if key in sizes:  # an alias of a collection seen before (-1 while inside it: 1)
            count += max(sizes[key], 1)
        else:
            if depth >= MAX_DEPTH:
                return False
            sizes[key] = -1
            stack.append((node, depth, count))
            children = (node.value if isinstance(node, yaml.SequenceNode)
                        else [child for pair in node.value for child in pair])
            nested = [child for child in children if isinstance(child, yaml.CollectionNode)]
            if len(nested) < len(children) and depth + 1 >= MAX_DEPTH:
                return False
            count += 1 + len(children) - len(nested)
            stack.extend((child, depth + 1, -1) for child in reversed(nested))
        if count > MAX_NODES:
            return False
    return True


_REFUSED = object()


def _load_fast(text: str) -> Any:
    """The document through libyaml, or `_REFUSED` for the bounded loader to say why.
    It never decides a failure: whatever goes wrong here (a YAML error, a bound, a
    string libyaml cannot take, such as a lone surrogate) is the bounded loader's to say."""
    loader = None
    try:
        loader = _FastLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        if not _within_bounds(node):
            return _REFUSED
        return loader.construct_document(node)
    except Exception:  # see above
        return _REFUSED
    finally:
        if loader is not None:
            loader.dispose()


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


def load_yaml(text: str, *, origin: str) -> Any:
    """The YAML document in `text`; any problem is one `UsageError` line naming `origin`."""
    if fast():
        data = _load_fast(text)
        if data is not _REFUSED:
            return data
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader
    except _Refused as exc:
        raise UsageError(f"{origin}: {_where(exc)}{exc.problem}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        context = " ".join(str(getattr(exc, "context", None) or "").split())
        detail = f"{problem} ({context})" if context else problem
        raise UsageError(f"{origin} is not valid YAML: {_where(exc)}{detail}") from None
