"""The strict ECR emulator (moto + :mod:`ecr_mirror_testing.strict_ecr`) over HTTP.

In this process::

    server, endpoint_url = start_server()        # free port on 127.0.0.1
    boto3.client("ecr", endpoint_url=endpoint_url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
    ...
    server.stop()

As a separate process (benchmarks, the demo), from the repository root::

    python -m ecr_mirror_testing.ecr_server [--port N] [--part-size BYTES]

prints the endpoint URL on one line (flushed) once it accepts requests and
serves until SIGTERM/SIGINT. Nothing else is written to stdout, and request
logging is off, so a parent may leave the pipes unread. Any fake credentials
work; the account is moto's default 123456789012. ``reset(endpoint_url)``
empties every backend (moto's ``/moto-api/reset``). The strict rules stay
enabled in this process after ``server.stop()``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import urllib.request

from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from . import strict_dynamodb, strict_ecr, strict_ssm

__all__ = ["reset", "start_server"]


def start_server(
    port: int = 0, *, host: str = "127.0.0.1", quiet: bool = True
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
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


def reset(endpoint_url: str) -> None:
    """Forget every repository, image and upload on a running server."""
    request = urllib.request.Request(endpoint_url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


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
    args = parser.parse_args(argv)
    if args.part_size is not None:
        strict_ecr.PART_SIZE = args.part_size

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server, endpoint_url = start_server(args.port, host=args.host)
    print(endpoint_url, flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
