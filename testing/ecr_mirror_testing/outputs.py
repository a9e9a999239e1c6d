"""Every machine-readable output checked against docs/schema/output.schema.json.

`validated(kind, data)` returns `data` when it is a valid `kind` (a definition of
the schema: copyReport, syncOutput, copyOneResult, workerResult, schedulerResult,
imageEvent: an EventBridge event's detail)
and fails the test otherwise; `json_output(kind, text)` parses one JSON line first.
`check_outputs(monkeypatch)` validates every output the CLI prints and every answer
a handler gives in this process, whether the test reads it or not."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import fastjsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "output.schema.json"
KINDS = ("copyReport", "syncOutput", "copyOneResult", "workerResult", "schedulerResult",
         "imageEvent")


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@functools.cache
def _validator(kind: str):
    document = schema()
    if kind not in document["definitions"]:
        raise KeyError(f"{kind} is not a definition of {SCHEMA_PATH.name}")
    return fastjsonschema.compile({"$schema": document["$schema"],
                                   "definitions": document["definitions"],
                                   "$ref": f"#/definitions/{kind}"})


def validated(kind: str, data: Any) -> Any:
    """`data`, after checking it is a valid `kind` output (AssertionError if not)."""
    try:
        _validator(kind)(json.loads(json.dumps(data)))  # as a reader sees it
    except fastjsonschema.JsonSchemaValueException as exc:
        raise AssertionError(f"not a valid {kind}: {exc.message} (at {exc.path}): {data!r}"
                             ) from None
    return data


def json_output(kind: str, text: str) -> Any:
    """The one JSON object `text` holds (a CLI's stdout), validated as `kind`."""
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {len(lines)}: {text[:300]!r}"
    return validated(kind, json.loads(lines[0]))


def check_outputs(monkeypatch) -> None:
    """Validate, in this process, every JSON object the CLI prints and every
    handler's answer (the CLI through `cli.emit_json`, the handlers through the
    functions their entry points call)."""
    from ecr_mirror import cli, events
    from ecr_mirror.handlers import copy_one, scheduler, worker

    def checked(kind: str, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return validated(kind, function(*args, **kwargs))
        return wrapper

    real_emit = cli.emit_json
    monkeypatch.setattr(cli, "emit_json", lambda kind, data: real_emit(kind, validated(kind, data)))
    monkeypatch.setattr(copy_one, "copy_one", checked("copyOneResult", copy_one.copy_one))
    monkeypatch.setattr(worker, "copy_one", checked("copyOneResult", worker.copy_one))
    monkeypatch.setattr(worker, "process_partial_response",
                        checked("workerResult", worker.process_partial_response))
    monkeypatch.setattr(scheduler, "run", checked("schedulerResult", scheduler.run))
    monkeypatch.setattr(events, "detail", checked("imageEvent", events.detail))
