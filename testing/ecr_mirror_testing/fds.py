"""What a process holds open: its file descriptors and, among them, its sockets
(Linux's /proc/self/fd; a Lambda instance may hold at most 1,024)."""

from __future__ import annotations

import os

FD_DIR = "/proc/self/fd"


def open_fds() -> list[str]:
    """What each open file descriptor of this process points to ("socket:[123]", a path...)."""
    found = []
    for name in os.listdir(FD_DIR):
        try:
            found.append(os.readlink(os.path.join(FD_DIR, name)))
        except OSError:  # closed meanwhile (the listing's own descriptor, among others)
            continue
    return found


def open_sockets() -> int:
    """How many sockets this process holds open."""
    return sum(target.startswith("socket:") for target in open_fds())
