"""Where a benchmark's wall went (make bench-scale): requests in flight over time, as
the counting proxy saw them, and the CPU of the processes that share the machine."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool_occupancy(spans: list[tuple[float, float]], started: float, ended: float) -> dict[str, float]:
    """From (entered, left) of every request at the proxy, within a run from `started`
    to `ended` (one monotonic clock): the wait before the first request and after the
    last, the requests in flight on average between the two, and the median and 90th
    percentile of each one's time in the proxy (its injected latency included)."""
    if not spans:
        return {}
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    inside = sorted(b - a for a, b in spans)
    return {"beforeFirstHeadS": round(first - started, 3), "afterLastHeadS": round(ended - last, 3),
            "headsWallS": round(last - first, 3),
            "meanInFlight": round(sum(inside) / (last - first), 2) if last > first else 0.0,
            "inProxyMedianMs": round(1000 * inside[len(inside) // 2], 1),
            "inProxyP90Ms": round(1000 * inside[int(len(inside) * 0.9)], 1)}
