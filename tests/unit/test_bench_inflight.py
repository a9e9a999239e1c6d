"""ecr_mirror_testing.inflight: make bench-scale's account of where the plan's wall went."""

from __future__ import annotations

import os
import time

from ecr_mirror_testing.inflight import pool_occupancy, process_cpu


def test_a_full_pool_between_a_slow_start_and_a_quick_end():
    # 4 requests of 1 s each, two at a time from t=10 to t=12, in a run from t=9 to t=12.5
    spans = [(10.0, 11.0), (10.0, 11.0), (11.0, 12.0), (11.0, 12.0)]
    assert pool_occupancy(spans, 9.0, 12.5) == {
        "beforeFirstHeadS": 1.0, "afterLastHeadS": 0.5, "headsWallS": 2.0, "meanInFlight": 2.0,
        "inProxyMedianMs": 1000.0, "inProxyP90Ms": 1000.0}


def test_a_gap_in_the_pool_lowers_the_mean_and_the_slow_ones_show_at_the_90th_percentile():
    spans = [(0.0, 0.1)] * 9 + [(0.1, 0.5)]  # nine short ones at once, then one alone
    occupancy = pool_occupancy(spans, 0.0, 0.5)
    assert occupancy["meanInFlight"] == round((9 * 0.1 + 0.4) / 0.5, 2)
    assert occupancy["inProxyMedianMs"] == 100.0 and occupancy["inProxyP90Ms"] == 400.0


def test_no_request_no_account():
    assert pool_occupancy([], 0.0, 1.0) == {}


def test_process_cpu_counts_this_process_work():
    before = process_cpu(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass  # burn 0.2 s of CPU
    assert process_cpu(os.getpid()) - before >= 0.1  # clock ticks: 10 ms each
