"""Keep a copy's memory flat: a few malloc arenas instead of one per thread.

glibc gives a thread that meets contention an arena of its own, up to eight
per core, and seldom gives back what an arena freed. A copy runs a dozen
threads (uploads, their read-ahead readers, child manifests) that allocate
and free megabyte-sized buffers: on the benchmark's 2 GiB corpus a worker
with 4 blobs in flight peaked at about 350 MiB RSS, and at about 220 MiB with
4 arenas, for the same CPU (bench/README.md). `MALLOC_ARENA_MAX` in the
environment, when set, is left to decide.
"""

from __future__ import annotations

import os

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 4


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas for the threads to come; False where that is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
