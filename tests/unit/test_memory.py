"""The functions and the CLI cap glibc's malloc arenas (their peak RSS, bench/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Sixteen threads that allocate at once, then glibc's own account of its arenas.
COUNT_ARENAS = """
import ctypes, re, sys, tempfile, threading
{setup}
barrier = threading.Barrier(16)
def work():
    barrier.wait()
    for _ in range(50):
        blocks = [bytearray(200_000) for _ in range(20)]
        del blocks
threads = [threading.Thread(target=work) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
fp = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
libc.malloc_info(0, fp)
libc.fclose(fp)
print(len(re.findall(r'<heap nr="[0-9]+"', open(path).read())))
"""

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or os.cpu_count() < 2,
                                reason="glibc on a machine with cores to spare")


def arenas(setup: str, **env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environment.update(AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="true", **env)
    result = subprocess.run([sys.executable, "-c", COUNT_ARENAS.format(setup=setup)],
                            capture_output=True, text=True, env=environment, timeout=60, check=True)
    return int(result.stdout.split()[-1])


@glibc_only
def test_a_lambda_function_uses_at_most_four_arenas():
    assert arenas("") > 4  # glibc's default: up to eight per core
    assert arenas("import ecr_mirror.handlers.common") <= 4


@glibc_only
def test_the_cli_uses_at_most_four_arenas():
    # An invalid reference: a usage error, found after the cap and before any request.
    setup = "import ecr_mirror.cli as cli\nassert cli.main(['copy', 'Not/Valid', 'mirror/x:1']) == 2"
    assert arenas(setup) <= 4


@glibc_only
def test_malloc_arena_max_in_the_environment_decides():
    assert arenas("import ecr_mirror.handlers.common", MALLOC_ARENA_MAX="8") > 4
