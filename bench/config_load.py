"""Loading a big mirror config: CPU and wall of `load_config` on 50,000 tags.

The config is the one tests/integration/test_config_s3.py loads: 2,000 entries of
25 exact tags each (about 0.47 MB), written as a user writes one. Each run loads
the text afresh (nothing is cached between runs); CPU is this process's.

    PYTHONPATH=src:testing .venv/bin/python bench/config_load.py [--runs 5]

Run it against another checkout's src (PYTHONPATH=/other/src:testing) for a
before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from ecr_mirror.sync.config import load_config
from ecr_mirror.sync.yamlload import load_yaml
from ecr_mirror_testing.configs import realistic_config


def measure(call, runs: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"cpu_s": round(statistics.median(cpus), 3), "wall_s": round(statistics.median(walls), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    text = realistic_config(2000, tags_per_entry=25)
    config = load_config(text, origin="bench")
    assert sum(len(e.selector.names) for e in config.images) == 50_000 and not config.errors
    print(json.dumps({"bytes": len(text), "runs": args.runs,
                      "yaml": measure(lambda: load_yaml(text, origin="bench"), args.runs),
                      "load_config": measure(lambda: load_config(text, origin="bench"), args.runs)}))


if __name__ == "__main__":
    main()
