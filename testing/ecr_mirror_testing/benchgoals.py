"""make bench's verdicts (bench/sync_bench.py): the medians of the runs, and the goals of
the benchmark met or missed (medians for times, the worst run for counts and memory).

Pure functions of the results, so that tests check them without running the benchmark."""

from __future__ import annotations

import statistics

GiB = 1 << 30
GOALS = {"wall_ratio": 1.25, "cpu_ratio": 2.0, "rss_mib": 300}


def medians(values: list[dict]) -> dict:
    out = {}
    for key, first in values[0].items():
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            out[key] = statistics.median(v[key] for v in values)
        elif key == "requests":
            kinds = sorted({k for v in values for k in v[key]})
            out[key] = {k: statistics.median(v[key].get(k, 0) for v in values) for k in kinds}
    return out


def summarize(results: dict) -> None:
    """Add what the goals, the table and the chart share: the wall-time floor (the slower
    of the two floors' medians) and ecr-mirror's peak RSS (its largest process, worst run)."""
    m, samples = results["medians"], results["samples"]
    results["floor_wall_s"] = max(m["floor fetch"]["wall_s"], m["floor upload"]["wall_s"])
    results["peak_rss_mib"] = max(v["max_rss_mib"] for row in ("ecr-mirror cold", "ecr-mirror warm")
                                  for v in samples[row])


def goals(results: dict) -> list[dict]:
    m = results["medians"]
    cold = m["ecr-mirror cold"]
    floor_wall, rss = results["floor_wall_s"], results["peak_rss_mib"]
    floor = results["cpu_floor"]
    gib = floor["bytes"] / GiB
    cpu_per_gib, floor_per_gib = cold["cpu_s"] / gib, floor["total_s"] / gib
    signed_per_gib = (floor["total_s"] + floor["sigv4_sha256_s"]) / gib
    samples = results["samples"]

    def worst(row: str, key: str) -> float:  # counts and memory: the worst run, not the median
        return max(v[key] for v in samples[row])

    warm_pulls, warm_gets = worst("ecr-mirror warm", "pulls"), worst("ecr-mirror warm", "blob_gets")
    repeated = worst("ecr-mirror cold", "blob_gets_repeated")
    return [
        {"goal": "warm sync: 0 counted pulls and 0 blob GETs at the source",
         "measured": f"{warm_pulls:g} pulls, {warm_gets:g} blob GETs in the worst run "
                     f"(skopeo: {m['skopeo warm']['pulls']:g} pulls)",
         "met": warm_pulls == 0 and warm_gets == 0},
        {"goal": "cold sync: each blob fetched at most once per repository",
         "measured": f"{cold['blob_gets']:g} blob GETs, {repeated:g} repeated in the worst run "
                     f"(of {results['blob_repo_pairs']} blob-repository pairs)",
         "met": repeated == 0},
        {"goal": f"cold wall time <= {GOALS['wall_ratio']}x the floor",
         "measured": f"{cold['wall_s']:.1f} s vs floor {floor_wall:.1f} s = {cold['wall_s'] / floor_wall:.2f}x",
         "met": cold["wall_s"] <= GOALS["wall_ratio"] * floor_wall},
        {"goal": f"CPU per GiB <= {GOALS['cpu_ratio']:g}x the floor (sha256 + base64)",
         "measured": f"{cpu_per_gib:.2f} s/GiB vs {floor_per_gib:.2f} = {cpu_per_gib / floor_per_gib:.2f}x "
                     f"({cpu_per_gib / signed_per_gib:.2f}x a floor with SigV4's payload sha256, "
                     f"{signed_per_gib:.2f} s/GiB)",
         "met": cpu_per_gib <= GOALS["cpu_ratio"] * floor_per_gib},
        {"goal": f"peak RSS <= {GOALS['rss_mib']} MiB per process",
         "measured": f"{rss:.0f} MiB", "met": rss <= GOALS["rss_mib"]},
        *_mounting_goal(results),
    ]


def _mounting_goal(results: dict) -> list[dict]:
    """With blob mounting on, cold: the bytes uploaded are the distinct bytes (worst run)."""
    samples = results["samples"].get("ecr-mirror cold, mounting")
    if not samples:
        return []
    uploaded, distinct = max(v["bytes_written"] for v in samples), results["corpus"]["unique_bytes"]
    return [{"goal": "cold sync with blob mounting: bytes uploaded = distinct bytes",
             "measured": f"{uploaded / GiB:.2f} GiB uploaded for {distinct / GiB:.2f} GiB distinct "
                         f"in the worst run ({uploaded / distinct:.2f}x)",
             "met": uploaded <= distinct}]
