"""The local servers' ports lie outside the kernel's ephemeral range, so no client connection can hold one while the
server is down for an outage (the cause of a Kafka restart failing with "Address already in use" in CI)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deployflow.local import ports
from deployflow.local.ports import candidate_ports, ephemeral_range, free_loopback_port


def test_given_the_kernel_range_when_choosing_ports_then_each_is_outside_it_and_bindable() -> None:
    low, high = ephemeral_range()

    chosen = [free_loopback_port() for _ in range(50)]

    inside = [port for port in chosen if low <= port <= high]
    assert not inside, f"ports inside the ephemeral range {low}-{high}: {inside}"
    for port in chosen:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))
    assert len(set(chosen)) > 1, f"always the same port: {chosen}"


def test_given_a_client_connection_holds_an_ephemeral_port_when_a_server_binds_it_then_address_in_use() -> None:
    # Why the range matters: an outgoing connection's local port blocks a listener on that port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            local_port = client.getsockname()[1]
            low, high = ephemeral_range()
            assert low <= local_port <= high, f"the kernel gave the client {local_port}, outside {low}-{high}"
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM and PostgreSQL do
                with pytest.raises(OSError, match="Address already in use"):
                    server.bind(("127.0.0.1", local_port))


def test_given_the_range_file_when_read_then_its_bounds_else_the_linux_default(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("40000\t50000\n")
    bad.write_text("not numbers\n")

    assert ephemeral_range(good) == (40000, 50000)
    assert ephemeral_range(bad) == ports.LINUX_DEFAULT_EPHEMERAL
    assert ephemeral_range(tmp_path / "missing") == ports.LINUX_DEFAULT_EPHEMERAL


def test_given_a_range_when_listing_candidates_then_none_inside_it_and_none_below_10000() -> None:
    candidates = candidate_ports((32768, 60999))

    assert candidates[0] == 10000
    assert candidates[-1] == 65535
    assert 32767 in candidates
    assert 61000 in candidates
    assert not [port for port in candidates if 32768 <= port <= 60999]


def test_given_no_free_candidate_when_choosing_then_a_kernel_chosen_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "candidate_ports", lambda ephemeral: [])

    port = free_loopback_port()

    assert 0 < port <= 65535
