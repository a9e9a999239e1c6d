"""`Transport.close` closes the connections it opened, never a session its caller gave."""

import requests

from ecr_mirror.registry.transport import Transport


def recording(session: requests.Session, closed: list[str], name: str) -> requests.Session:
    original = session.close

    def close() -> None:
        closed.append(name)
        original()

    session.close = close  # type: ignore[method-assign]
    return session


def test_a_callers_session_stays_open_and_its_own_is_closed():
    closed: list[str] = []
    given = recording(requests.Session(), closed, "given")
    Transport("registry.example", session=given).close()
    assert closed == []  # the caller's to close: it may still be in use

    own = Transport("registry.example")
    recording(own.session, closed, "own")
    own.close()
    assert closed == ["own"]
