"""The peer guard's connections hold their adapter weakly (so that urllib3's pools,
kept from a process-wide registry, do not keep their owner and its sockets alive):
one that outlives its adapter has nobody to check it, and is refused unsent."""

from __future__ import annotations

import gc
import socket

import pytest

from ecr_mirror.registry.redirects import GuardedAdapter, PeerRefused


def test_a_connection_that_outlived_its_adapter_is_refused_before_sending():
    checked: list[tuple[str, str]] = []
    adapter = GuardedAdapter(lambda host, address: checked.append((host, address)))
    connection_class = adapter.poolmanager.pool_classes_by_scheme["http"].ConnectionCls
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        connection_class("127.0.0.1", port)._new_conn().close()  # alive: checked, allowed
        assert checked == [("127.0.0.1", "127.0.0.1")]
        del adapter
        gc.collect()
        connection = connection_class("127.0.0.1", port)
        with pytest.raises(PeerRefused, match="outlived its session"):
            connection.request("GET", "/v2/")
        for _ in range(2):  # both connections reached the listener; neither sent a byte
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(5)
                assert peer.recv(1) == b""
    assert len(checked) == 1
