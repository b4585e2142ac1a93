"""Which brokers are live, from a Metadata request sent over a plain socket.

Separate from ``bando.infra.kafka`` because it is a client of the broker, not part of running
one: the single broker's readiness check and ``bando.infra.cluster``'s quorum checks both use
it, and it needs nothing but the wire format of one request.
"""

from __future__ import annotations

import socket
import struct


def metadata_broker_ids(host: str, port: int, timeout: float = 2.0) -> set[int]:
    """Node ids of the live brokers in a Metadata (v4) answer from ``host:port``.

    A plain socket instead of a Kafka client, so readiness can be checked from synchronous
    code even inside a running event loop. In KRaft a broker lists itself only once it is
    unfenced, i.e. when it can really serve: an open port alone is not enough (and a
    restarted cluster node is ready when it lists itself, not when it lists the others).
    """
    client_id = b"bando-probe"
    # Header v1 (api_key 3 = Metadata, version 4, correlation id, client id), then
    # an empty topic list (brokers only) and allow_auto_topic_creation = false.
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
    pos = 8  # correlation id, throttle time
    (count,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    ids: set[int] = set()
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", payload, pos)
        pos += 6 + host_len + 4  # node id, host string, port
        (rack_len,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + max(rack_len, 0)
        ids.add(node_id)
    return ids


def metadata_broker_count(host: str, port: int, timeout: float = 2.0) -> int:
    """Number of live brokers (see :func:`metadata_broker_ids`)."""
    return len(metadata_broker_ids(host, port, timeout))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)
