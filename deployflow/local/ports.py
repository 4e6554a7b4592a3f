"""Loopback ports for the local servers (PostgreSQL, Kafka, the Lambda runtimes), chosen outside the ephemeral range.

A port the kernel hands out itself (``bind(("127.0.0.1", 0))``) lies in ``ip_local_port_range``, the range it also
gives every outgoing connection as its local port. A server stopped for an outage and started again on the same
port (the Kafka broker in the kafka-down-then-redrive scenario) then finds it taken by some client's connection
("Address already in use"), and a client reconnecting to a port in that range can even be connected to itself.
Ports outside the range are only ever taken by an explicit bind.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)
# Below 10000 live the well-known development ports (5432, 8080, 9092...) a user's own servers may take later.
LOWEST = 10000
HIGHEST = 65535
ATTEMPTS = 200


def ephemeral_range(path: Path = PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive); Linux's default where it cannot be read (another OS)."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL
    return low, high


def candidate_ports(ephemeral: tuple[int, int]) -> list[int]:
    """Every port from LOWEST to HIGHEST outside ``ephemeral``."""
    low, high = ephemeral
    return [port for port in range(LOWEST, HIGHEST + 1) if not low <= port <= high]


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago (the caller retries if
    someone binds it meanwhile). Falls back to a kernel-chosen port if no candidate is free."""
    candidates = candidate_ports(ephemeral_range())
    for port in random.sample(candidates, min(ATTEMPTS, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        chosen: int = probe.getsockname()[1]
        return chosen
