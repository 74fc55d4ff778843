"""tinctd: the local daemon the editor plugins talk to (protocol: docs/protocol.md).

One process per user keeps the engines warm; a ROUTER socket takes requests from any
number of plugins; one worker thread runs the engines, so requests never fight over GPU
memory.  Painting fires many requests: a newer colorize for the same (client, document)
replaces one still queued, and `cancel` stops a queued or running job.  A request sent
again with the same id (a client retrying after silence) joins the one already known
instead of running twice.  Bad requests get an error reply; nothing a client sends or
fails to do can stop the daemon.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import logging.handlers
import math
import os
import re
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

from tinct import __version__
from tinct.engines import QUALITIES
from tinct.engines.optimization import levin

from . import admission, endpoint, keys, shm
from . import protocol as P
from .door import Door

try:
    import resource
except ImportError:  # Windows
    resource = None

log = logging.getLogger("tinctd")
MAX_QUEUED = 64               # requests waiting for the worker; more are answered `busy`
MAX_CONNECTIONS = 256         # open connections; more are refused at the handshake (tinct.serve.door)
SEND_HWM = 4                  # replies libzmq holds per client; more wait in tinctd (PENDING_BYTES)
PENDING_BYTES = 32 << 20      # replies waiting for a slow client, beyond one; older ones are dropped past this
RECEIVE_HWM = 4               # requests libzmq holds per connection before tinctd has read them
RECEIVE_BATCH = 16            # requests taken per turn of the loop, so finished replies and signals wait little
OWNER_BYTES = 16              # a plugin's sockets share this many leading bytes of their routing ids
RECENT = 1024                 # finished request keys remembered, so a status probe can say "done"
RETAIN_SCRATCH = 256 << 20    # shared-memory buffers are kept between jobs up to this size (each)
PRUNE_EVERY = 1.0             # seconds between looks for memfd buffers their clients closed


class Cancelled(Exception):
    pass


def state_dir() -> Path:
    """Where the lock and the log live: $TINCT_STATE_DIR, else $XDG_STATE_HOME/tinct (an empty or
    relative XDG_STATE_HOME is ignored, as the XDG spec says), made 0700 and checked like the
    shared-memory folder: another user's folder, or one others may write in, is refused."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local/state"
    path = Path(os.environ.get("TINCT_STATE_DIR") or base / "tinct").absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return endpoint.private_folder(path)


def owner_of(identity: bytes) -> bytes:
    """Whose requests these are: the connection's routing id.  tinct_client gives each socket
    OWNER_BYTES random bytes of its own plus 4 more, so a plugin's sockets (and a Lazy Pirate
    resend on a fresh socket) share one owner that nobody else can name; ZeroMQ's own ids
    (a zero byte first) belong to their one connection."""
    return identity[:OWNER_BYTES] if len(identity) == OWNER_BYTES + 4 and identity[:1] != b"\0" else identity


@dataclass(eq=False)
class Task:
    """A job and everyone waiting for its answer (more than one when a client re-sent it)."""
    job: P.Colorize
    waiters: list
    size: int  # bytes of pixels the queued request holds (frames or shared memory)


def default_quality(engine) -> str:
    """The quality an engine uses when the request names none: each engine declares its own."""
    return getattr(engine, "DEFAULT_QUALITY", "final")


def defaults() -> dict:
    """What a request gets when it names no option: hello tells the plugins, so they need not know."""
    from tinct.engines.learned.engine import DEFAULT_VIBRANCY

    return {"quality": "final", "qualities": list(QUALITIES), "vibrancy": round(DEFAULT_VIBRANCY, 4)}


def admit(job: P.Colorize) -> tuple[str, str] | None:
    """tinct.serve.admission's verdict on a job: refused before the OOM killer would have to step in."""
    image = job.image
    return admission.admit(job.engine, job.options.get("quality"), image.width * image.height,
                           shortest_side=min(image.width, image.height))


class Progress:
    """A running solve's fraction done, estimated from the Krylov callback (iteration, residual).

    Both qualities are one Krylov solve from zero (CG for `preview`, GCR for `final`), so the
    fraction is how far log(residual) has come towards log(TOL[quality]).  Never decreases (a
    retry on the CPU starts again from a large residual), stays below 1 until the reply.
    """

    def __init__(self, quality: str):
        self.tol = levin.TOL[quality]
        self.value = 0.0

    def update(self, iteration: int, residual: float) -> float:
        within = math.log(residual) / math.log(self.tol) if 0 < residual < 1 else float(residual <= 0)
        self.value = max(self.value, min(max(within, 0.0), 0.99))
        return self.value


class Worker(threading.Thread):
    """Runs jobs one at a time; finished ones go back to the socket thread through `finished`."""

    def __init__(self, ctx: zmq.Context, wake: str, device, engines: dict, shm_dir: Path | None):
        super().__init__(name="tinct-worker", daemon=True)
        self.ctx, self.wake_endpoint, self.device = ctx, wake, device
        self.engines, self.shm_dir = engines, shm_dir
        self.cond = threading.Condition()
        self.queue: collections.deque[Task] = collections.deque()
        self.finished: collections.deque = collections.deque()
        self.running: Task | None = None
        self.progress: Progress | None = None
        self.cancel_running = False
        self.stopping = False
        self.done = 0
        self.buffers: dict[str, bytearray] = {}

    # -- called from the socket thread -------------------------------------------------
    def submit(self, task: Task) -> list[Task]:
        """Queue `task`; the queued tasks it supersedes (same client and document) are returned."""
        with self.cond:
            key = task.job.document_key
            old = [t for t in self.queue if key is not None and t.job.document_key == key]
            for t in old:
                self.queue.remove(t)
            self.queue.append(task)
            self.cond.notify()
        return old

    def withdraw(self, task: Task) -> str:
        """Cancel `task`: "queued" (removed, not answered yet), "running" (it will stop), or ""."""
        with self.cond:
            if task in self.queue:
                self.queue.remove(task)
                return "queued"
            if self.running is task:
                self.cancel_running = True
                return "running"
        return ""

    def state(self, task: Task) -> dict:
        with self.cond:
            if self.running is task:
                return {"job": "running", "progress": self.progress.value if self.progress else 0.0}
            for position, queued in enumerate(self.queue):
                if queued is task:
                    return {"job": "queued", "position": position, "progress": 0.0}
        return {"job": "done", "progress": 1.0}

    def load(self) -> tuple[int, int]:
        with self.cond:
            return len(self.queue), sum(t.size for t in self.queue)

    def status(self, owner: bytes) -> dict:
        """The queue as `owner` may see it: its own queued and running jobs, and how many finished."""
        with self.cond:
            running = self.running.job.id if self.running and self.running.job.client == owner else None
            return {"queued": sum(t.job.client == owner for t in self.queue), "running": running,
                    "done": self.done}

    def stop(self) -> list[Task]:
        """Stop after the running job (asked to cancel); the tasks still queued are returned."""
        with self.cond:
            self.stopping, self.cancel_running = True, True
            pending = list(self.queue)
            self.queue.clear()
            self.cond.notify()
        return pending

    # -- worker thread ----------------------------------------------------------------
    def run(self) -> None:
        wake = self.ctx.socket(zmq.PUSH)
        wake.connect(self.wake_endpoint)
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    break
                task = self.queue.popleft()
                self.running, self.cancel_running, self.progress = task, False, None
            reply = self.answer(task.job)
            with self.cond:
                self.running = None
                self.done += 1
                self.finished.append((task, reply))
            del task, reply  # while waiting for the next: a job holds its client's buffers (memfd mappings)
            wake.send(b"")
        wake.close(0)

    def on_iteration(self, iteration: int, residual: float) -> None:
        """The engines' per-iteration callback: where a running job notices `cancel`."""
        if self.progress is not None:
            self.progress.update(iteration, residual)
        if self.cancel_running:
            raise Cancelled()

    def answer(self, job: P.Colorize) -> dict:
        try:
            return self.process(job)
        except Cancelled:
            why = ("tinctd was stopped while working on this image; start it again and retry" if self.stopping
                   else "cancelled while running")
            return P.error(job.id, "cancelled", why)
        except P.ProtocolError as exc:
            return P.error(job.id, exc.code, exc.message, exc.transport)
        except MemoryError:
            log.warning("job %s: out of memory", job.id)
            return P.error(job.id, "too_large", f"tinctd ran out of memory on this {job.image.width}x"
                                                f"{job.image.height} layer; try a smaller layer or selection")
        except Exception as exc:  # an engine bug must not take the daemon down
            log.exception("job %s failed", job.id)
            return P.error(job.id, "internal", f"tinctd failed on this request ({type(exc).__name__}: {exc}); "
                                               "its log has the details")

    def scratch(self, which: str, size: int) -> memoryview:
        """A buffer for shared-memory requests ("in") or their results ("out"), kept between jobs:
        touching fresh memory costs several times the copy itself."""
        if len(self.buffers.get(which, b"")) < size:
            buffer = bytearray(size)
            if size <= RETAIN_SCRATCH:
                self.buffers[which] = buffer
            return memoryview(buffer)
        return memoryview(self.buffers[which])[:size]

    def process(self, job: P.Colorize) -> dict:
        import torch

        from tinct import api

        start = time.perf_counter()
        refusal = admit(job)  # now, with nothing else running, the memory figures are this job's to take
        if refusal is not None:
            raise P.ProtocolError(*refusal)
        shared = job.shared
        if shared is not None and shared.memfd:  # the client's own pages: nothing to copy
            job.attach(memoryview(shared.maps[0])[:shared.size] if shared.size else memoryview(b""))
        elif shared is not None:
            assert self.shm_dir is not None  # the daemon queued a file request only with a folder
            view = self.scratch("in", shared.size)
            shm.read(self.shm_dir, shared.file, view)
            job.attach(view)
        original = job.image.raw()
        image = job.image.engine_input(original)
        hints = job.hints.rgba() if job.hints is not None else None
        try:
            engine = api.get_engine(job.engine)
        except api.ModelNotInstalled as exc:
            self.engines[job.engine] = f"not installed: {exc}"
            raise P.ProtocolError("unsupported", str(exc)) from None
        self.engines[job.engine] = "ready"
        options = {k: v for k, v in job.options.items() if k in engine.OPTIONS}
        if "callback" in engine.OPTIONS:
            options["callback"] = self.on_iteration
            self.progress = Progress(options.get("quality") or default_quality(engine))
        decoded = time.perf_counter()
        note, device = None, self.device
        try:
            try:
                result = self.run_engine(job, image, hints, options, device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                note, device = "the GPU ran out of memory; this result was computed on the CPU", torch.device("cpu")
                log.warning("job %s: CUDA out of memory, retrying on the CPU", job.id)
                result = self.run_engine(job, image, hints, options, device)
        except ValueError as exc:  # tinct's own sentence about the input
            raise P.ProtocolError("bad_request", str(exc)) from None
        engine_done = time.perf_counter()
        reply = {"v": P.VERSION, "id": job.id, "ok": True, "type": job.type, "engine": job.engine,
                 "device": str(device)}
        if job.type == "suggest":
            reply["colors"] = [[int(v) for v in c] for c in result]
        else:
            out = None
            if shared is not None and shared.memfd:  # straight into the client's reply buffer
                out = memoryview(shared.maps[1])[:P.result_bytes(job)]
            elif shared is not None:  # written to the client's file before the next job: reusable
                out = self.scratch("out", P.result_bytes(job))
            layout, data = P.encode_result(job, result, original, out)
            reply.update(width=job.image.width, height=job.image.height, layout=layout, sample=job.image.sample)
            if shared is not None and shared.memfd:
                reply["shm"] = shared.reply_spec(len(data))
            elif shared is not None:
                assert self.shm_dir is not None  # as for reading the request above
                try:
                    shm.write(self.shm_dir, shared.reply, data)
                    reply["shm"] = shared.reply_spec(len(data))
                except OSError as exc:  # e.g. a full tmpfs: the socket still works (a copy: `out` is reused)
                    log.warning("job %s: result sent as a frame, the shared-memory file failed: %s", job.id, exc)
                    reply["pixels"] = bytes(data)
            else:
                reply["pixels"] = data
        if note:
            reply["note"] = note
        done = time.perf_counter()
        reply["timings"] = {"decode": decoded - start, "engine": engine_done - decoded,
                            "encode": done - engine_done, "total": done - start}
        log.info("%s %s: %dx%d %s %s, %s on %s, %.3f s", job.type, job.id, job.image.width, job.image.height,
                 job.image.layout, job.image.sample, job.engine, device, done - start)
        return reply

    @staticmethod
    def run_engine(job, image, hints, options, device):
        import tinct

        if job.type == "suggest":
            return tinct.suggest_colors(image, hints, job.x, job.y, job.k, device=device)
        return tinct.colorize(image, hints, engine=job.engine, device=device, **options)


class Daemon:
    """The socket side: receives, validates, queues, answers what needs no engine, sends replies."""

    def __init__(self, address: str, max_pixels: int, device, curve=None, max_connections: int = MAX_CONNECTIONS,
                 ipc_lock=None):
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
        self.engines = warm_engines(device)
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
        self.worker = Worker(self.ctx, wake, device, self.engines, self.shm_dir)
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
        models = {name: getattr(api.get_engine(name), "version", None) for name, state in self.engines.items()
                  if state == "ready"}
        info = {"version": P.VERSION, "tinct": __version__, "engines": dict(self.engines),
                "models": {k: v for k, v in models.items() if v}, "devices": devices, "device": str(self.device),
                "limits": {"max_pixels": self.max_pixels, "max_bytes": self.max_bytes, "max_queued": MAX_QUEUED},
                "layouts": list(P.LAYOUTS), "samples": list(P.SAMPLES),
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
        job = P.parse_job(message, self.max_pixels, self.engines)
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
        size = sum(len(b) for b in (job.image.data, job.hints and job.hints.data, job.selection) if b is not None)
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
            self.finish(*self.worker.finished.popleft())

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


def claim_socket(address: str):
    """Make an ipc endpoint's folder private and take its lock, so that a second tinctd (or anything
    else) never silently takes the socket of a running one; the lock file, held open."""
    path = Path(address[len("ipc://"):])
    endpoint.private_folder(path.parent, create=path.parent == endpoint.runtime_dir())
    lock = open_private(path.with_name(path.name + ".lock"))
    try:
        _lock_exclusively(lock)
    except OSError:
        lock.close()
        raise endpoint.EndpointError("another tinctd is listening there; stop it first") from None
    return lock


def warm_engines(device) -> dict:
    """Load every engine once and run it on a tiny image; name -> "ready" or why not."""
    from tinct import api

    engines = {}
    grey = np.zeros((16, 16), np.uint8)
    for name in api.ENGINES:
        try:
            api.colorize(grey, engine=name, device=device)  # the first call pays for kernels and weights
            engines[name] = "ready"
        except api.ModelNotInstalled as exc:
            engines[name] = f"not installed: {exc}"
            log.warning("engine %s: %s", name, exc)
        except Exception as exc:  # a broken engine must not keep the others from serving
            engines[name] = f"failed: {exc}"
            log.exception("engine %s failed to start", name)
    return engines


def _lock_exclusively(handle) -> None:
    """A non-blocking exclusive lock on an open file, held until the process ends; OSError if taken.
    (Windows, untested here: msvcrt locks the first byte, which others then cannot read either.)"""
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        handle.seek(0)
        msvcrt.locking(  # pyright: ignore[reportAttributeAccessIssue]  # msvcrt's stubs: Windows only
            handle.fileno(), msvcrt.LK_NBLCK, 1)  # pyright: ignore[reportAttributeAccessIssue]  # likewise


def open_private(path: Path):
    """`path` opened for reading and writing, made 0600 if new; never through a link, never a file of
    another user or one others may read (tinctd's lock and log)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise endpoint.EndpointError(f"{path} cannot be opened ({exc.strerror}); if it is a link, remove it") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (os.name == "posix" and (info.st_uid != os.geteuid() or info.st_mode & 0o077)):
        os.close(fd)
        raise endpoint.EndpointError(f"{path} is not a private file of this user; remove it")
    return os.fdopen(fd, "r+")


def acquire_lock(directory: Path, address: str):
    """One tinctd per user: an exclusive lock, naming who holds it."""
    handle = open_private(directory / "tinctd.lock")
    try:
        _lock_exclusively(handle)
    except OSError:
        handle.seek(0)
        try:
            info = json.loads(handle.read() or "{}")
        except (ValueError, OSError):  # half written, or locked against reading (Windows)
            info = {}
        raise SystemExit(f"tinctd is already running (pid {info.get('pid', '?')}) at "
                         f"{info.get('endpoint', '?')}; stop it first, or give a second one its own "
                         "--state-dir and --endpoint") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "endpoint": address}))
    handle.flush()
    return handle


def check(device) -> int:
    """tinctd --check: device, engines and their models, and a real colorization each; 0 when usable."""
    import torch

    from tinct import api

    print(f"tinct {__version__}, torch {torch.__version__}, protocol {P.VERSION}")
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    folder = shm.directory()
    ways = "memfd buffers, else files" if shm.memfd_possible() else "files"
    print(f"shared memory: {f'{folder} ({ways})' if folder else 'unavailable (pixels travel as frames)'}")
    img = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    hints = np.zeros((32, 32, 4), np.uint8)
    hints[4:8, 4:8] = (200, 50, 50, 255)
    ok = True
    for name in api.ENGINES:
        try:
            engine = api.get_engine(name)
        except api.ModelNotInstalled as exc:
            print(f"engine {name}: not installed ({exc})")
            continue
        try:
            out = api.colorize(img, hints, engine=name, device=device)
            model = f", model {engine.version}" if hasattr(engine, "version") else ""
            print(f"engine {name}: ready{model}; colorize ok ({out.shape[1]}x{out.shape[0]})")
        except Exception as exc:
            print(f"engine {name}: FAILED ({type(exc).__name__}: {exc})")
            ok = False
    return 0 if ok else 1


class Escaped(logging.Filter):
    """Log lines say what clients sent only escaped: a request id cannot forge a line of its own."""

    UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.UNSAFE.search(text):
            record.msg, record.args = self.UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text), None
        return True


def setup_logging(directory: Path, verbose: bool) -> None:
    open_private(directory / "tinctd.log").close()  # 0600, no link (rotated files inherit umask 077)
    file = logging.handlers.RotatingFileHandler(directory / "tinctd.log", maxBytes=5 << 20, backupCount=2)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr), file]
    for handler in handlers:
        handler.addFilter(Escaped())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers)


def raise_fd_limit() -> None:
    """Open files up to the hard limit: each connection is one, and libzmq spins when it runs out."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        log.debug("the open-file limit stays %d", soft)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tinctd", description="Tinct's colorization daemon for the GIMP and Krita "
                                                            "plugins (protocol: docs/protocol.md).")
    default = os.environ.get("TINCT_ENDPOINT") or endpoint.default_endpoint()
    ap.add_argument("--endpoint", default=default,
                    help=f"ZeroMQ endpoint, ipc://PATH or tcp://ADDRESS:PORT (default $TINCT_ENDPOINT or {default})")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    ap.add_argument("--max-megapixels", type=float, default=P.DEFAULT_MAX_PIXELS / 1e6,
                    help="largest layer accepted (default %(default)g); memory may allow less (tinct.serve.admission)")
    ap.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                    help="open connections at once; more are refused (default %(default)d)")
    ap.add_argument("--state-dir", help="lock and log folder (default $TINCT_STATE_DIR or $XDG_STATE_HOME/tinct)")
    ap.add_argument("--allow-remote", action="store_true",
                    help="bind a non-loopback address (needs --curve-secret and --curve-clients)")
    ap.add_argument("--curve-secret", help="this server's zmq.auth secret certificate file "
                                           "(default on tcp: the user's key folder, tinct.serve.keys)")
    ap.add_argument("--curve-clients", help="folder of the allowed remote clients' public certificates")
    ap.add_argument("--check", action="store_true", help="print device, engines, models; exit 0 if usable")
    ap.add_argument("--verbose", action="store_true", help="log every refused request too")
    args = ap.parse_args(argv)
    os.umask(0o077)  # everything tinctd makes (lock, log, keys, sockets) is its user's alone
    if args.state_dir:
        os.environ["TINCT_STATE_DIR"] = args.state_dir
    if not (math.isfinite(args.max_megapixels) and 0 < args.max_megapixels <= 1e5):
        ap.error("--max-megapixels must be a number above 0 and at most 100000")
    if not 1 <= args.max_connections <= 1 << 16:
        ap.error("--max-connections must be from 1 to 65536")
    from tinct.engines import default_device

    try:
        device = default_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    if args.check:
        return check(device)
    try:
        address = endpoint.check(args.endpoint)
        if not endpoint.is_loopback(address):
            if not args.allow_remote:
                ap.error(f"{address} is reachable from other machines; pass --allow-remote (with CURVE keys) "
                         "if that is what you want")
            if not (args.curve_secret and args.curve_clients):
                ap.error("a remote endpoint needs --curve-secret and --curve-clients (see docs/protocol.md)")
        if address.startswith("tcp://"):  # the keys now, before minutes of warming engines
            keys.server_pair(Path(args.curve_secret) if args.curve_secret else None)
            keys.allowed_clients(Path(args.curve_clients) if args.curve_clients else None)
        directory = state_dir()
        lock = acquire_lock(directory, address)
        ipc_lock = claim_socket(address) if address.startswith("ipc://") else None
        setup_logging(directory, args.verbose)
    except endpoint.EndpointError as exc:
        ap.error(str(exc))
    raise_fd_limit()
    daemon = None

    def stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        if daemon is None:  # still warming the engines
            raise SystemExit(0)
        daemon.stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, stop)
    curve = {"secret": args.curve_secret, "clients": args.curve_clients}
    daemon = Daemon(address, int(args.max_megapixels * 1e6), device, curve, args.max_connections, ipc_lock)
    daemon.serve()
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
