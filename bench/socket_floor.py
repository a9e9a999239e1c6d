"""The sockets' share of copying a blob into ECR's API, done plainly: the CPU
this process spends receiving SIZE bytes over loopback TCP into a 10 MiB part
buffer, and sending 4/3 of SIZE (the base64 of the parts) from a 13.3 MiB body
buffer, the other ends in forked processes (not counted). The kernel charges
loopback delivery to the sender, as it does to the copier. Run by
copy_big_layer.py; prints JSON (`recv_s`, `send_s`, `bytes`, and the bytes
`received` and `sent`).

    python bench/socket_floor.py SIZE_BYTES
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys

PART = 10 << 20
BODY = PART * 4 // 3


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def other_end(port: int, total: int, sending: bool) -> None:
    """In the forked child: send `total` bytes to us, or drain what we send."""
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        buf = bytearray(PART if sending else 1 << 20)
        if sending:
            done = 0
            while done < total:
                n = min(PART, total - done)
                sock.sendall(memoryview(buf)[:n])
                done += n
        else:
            while sock.recv_into(buf):
                pass
        sock.close()
    finally:
        os._exit(0)


def measure(total: int, sending: bool) -> tuple[float, int]:
    server = listener()
    amount = total * 4 // 3 if sending else total
    if os.fork() == 0:
        other_end(server.getsockname()[1], amount, not sending)
    conn, _ = server.accept()
    buf = bytearray(BODY if sending else PART)
    view, done = memoryview(buf), 0
    started = cpu()
    while done < amount:
        if sending:
            n = min(BODY, amount - done)
            conn.sendall(view[:n])
        else:
            n = conn.recv_into(view[done % PART:] if done % PART else view)
            if not n:
                raise RuntimeError("the sender stopped early")
        done += n
    conn.close()
    spent = cpu() - started
    os.wait()
    server.close()
    return spent, done


def main() -> int:
    total = int(sys.argv[1])
    (recv_s, received), (send_s, sent) = measure(total, sending=False), measure(total, sending=True)
    print(json.dumps({"recv_s": recv_s, "send_s": send_s, "bytes": total, "received": received,
                      "sent": sent}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
