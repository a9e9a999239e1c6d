"""The order in which the scheduler queues the images it plans to copy."""

from ecr_mirror.sync.plan import Job, spread_by_repository


def job(target: str) -> Job:
    return Job(source=f"docker.io/{target}", target=f"mirror/{target}", platforms=[], source_digest="sha256:0")


def test_concurrent_workers_start_on_different_repositories():
    planned = [job(t) for t in ("a:1", "a:2", "a:3", "b:1", "c:1", "c:2")]
    order = [j.target.removeprefix("mirror/") for j in spread_by_repository(planned)]
    # a tag of each repository in turn, the repository with the most tags first
    assert order == ["a:1", "c:1", "b:1", "a:2", "c:2", "a:3"]


def test_nothing_is_lost_or_added():
    planned = [job(f"r{i % 4}:{i}") for i in range(23)]
    assert sorted(map(id, spread_by_repository(planned))) == sorted(map(id, planned))
    assert spread_by_repository([]) == []
