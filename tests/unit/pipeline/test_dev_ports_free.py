"""`pipeline dev up` refuses a port before it spawns anything, in words: a listener on it,
or a live socket that holds it without listening (an outgoing connection's local port, which
the kernel picks from the range our default ports lie in). A fresh-clone CI run saw the second
case only as the Temporal server's own "bind: address already in use"."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pipeline.dev.errors import ServiceError
from pipeline.dev.process import SpawnedService, port_bindable

HOST = "127.0.0.1"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock


def test_a_port_with_a_listener_is_taken_by_another_process(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(ServiceError, match=f"port {port} is taken by another process"):
        SpawnedService().ports_free(HOST, (port,), "PIPELINE_DEV_X_PORT")


def test_a_connections_local_port_is_refused_before_the_service_fails_to_bind(
    listener: socket.socket,
) -> None:
    with socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with accepted:
            local_port = client.getsockname()[1]
            assert not port_bindable(HOST, local_port)
            with pytest.raises(ServiceError) as raised:
                SpawnedService().ports_free(HOST, (local_port,), "PIPELINE_DEV_X_PORT")
    assert str(raised.value) == (
        f"port {local_port} is in use by another socket (nothing listens there; perhaps a "
        "connection's local port): wait for it to close or choose another port with "
        "PIPELINE_DEV_X_PORT"
    )
