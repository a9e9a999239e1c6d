"""A warm Lambda runs many invocations in one process, with 1,024 file descriptors
(the CLI and a scheduled run use the same engine): nothing an invocation opens
may stay open after it, sockets above all.

The real handlers and the CLI run against the real registry and the strict ECR
emulator many times in this process (copies, unchanged images, a registry error,
a deadline): the sockets open after the last run must be those after the second,
give or take what pools keep (a leak of one socket per run would add more). Counted
without a garbage collection: what a run opened is closed when it ends, not
whenever the collector next runs.
"""

from __future__ import annotations

import gc
import json
import weakref

import pytest

from ecr_mirror import cli
from ecr_mirror.handlers import worker
from ecr_mirror.mirror import Mirror, MirrorSettings, SourceRegistry
from ecr_mirror.reference import parse
from ecr_mirror.registry import RegistryClient
from ecr_mirror_testing.fds import open_sockets
from ecr_mirror_testing.images import layer_bytes, make_image
from ecr_mirror_testing.lambdas import FakeContext, sqs_record
from tests.integration.test_schedule import app, drain, scheduled_run, seed  # noqa: F401  (app: a fixture)

pytestmark = pytest.mark.integration

RUNS = 20
#: Sockets the process may gain between the second run and the last: the pools (the
#: registry's, each AWS service's; the emulators' server side, in this process too)
#: fill up to their size as copies run in parallel, but do not grow with the number
#: of runs. Under one per run.
SLACK = RUNS // 2


def _use(client: RegistryClient) -> None:
    """A HEAD (kept by the lean HEAD pool) and a GET (kept by requests' pool)."""
    client.head_manifest("library/nginx", "fd")
    client.get_manifest("library/nginx", "fd")


def _collected_sockets() -> int:
    gc.collect()
    return open_sockets()


def test_a_registry_client_dropped_releases_its_sockets(registry):
    """Its connections must not keep it alive: urllib3 holds a pool's idle connections
    from a process-wide registry (weakref.finalize) until the pool is collected."""
    make_image(registry.url, "library/nginx", "fd", layers=[layer_bytes("fd-drop")])
    before = _collected_sockets()  # the registry is another process: every socket here is the client's
    clients = [RegistryClient(registry.host, insecure=True) for _ in range(5)]
    for client in clients:
        _use(client)
    assert _collected_sockets() >= before + 5  # each keeps its connections while it lives
    dropped = [weakref.ref(client.transport) for client in clients]
    del clients, client
    assert _collected_sockets() == before
    assert [ref for ref in dropped if ref() is not None] == []


def test_a_closed_mirror_releases_its_sockets_at_once(registry):
    make_image(registry.url, "library/nginx", "fd", layers=[layer_bytes("fd-close")])
    before = _collected_sockets()
    settings = MirrorSettings(registries={registry.host: SourceRegistry(insecure=True)})
    with Mirror(settings) as mirror:
        _use(mirror.source_client(parse(f"{registry.host}/library/nginx:fd")))
        assert open_sockets() > before
    assert open_sockets() == before


def test_the_scheduler_keeps_no_socket_per_invocation(app, registry, ecr):
    sqs, queue_url = app
    seed(registry)
    counts = []
    for n in range(RUNS):
        if n == 5:  # a tag moves: the next run queues it, the worker copies it
            make_image(registry.url, "library/redis", "7.2.2", layers=[layer_bytes("fd-moved")])
        answer = scheduled_run()
        assert answer["errors"] == 0, answer
        drain(sqs, queue_url)
        counts.append(open_sockets())
    assert counts[-1] - counts[1] <= SLACK, counts


def _worker_event(registry, n: int) -> tuple[dict, str | None]:
    """The nth event of a mix, and the status its answer must have (None: a batch)."""
    kind = n % 4
    if kind == 0:  # a new image
        make_image(registry.url, "library/nginx", f"t{n}", layers=[layer_bytes(f"fd-{n}")])
        return {"source": f"nginx:t{n}", "target": f"mirror/fd:t{n}"}, "copied"
    if kind == 1:  # the same again
        return {"source": f"nginx:t{n - 1}", "target": f"mirror/fd:t{n - 1}"}, "unchanged"
    if kind == 2:  # the registry answers 404
        return {"source": "nginx:absent", "target": "mirror/fd:absent"}, "failed"
    # an SQS batch whose copy runs out of time (the context below): handed back
    body = json.dumps({"source": f"docker.io/library/nginx:t{n - 3}", "target": f"mirror/late:{n}"})
    return {"Records": [sqs_record(body, f"m{n}", f"r{n}")]}, None


def test_the_worker_keeps_no_socket_per_invocation(app, registry, ecr, monkeypatch):
    sqs, queue_url = app
    counts = []
    for n in range(RUNS):
        if n % 5 == 4:  # a changed environment: the warm Mirror is replaced
            monkeypatch.setenv("ECR_MIRROR_CONCURRENCY", str(2 + n % 3))
        event, status = _worker_event(registry, n)
        answer = worker.handler(event, FakeContext(remaining_ms=900_000 if status else 30_000))
        assert answer.get("status") == status, answer
        counts.append(open_sockets())
    drain(sqs, queue_url)
    assert counts[-1] - counts[1] <= SLACK, counts


def test_the_cli_keeps_no_socket_per_run(source, registry, ecr, tmp_path, capsys):
    make_image(registry.url, "library/nginx", "fd", layers=[layer_bytes("fd-cli")])
    config = tmp_path / "mirror.yaml"
    config.write_text(f"registries:\n  {source.host}: {{insecure: true}}\n"
                      f"defaults: {{targetPrefix: mirror}}\n"
                      f"images:\n  - source: {source.host}/library/nginx\n    tags: [fd]\n")
    counts = []
    for n in range(RUNS):
        if n % 2:
            code = cli.main(["sync", "--config", str(config), "--json"])
        else:
            code = cli.main(["copy", f"{source.host}/library/nginx:fd", f"mirror/cli{n % 3}:fd",
                             "--insecure", "--json"])
        capsys.readouterr()
        assert code == 0
        counts.append(open_sockets())
    assert counts[-1] - counts[1] <= SLACK, counts
