"""tinctd's socket side: the daemon loop (protocol: docs/protocol.md).

A ROUTER socket takes requests from any number of plugins and one worker thread
(tinct.serve.worker) runs the engines.  Painting fires many requests: a newer colorize for the
same (client, document) replaces one still queued, and `cancel` stops a queued or running job.
A request sent again with the same id (a client retrying after silence) joins the one already
known instead of running twice.  Bad requests get an error reply; nothing a client sends or
fails to do can stop the daemon.
"""
from __future__ import annotations

import collections
import logging
import os
import stat
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import zmq

from tinct import __version__
from tinct.engines import QUALITIES

from . import endpoint, keys, shm
from . import protocol as P
from .door import Door
from .job import admit
from .state import claim_socket
from .warmup import warm_engines
from .worker import Task, Worker

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tinctd")
MAX_QUEUED = 64               # requests waiting for the worker; more are answered `busy`
MAX_CONNECTIONS = 256         # open connections; more are refused at the handshake (tinct.serve.door)
SEND_HWM = 4                  # replies libzmq holds per client; more wait in tinctd (PENDING_BYTES)
PENDING_BYTES = 32 << 20      # replies waiting for a slow client, beyond one; older ones are dropped past this
RECEIVE_HWM = 4               # requests libzmq holds per connection before tinctd has read them
RECEIVE_BATCH = 16            # requests taken per turn of the loop, so finished replies and signals wait little
OWNER_BYTES = 16              # a plugin's sockets share this many leading bytes of their routing ids
RECENT = 1024                 # finished request keys remembered, so a status probe can say "done"
PRUNE_EVERY = 1.0             # seconds between looks for memfd buffers their clients closed


def defaults() -> dict:
    """What a request gets when it names no option: hello tells the plugins, so they need not know."""
    from tinct.engines import engine_class
    from tinct.engines.learned.engine import DEFAULT_VIBRANCY

    return {"quality": engine_class("optimization").DEFAULT_QUALITY, "qualities": list(QUALITIES),
            "vibrancy": round(DEFAULT_VIBRANCY, 4)}


def owner_of(identity: bytes) -> bytes:
    """Whose requests these are: the connection's routing id.  tinct_client gives each socket
    OWNER_BYTES random bytes of its own plus 4 more, so a plugin's sockets (and a Lazy Pirate
    resend on a fresh socket) share one owner that nobody else can name; ZeroMQ's own ids
    (a zero byte first) belong to their one connection."""
    return identity[:OWNER_BYTES] if len(identity) == OWNER_BYTES + 4 and identity[:1] != b"\0" else identity


class Daemon:
    """The socket side: receives, validates, queues, answers what needs no engine, sends replies."""

    def __init__(self, address: str, max_pixels: int, device: torch.device, curve: dict | None = None,
                 max_connections: int = MAX_CONNECTIONS, ipc_lock: IO | None = None):
        """Listen at `address`: an ipc socket in a private folder (`ipc_lock`: claim_socket's, taken
        here if None), or TCP with CURVE (`curve`: a "secret" certificate file and a "clients" folder
        of remote clients' keys, or None for the user's own keys, tinct.serve.keys)."""
        self.endpoint, self.max_pixels, self.device = address, max_pixels, device
        self.max_bytes = P.max_message_bytes(max_pixels)
        self.max_queued_bytes = 2 * self.max_bytes
        self.started = time.time()
        self.shm_dir = shm.directory() if endpoint.is_loopback(address) else None
        if self.shm_dir is not None and shm.sweep(self.shm_dir):
            log.info("removed shared-memory files of plugins that are gone from %s", self.shm_dir)
        self.buffers: shm.Buffers | None = None  # clients' memfd buffers, where the system has them
        self.fresh_key()
        engines = warm_engines(device)
        self.active: dict[tuple, Task] = {}                 # queued, running, or answered but not yet sent
        self.recent: collections.OrderedDict = collections.OrderedDict()  # keys answered lately
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.pending: dict[bytes, collections.deque] = {}  # replies libzmq had no room for, per client
        for option, value in ((zmq.LINGER, 0), (zmq.MAXMSGSIZE, self.max_bytes), (zmq.SNDHWM, SEND_HWM),
                              (zmq.RCVHWM, RECEIVE_HWM), (zmq.ROUTER_MANDATORY, 1)):
            self.sock.setsockopt(option, value)
        self.ipc_lock = ipc_lock
        try:
            allowed = None
            if address.startswith("tcp://"):  # any local user can reach it: CURVE, and only the user's clients
                extra = Path(curve["clients"]) if curve and curve.get("clients") else None
                public, secret = keys.server_pair(Path(curve["secret"]) if curve and curve.get("secret") else None)
                allowed = keys.allowed_clients(extra)
                self.sock.curve_secretkey, self.sock.curve_publickey, self.sock.curve_server = secret, public, True
            elif self.ipc_lock is None:
                self.ipc_lock = claim_socket(address)
            self.door = Door(self.ctx, self.sock, allowed, max_connections)
            self.sock.bind(address)
        except (zmq.ZMQError, endpoint.EndpointError) as exc:
            self.close_sockets()
            raise SystemExit(f"tinctd cannot listen on {address}: {exc}") from None
        self.wake = self.ctx.socket(zmq.PULL)
        wake = f"inproc://tinctd-wake-{id(self)}"
        self.wake.bind(wake)
        self.worker = Worker(self.ctx, wake, device, engines, self.shm_dir)
        self.worker.start()
        self.stopping = False

    def fresh_key(self) -> None:
        """A new shared-memory key for this start (and for a folder made again): an old one, read by
        whoever could once, opens nothing of this tinctd's."""
        if self.shm_dir is None or not shm.memfd_possible():
            return
        try:
            self.buffers = shm.Buffers(shm.new_key(self.shm_dir))
        except OSError as exc:
            self.buffers = None
            log.warning("no memfd buffers: the shared-memory key cannot be written (%s)", exc)

    def shared_memory(self) -> Path | None:
        """The shared-memory folder, made again if it went away (a logout cleans $XDG_RUNTIME_DIR)."""
        if self.shm_dir is None:
            return None
        try:
            st = self.shm_dir.lstat()
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                return self.shm_dir
        except OSError:
            pass
        folder = shm.directory()
        if folder != self.shm_dir:
            log.warning("the shared-memory folder %s is gone and cannot be made again; pixels travel as frames",
                        self.shm_dir)
            self.shm_dir = self.worker.shm_dir = None
            self.buffers = None
            return None
        log.warning("the shared-memory folder %s was removed; made it again with a new key", folder)
        self.fresh_key()
        return folder

    def hello(self) -> dict:
        import torch

        from tinct import api

        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        engines = self.worker.engine_states()
        models = {name: getattr(api.get_engine(name), "version", None) for name, state in engines.items()
                  if state == "ready"}
        info = {"version": P.VERSION, "tinct": __version__, "engines": engines,
                "models": {k: v for k, v in models.items() if v}, "devices": devices, "device": str(self.device),
                "limits": {"max_pixels": self.max_pixels, "max_bytes": self.max_bytes, "max_queued": MAX_QUEUED},
                "layouts": list(P.LAYOUTS), "samples": list(P.SAMPLES), "features": list(P.FEATURES),
                "authenticated": "curve" if self.endpoint.startswith("tcp://") else "private socket",
                "defaults": defaults()}
        folder = self.shared_memory()
        if folder is not None:
            st = folder.stat()
            info.update(shm_dir=str(folder), shm_id=[st.st_dev, st.st_ino], memfd=self.buffers is not None)
            if self.buffers is not None:
                info["shm_key"] = shm.key_name()
        return info

    def handle(self, identity: bytes, frames: list) -> dict | None:
        """A reply to send now, or None when the worker will answer later.  Nothing a request holds
        gets past this: an unexpected failure is an `internal` answer and one log line, never the loop."""
        try:
            return self.dispatch(identity, frames)
        except P.ProtocolError as exc:
            log.debug("refused a request: %s", exc.message)
            return P.error(self.request_id, exc.code, exc.message, exc.transport)
        except Exception as exc:
            log.exception("request %s failed inside tinctd", P.describe(self.request_id))
            return P.error(self.request_id, "internal", f"tinctd could not handle this request ({type(exc).__name__}); "
                                                        "its log has the details")

    def dispatch(self, identity: bytes, frames: list) -> dict | None:
        self.request_id = None
        message = P.unpack(frames, self.max_bytes)
        self.request_id = message.get("id") if isinstance(message.get("id"), str) else None
        version = P.field(message, "v", int)
        if version != P.VERSION:
            raise P.ProtocolError("unsupported", f"this tinctd speaks protocol {P.VERSION}, the plugin "
                                                 f"{version}; update the plugin or tinct")
        kind = P.field(message, "type", str)
        if kind not in P.REQUESTS:
            raise P.ProtocolError("bad_request", f"unknown request type {P.describe(kind)}; "
                                                 f"known: {', '.join(P.REQUESTS)}")
        ok = {"v": P.VERSION, "id": self.request_id, "ok": True, "type": kind}
        owner = owner_of(identity)
        if kind == "hello":
            return {**ok, **self.hello()}
        if kind == "status":
            return {**ok, **self.status(owner, P.field(message, "target", str, required=False))}
        if kind == "cancel":
            return {**ok, "found": self.cancel(owner, P.field(message, "target", str))}
        job = P.parse_job(message, self.max_pixels, self.worker.engine_states())
        job.client = owner
        self.enqueue(identity, job)
        return None

    def enqueue(self, identity: bytes, job: P.Colorize) -> None:
        task = self.active.get(job.key)
        if task is not None:  # the same request again: one job, everyone gets its answer
            if task.job.signature != job.signature:
                raise P.ProtocolError("bad_request", f"request id {P.describe(job.id)} is already in use for a "
                                                     "different request; give every request a new id")
            task.waiters.append(identity)
            return
        shared = job.shared
        size = sum(len(b) for b in (job.image.data, job.hints and job.hints.data, job.selection,
                                    job.reference and job.reference.data) if b is not None)
        count, held = self.worker.load()
        if count >= MAX_QUEUED or held + size > self.max_queued_bytes:
            raise P.ProtocolError("busy", f"tinctd already has {count} requests waiting; try again in a moment")
        refusal = admit(job)
        if refusal is not None and refusal[0] == "too_large":  # never fits; whether it fits now, the worker asks
            raise P.ProtocolError(*refusal)
        if shared is not None:
            if self.shared_memory() is None or (shared.memfd and self.buffers is None):
                raise shm.refused("this tinctd takes no such shared memory on this endpoint; send the pixels "
                                  "as frames", "unsupported")
            if shared.memfd:
                assert self.buffers is not None  # refused just above otherwise
                self.buffers.prune()
                self.buffers.attach(shared, P.result_bytes(job))
            else:
                assert self.shm_dir is not None  # shared_memory() returned it just above
                shm.check(self.shm_dir, shared.file, shared.size)
                shm.check(self.shm_dir, shared.reply, 0)
        task = Task(job, [identity], size)
        self.active[job.key] = task
        for old in self.worker.submit(task):
            self.finish(old, P.error(old.job.id, "cancelled", "superseded by a newer request for the same document"))

    def status(self, owner: bytes, target: str | None) -> dict:
        info = {"uptime": time.time() - self.started, **self.worker.status(owner)}
        if target is not None:
            task = self.active.get((owner, target))
            if task is not None:
                info.update(self.worker.state(task))
            else:
                info["job"] = "done" if (owner, target) in self.recent else "unknown"
        return info

    def cancel(self, owner: bytes, target: str) -> bool:
        task = self.active.get((owner, target))
        where = self.worker.withdraw(task) if task is not None else ""
        if where == "queued":
            assert task is not None  # withdraw found it
            self.finish(task, P.error(target, "cancelled", "cancelled before it started"))
        return bool(where)

    def finish(self, task: Task, reply: dict) -> None:
        self.active.pop(task.job.key, None)
        self.recent[task.job.key] = None
        while len(self.recent) > RECENT:
            self.recent.popitem(last=False)
        frames = P.frames_of(reply)
        for identity in task.waiters:
            self.send(identity, frames)

    def serve(self) -> None:
        poller = zmq.Poller()
        for sock in (self.sock, self.wake, *self.door.sockets):
            poller.register(sock, zmq.POLLIN)
        log.info("tinctd %s listening on %s (device %s, %s, shared memory %s%s)", __version__, self.endpoint,
                 self.device, "CURVE" if self.endpoint.startswith("tcp://") else "private socket",
                 self.shm_dir or "off", ", memfd buffers" if self.buffers else "")
        pruned = time.monotonic()
        while not self.stopping:
            try:
                events = dict(poller.poll(5 if self.pending else 200))
            except zmq.ZMQError:  # interrupted by a signal
                continue
            self.door.serve()
            if self.wake in events:
                while self.wake.poll(0):
                    self.wake.recv()
            self.flush()
            self.drain()  # finished work first: a burst of requests must not hold answers back
            if self.sock in events:
                self.receive()
            if self.buffers and self.buffers.maps and time.monotonic() - pruned > PRUNE_EVERY:
                self.buffers.prune()  # a closed or dead client's memory is given back within a second
                pruned = time.monotonic()
        self.close()

    def drain(self) -> None:
        while self.worker.finished:
            task, reply = self.worker.finished.popleft()
            if reply.get("type") == "partial":  # the answer is still to come: everyone waiting stays
                frames = P.frames_of(reply)
                for identity in task.waiters:
                    self.send(identity, frames)
            else:
                self.finish(task, reply)

    def receive(self) -> None:
        """At most RECEIVE_BATCH requests, then back to the loop (finished jobs, signals, the door)."""
        for _ in range(RECEIVE_BATCH):
            if self.stopping or not self.sock.poll(0):
                return
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.ZMQError:
                return
            if len(frames) < 3 or len(frames[1]):
                log.debug("ignoring a message of %d frames without the REQ/DEALER envelope", len(frames))
                continue
            identity = frames[0].bytes
            reply = self.handle(identity, [f.buffer for f in frames[2:]])
            del frames
            if reply is not None:
                self.send(identity, P.frames_of(reply))

    def send(self, identity: bytes, frames: list) -> None:
        """Reply now, or after the client has read what libzmq holds for it (SEND_HWM): a client that
        reads slowly loses nothing, one that never reads costs at most PENDING_BYTES beyond one reply."""
        queue = self.pending.get(identity)
        if queue is None and self.deliver(identity, frames):
            return
        queue = self.pending.setdefault(identity, collections.deque())
        queue.append(frames)
        while len(queue) > 1 and sum(sum(len(f) for f in item) for item in queue) > PENDING_BYTES:
            queue.popleft()
            log.info("dropped a reply to a client that does not read its replies")

    def deliver(self, identity: bytes, frames: list) -> bool:
        """False when libzmq has no room for the client now; a client that is gone counts as delivered."""
        try:
            self.sock.send_multipart([identity, b""] + frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the client went away
            log.debug("could not reply to a client: %s", exc)
        return True

    def flush(self) -> None:
        for identity, queue in list(self.pending.items()):
            while queue and self.deliver(identity, queue[0]):
                queue.popleft()
            if not queue:
                del self.pending[identity]

    def close(self) -> None:
        """Answer everyone still waiting, then stop: queued work `busy`, the running job `cancelled`."""
        for task in self.worker.stop():
            self.finish(task, P.error(task.job.id, "busy", "tinctd is shutting down; start it again and retry"))
        self.worker.join(10)
        self.drain()
        self.flush()
        self.sock.setsockopt(zmq.LINGER, 2000)  # let those last replies leave
        self.close_sockets()
        if self.buffers is not None and self.shm_dir is not None:
            (self.shm_dir / shm.key_name()).unlink(missing_ok=True)
        log.info("tinctd stopped")

    def close_sockets(self) -> None:
        door = getattr(self, "door", None)
        if door is not None:
            door.close()
        for sock in (self.sock, getattr(self, "wake", None)):
            if sock is not None:
                sock.close()
        self.ctx.term()
        if self.ipc_lock is not None:
            self.ipc_lock.close()
