"""The one JSON dialect of every output (docs/schema/output.schema.json): camelCase
keys, like the config, the events, the SQS messages and AWS. Python's names are
snake_case; they are turned at the edge, where a dict becomes output."""

from __future__ import annotations

from typing import Any


def camel(name: str) -> str:
    """`manifests_fetched` -> `manifestsFetched` (`ecr:PutImage` stays as it is)."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_keys(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its keys (one level deep) in camelCase."""
    return {camel(key): value for key, value in data.items()}
