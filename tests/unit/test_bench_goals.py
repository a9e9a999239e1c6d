"""make bench's verdicts (ecr_mirror_testing.benchgoals): medians for times, the worst run for counts."""

from __future__ import annotations

import pytest

from ecr_mirror_testing.benchgoals import GiB, goals, medians, summarize


def run(wall=40.0, cpu=16.0, rss=240.0, pulls=0, gets=0, repeated=0) -> dict:
    return {"wall_s": wall, "cpu_s": cpu, "max_rss_mib": rss, "pulls": pulls, "blob_gets": gets,
            "blob_gets_repeated": repeated, "requests": {"HEAD manifest": 51, "GET blob": gets}}


def results(cold: list[dict], warm: list[dict]) -> dict:
    samples = {"ecr-mirror cold": cold, "ecr-mirror warm": warm,
               "skopeo cold": [run(wall=20.0)] * 3, "skopeo warm": [run(wall=2.0, pulls=135)] * 3,
               "floor fetch": [run(wall=3.0)] * 3, "floor upload": [run(wall=36.0)] * 3}
    out = {"samples": samples, "medians": {name: medians(values) for name, values in samples.items()},
           "blob_repo_pairs": 402,
           "cpu_floor": {"bytes": 3 * GiB, "total_s": 2.4, "sigv4_sha256_s": 2.4}}
    summarize(out)
    return out


def verdicts(res: dict) -> list[bool]:
    return [g["met"] for g in goals(res)]


def test_a_clean_run_meets_every_goal_but_cpu():
    cold = [run(wall=44.0, gets=402)] * 3
    assert verdicts(results(cold, [run(wall=1.5)] * 3)) == [True, True, True, False, True]


def test_one_bad_run_is_not_hidden_by_the_median():
    cold = [run(gets=402), run(gets=403, repeated=1), run(gets=402)]
    warm = [run(), run(pulls=1), run()]
    warm_pulls, repeats, *_ = verdicts(results(cold, warm))
    assert not warm_pulls and not repeats


def test_wall_time_is_judged_on_the_median_against_the_slower_floor():
    cold = [run(wall=40.0), run(wall=60.0), run(wall=45.0)]  # median 45 = 1.25 x 36
    assert verdicts(results(cold, [run()] * 3))[2]
    cold = [run(wall=46.0)] * 3
    assert not verdicts(results(cold, [run()] * 3))[2]


@pytest.mark.parametrize("rss, met", [(300.0, True), (301.0, False)])
def test_peak_rss_is_the_largest_of_any_run(rss, met):
    cold = [run(), run(rss=rss), run()]
    assert verdicts(results(cold, [run()] * 3))[4] is met


def test_medians_of_request_counts_by_kind():
    m = medians([{"wall_s": 1.0, "requests": {"GET blob": 3}}, {"wall_s": 3.0, "requests": {}},
                 {"wall_s": 2.0, "requests": {"GET blob": 5, "HEAD manifest": 1}}])
    assert m == {"wall_s": 2.0, "requests": {"GET blob": 3, "HEAD manifest": 0}}


@pytest.mark.parametrize("uploaded, met", [(1000, True), (1030, False)])
def test_the_mounting_goal_is_uploaded_bytes_equal_to_distinct_bytes(uploaded, met):
    out = results([run()] * 3, [run()] * 3)
    out["corpus"] = {"unique_bytes": 1000}
    out["samples"]["ecr-mirror cold, mounting"] = [{"bytes_written": 900}, {"bytes_written": uploaded}]
    (goal,) = [g for g in goals(out) if "mounting" in g["goal"]]
    assert goal["met"] is met and f"({uploaded / 1000:.2f}x)" in goal["measured"]


def test_without_the_mounting_row_there_is_no_mounting_goal():
    assert not [g for g in goals(results([run()] * 3, [run()] * 3)) if "mounting" in g["goal"]]
