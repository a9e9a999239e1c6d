"""The strict ECR emulator (moto + :mod:`ecr_mirror_testing.strict_ecr`) over HTTP.

In this process::

    server, endpoint_url = start_server()        # free port on 127.0.0.1
    boto3.client("ecr", endpoint_url=endpoint_url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
    ...
    server.stop()

As a separate process (benchmarks, the demo), from the repository root::

    python -m ecr_mirror_testing.ecr_server [--port N] [--part-size BYTES] [--delay SECONDS]

prints the endpoint URL on one line (flushed) once it accepts requests and
serves until SIGTERM/SIGINT. With ``--mount`` it also serves ECR's registry
endpoint for blob mounts (ecr_mount.py) and prints its URL on a second line.
Nothing else is written to stdout, and request logging is off, so a parent
may leave the pipes unread. Any fake credentials
work; the account is moto's default 123456789012. ``reset(endpoint_url)``
empties every backend (moto's ``/moto-api/reset``). The strict rules stay
enabled in this process after ``server.stop()``.

``delay`` (``--delay``) holds every ECR API call that long before it is served
(an ECR round trip's latency: it costs the client no CPU); other services are
not delayed. ``calls(endpoint_url)`` gives the ECR calls served so far, by
operation (strict_ecr's counter), and ``calls(endpoint_url, reset=True)``
clears them.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import urllib.request
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from . import strict_dynamodb, strict_ecr, strict_ssm
from .ecr_mount import EcrMount

__all__ = ["calls", "reset", "start_server"]

CALLS_PATH = "/_strict_ecr/calls"
ECR_TARGET = "AmazonEC2ContainerRegistry"


class _Delayed:
    """The WSGI app with ECR calls held `delay` seconds, and the call counter at CALLS_PATH."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app, self.delay = app, delay

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == CALLS_PATH:
            body = json.dumps(dict(strict_ecr.calls)).encode()
            if environ.get("REQUEST_METHOD") == "POST":
                strict_ecr.calls.reset()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if self.delay and environ.get("HTTP_X_AMZ_TARGET", "").startswith(ECR_TARGET):
            time.sleep(self.delay)  # injected latency, not a timing assertion
        return self.app(environ, start_response)


class _Server(ThreadedMotoServer):
    def __init__(self, *args: Any, delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delay = delay

    def _server_entry(self) -> None:  # moto's, with the app wrapped
        app = _Delayed(DomainDispatcherApplication(create_backend_app), self._delay)
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def start_server(
    port: int = 0, *, host: str = "127.0.0.1", quiet: bool = True, delay: float = 0.0
) -> tuple[ThreadedMotoServer, str]:
    """Start moto's server in a thread with ECR's rules enforced.

    ``port=0`` lets the OS pick a free port (bound atomically, no race).
    Returns the server (call ``stop()``) and its endpoint URL.
    """
    strict_ecr.enable()
    strict_ssm.enable()
    strict_dynamodb.enable()  # conditional writes atomic, as in DynamoDB
    if quiet:  # werkzeug logs every request at INFO unless a level is set
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = _Server(ip_address=host, port=port, verbose=False, delay=delay)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


def reset(endpoint_url: str) -> None:
    """Forget every repository, image and upload on a running server."""
    request = urllib.request.Request(endpoint_url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def calls(endpoint_url: str, *, reset: bool = False) -> dict[str, int]:
    """The ECR calls a running server served, by operation (then cleared, with `reset`)."""
    request = urllib.request.Request(endpoint_url + CALLS_PATH, method="POST" if reset else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecr_mirror_testing.ecr_server",
        description="Serve moto's ECR with real ECR's rules until killed.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--part-size",
        type=int,
        default=None,
        help=f"partSize advertised by InitiateLayerUpload "
        f"(default: ${strict_ecr.PART_SIZE_ENV} or 10 MiB)",
    )
    parser.add_argument("--mount", action="store_true",
                        help="also serve ECR's blob mount endpoint; its URL is a second line")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds each ECR call is held before it is served (latency)")
    args = parser.parse_args(argv)
    if args.part_size is not None:
        strict_ecr.PART_SIZE = args.part_size

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server, endpoint_url = start_server(args.port, host=args.host, delay=args.delay)
    mount = EcrMount().__enter__() if args.mount else None
    print(endpoint_url, flush=True)
    if mount is not None:
        print(mount.url, flush=True)
    while not stop.wait(0.5):
        pass
    if mount is not None:
        mount.__exit__(None, None, None)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
