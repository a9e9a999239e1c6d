"""The suite runs in one process, as a warm Lambda runs its invocations: what the
tests open (clients, servers, their connections) must be closed, or at least
freed, by the end. A leak of one socket per client made would otherwise reach
select()'s limit (descriptor 1,023) and a Lambda's (1,024 descriptors)."""

from __future__ import annotations

import gc

import pytest

from ecr_mirror_testing.fds import open_fds

#: Sockets the process may still hold once every test and fixture is done (and the
#: collector has run): the boto3 clients `aws.client` keeps, one pool per service and
#: AWS environment the tests set, with what they keep alive (the full suite ends with
#: about 20). A leak of one socket per test that makes a client (hundreds) breaks it.
MAX_OPEN_SOCKETS = 64


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gc.collect()
    sockets = [target for target in open_fds() if target.startswith("socket:")]
    if len(sockets) > MAX_OPEN_SOCKETS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"the test process still holds {len(sockets)} sockets at its end "
                                f"(at most {MAX_OPEN_SOCKETS}): a test or fixture leaves clients open",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
