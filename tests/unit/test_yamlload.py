"""The bounded YAML loader's fast path (libyaml's composer, bounds checked on its node
graph) against the bounded Python loader: the same data for what both accept, and for
every bound the same one-line refusal with its line and column, the fast path refusing
before a single value is constructed."""

from __future__ import annotations

import datetime

import pytest

from ecr_mirror.sync import yamlload
from ecr_mirror.sync.yamlload import MAX_DEPTH, MAX_NODES, load_yaml
from ecr_mirror_testing.configs import realistic_config
from tests.unit.test_malformed_config import config_error  # load_config's one-line refusal


def test_the_pyyaml_here_has_a_bounded_libyaml():
    """The fast path runs only on a libyaml that refuses deep nesting itself (0.2.6, as
    PyYAML's wheels ship it, the Lambda layer's included)."""
    assert yamlload.fast()


def test_a_50000_tag_config_is_composed_by_libyaml_not_in_python(monkeypatch):
    def python_composer(*_):
        raise AssertionError("composed in Python")

    monkeypatch.setattr(yamlload._BoundedLoader, "compose_node", python_composer)
    data = load_yaml(realistic_config(2000, tags_per_entry=25), origin="mirror.yaml")
    assert len(data["images"]) == 2000 and sum(len(i["tags"]) for i in data["images"]) == 50_000
    assert data["images"][1999] == {"source": "team39/service-01999", "tags": [f"4.{t}" for t in range(25)]}


VALID = [
    "images:\n  - source: nginx\n    tags: [stable, '1.25']\n    latest: 3\n",
    "base: &b {targetPrefix: mirror, concurrency: 0x10}\nother:\n  <<: *b\n  concurrency: 0o17\n",
    "a: [1, -2, 3.5, .inf, ~, true, no, 2026-12-01, '007', 1_000, 0b101]\n",
    "x: &x [a, b]\ny: [*x, *x, {k: *x}]\n",
    "",
    "just a string\n",
    "- " + "\n- ".join(str(i) for i in range(100)) + "\n",
]


@pytest.mark.parametrize("text", VALID)
def test_both_loaders_give_the_same_data(text, monkeypatch):
    fast = load_yaml(text, origin="x")
    monkeypatch.setattr(yamlload, "fast", lambda: False)
    assert fast == load_yaml(text, origin="x")
    if "2026" in text:
        assert fast["a"][7] == datetime.date(2026, 12, 1)


def nested(levels: int) -> str:
    """`images:` holding a list `levels` lists deep: its innermost list sits at depth levels + 1."""
    return "images:\n  - " + "[" * levels + "]" * levels + "\n"


def block(levels: int) -> str:
    """A block mapping `levels` - 1 keys deep under `a`: its value `v` at depth `levels`."""
    return "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, levels)) + "  " * levels + "v\n"


def aliased(repeats: int) -> str:
    """1 + 1 + 100 + 1 + 1 nodes, then `repeats` aliases of the 100-node list."""
    return f"x: &a [{', '.join(['s'] * 99)}]\ny: [{', '.join(['*a'] * repeats)}]\n"


# what the bound allows at most, and one more: (text, words of the refusal)
LIMITS = [
    (nested(MAX_DEPTH - 2), None),
    (nested(MAX_DEPTH - 1), "nested more than 32 levels deep"),
    (block(MAX_DEPTH - 1), None),
    (block(MAX_DEPTH), "line 32, column 63: nested more than 32 levels deep"),
    (aliased((MAX_NODES - 104) // 100), None),
    (aliased((MAX_NODES - 104) // 100 + 1), "too large: more than 100,000 values"),
]


@pytest.mark.parametrize("text, words", LIMITS)
def test_each_bound_is_where_the_python_loader_puts_it(text, words, monkeypatch):
    fast = yamlload._load_fast(text)
    if words is None:
        assert fast is not yamlload._REFUSED and fast == load_yaml(text, origin="x")
        monkeypatch.setattr(yamlload, "fast", lambda: False)
        assert load_yaml(text, origin="x") == fast
    else:
        assert fast is yamlload._REFUSED
        message = config_error(text)
        assert words in message and "line" in message and "column" in message
        monkeypatch.setattr(yamlload, "fast", lambda: False)
        assert config_error(text) == message


def test_a_flat_list_is_counted_to_the_last_value():
    """A root mapping, its key, the list and its values: MAX_NODES in all is allowed."""
    def flat(n: int) -> str:
        return "x: [" + ",".join("1" * n) + "]\n"

    assert yamlload._load_fast(flat(MAX_NODES - 3)) == {"x": [1] * (MAX_NODES - 3)}
    assert yamlload._load_fast(flat(MAX_NODES - 2)) is yamlload._REFUSED


@pytest.mark.parametrize("text, words", [
    ("images: " + "[" * 1000, "nested more than 32 levels deep"),           # past libyaml's own limit
    ("images:\n  - " + "[" * 40 + "]" * 40, "line 2, column"),
    ("registries:\n  docker.io: {reserve: " + "9" * 5000 + "}\nimages: []",
     "line 2, column 24: a number of 5000 digits"),
    ("x: &a [" + ", ".join(["y"] * 10) + "]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for n, p in zip("bcdefgh", "abcdefg", strict=True)),
     "too large"),                                                          # ten million values
    ("images: [\n", "is not valid YAML: line 2"),
    ("registries:\n  ? [a]\n  : {}\nimages: []", "line 2"),
    ("a: *nowhere\n", "found undefined alias"),
    ("a: \ud800\n", "unacceptable character #xd800"),                   # libyaml cannot even take it
])
def test_what_the_fast_path_refuses_is_said_as_the_python_loader_says_it(text, words, monkeypatch):
    assert yamlload._load_fast(text) is yamlload._REFUSED  # nothing constructed
    message = config_error(text)
    assert words in message, message
    monkeypatch.setattr(yamlload, "fast", lambda: False)
    assert config_error(text) == message
