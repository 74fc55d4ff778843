"""Who may connect to tinctd, and how many at once: its ZAP handler and connection count.

libzmq asks a ZAP handler (RFC 27) about every new connection once its handshake is done.
tinctd answers from its own loop: a CURVE client must hold one of the allowed public keys (the
user's plugin key, or a remote client's), and beyond `limit` open connections every new one is
refused, so a flood of connections cannot use up tinctd's file descriptors and lock the user
out.  The count comes from the socket's monitor (accepted minus disconnected).
"""
from __future__ import annotations

import logging

import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("tinctd")
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN = b"tinct"
HANDSHAKE_MS = 5000   # a connection that has not finished its handshake by then is dropped
BATCH = 64            # events handled per turn of tinctd's loop, so the loop stays fair


class Door:
    def __init__(self, ctx: zmq.Context, sock: zmq.Socket, allowed: set[bytes] | None, limit: int):
        """Guard `sock` (before it binds): `allowed` CURVE public keys (Z85), or None for NULL (ipc)."""
        self.allowed, self.limit = allowed, limit
        self.zap = ctx.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind(ZAP_ENDPOINT)
        sock.setsockopt(zmq.ZAP_DOMAIN, DOMAIN)
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        self.monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.open: set[int] = set()
        self.refused = 0

    @property
    def sockets(self) -> tuple[zmq.Socket, zmq.Socket]:
        return self.monitor, self.zap

    def serve(self) -> None:
        """Take in the connection events, then answer waiting ZAP requests (at most BATCH of each)."""
        for _ in range(BATCH):
            if not self.monitor.poll(0):
                break
            event = recv_monitor_message(self.monitor)
            if event["event"] == zmq.EVENT_ACCEPTED:
                self.open.add(event["value"])
            else:
                self.open.discard(event["value"])
        for _ in range(BATCH):
            if not self.zap.poll(0):
                break
            request = self.zap.recv_multipart()
            try:
                self.answer(request)
            except Exception:  # libzmq's request, but the door must never take the loop down
                log.exception("the ZAP handler failed; the connection is refused")
                self.zap.send_multipart([request[0][:8], request[1][:64] if len(request) > 1 else b"", b"500",
                                         b"internal error", b"", b""])

    def answer(self, request: list[bytes]) -> None:
        version, request_id, mechanism = request[0], request[1], request[5] if len(request) > 5 else b""
        user, why = b"", ""
        if len(self.open) > self.limit:
            why = f"more than {self.limit} connections are open"
        elif mechanism == b"CURVE":
            key = z85.encode(request[6]) if len(request) > 6 and len(request[6]) == 32 else b""
            user = key
            if self.allowed is None or key not in self.allowed:
                why = "its CURVE key is not an allowed client's"
        elif mechanism != b"NULL" or self.allowed is not None:
            why = f"it uses the {mechanism.decode('ascii', 'replace')[:8]} mechanism"
        if why:
            self.refused += 1
            log.info("refused a connection: %s", why)
        status = (b"400", why.encode()) if why else (b"200", b"OK")
        self.zap.send_multipart([version, request_id, *status, user, b""])

    def close(self) -> None:
        self.monitor.close(0)
        self.zap.close(0)
