"""A malformed config is a typed, one-line error naming where it is wrong:
never a traceback (RecursionError, ValueError, TypeError) out of load_config."""

from __future__ import annotations

import pytest

from ecr_mirror.errors import UsageError
from ecr_mirror.sync.config import load_config


def config_error(text: str) -> str:
    with pytest.raises(UsageError) as err:
        load_config(text, origin="mirror.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("mirror.yaml")
    return message


@pytest.mark.parametrize("text", [
    "images: " + "[" * 1000,                         # 2 KB, unterminated
    "images:\n  - " + "[" * 900 + "]" * 900,         # well-formed, 900 deep
    "images:\n  - " + "{a: " * 500 + "x" + "}" * 500,
])
def test_deep_nesting_is_refused_with_the_line(text):
    message = config_error(text)
    assert "nested" in message and "line" in message


@pytest.mark.parametrize("text,line", [
    ("images:\n  - source: nginx\n    latest: " + "9" * 5000, 3),
    ("registries:\n  docker.io: {reserve: " + "9" * 5000 + "}\nimages: []", 2),
])
def test_a_5000_digit_number_is_refused_with_its_line(text, line):
    message = config_error(text)
    assert f"line {line}" in message and "5000 digits" in message


def test_alias_expansion_is_bounded():
    text = "x: &a [y, y, y, y, y, y, y, y, y, y]\n"
    for name, prev in zip("bcdefgh", "abcdefg", strict=True):
        text += f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n"
    text += "images: *h\n"  # ten million image entries
    assert "too large" in config_error(text)


@pytest.mark.parametrize("text,needle", [
    ("registries:\n  ? [a]\n  : {}\nimages: []", "line 2"),              # YAML error: one line
    ("images: [\n", "line"),
    ("registries:\n  1: {}\nimages: []", "registries"),                  # not a host
    ("registries:\n  'a b': {}\nimages: []", '"a b"'),
    ('registries:\n  docker.io: {endpoint: "http://x\\n"}\nimages: []', "endpoint"),
    ("registries:\n  docker.io: {credentials: 5}\nimages: []", "credentials"),
    ("defaults: {targetPrefix: 'Mirror'}\nimages: []", "targetPrefix"),
    ("defaults: {targetPrefix: \"mirror\\n\"}\nimages: []", "targetPrefix"),
])
def test_odd_values_at_the_top_are_named(text, needle):
    assert needle in config_error(text)


@pytest.mark.parametrize("entry,needle", [
    ("tags: [x]\n    latest: 2.0", "latest"),                # a float where a count belongs
    ("tags: [x]\n    latest: true", "latest"),
    ('tags: ["stable\\n"]', "stable\\n"),                    # an exact tag is a whole tag
    ("tags: [x]\n    target: mirror/x:v1", "repository alone"),
    ('tags: [x]\n    target: "mirror/x\\n"', r'"mirror/x\n"'),
    ("tags: [x]\n    target: 123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/x", "repository alone"),
])
def test_odd_values_in_an_image_are_entry_errors(entry, needle):
    config = load_config(f"images:\n  - source: nginx\n    {entry}\n  - source: redis\n    tags: ['7']\n")
    assert [i.written for i in config.images] == ["redis"]  # the good entry still runs
    [error] = config.errors
    assert error.entry == "images[0] (nginx)" and needle in error.message, error.message
