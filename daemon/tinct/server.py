"""tinctd: the local daemon the editor plugins talk to (protocol: docs/protocol.md).

One process per user keeps the engines warm; a ROUTER socket takes requests from any
number of plugins; one worker thread runs the engines, so requests never fight over GPU
memory.  Painting fires many requests: a newer colorize for the same (client, document)
replaces one still queued, and `cancel` stops a queued or running job.  Bad requests get
an error reply; nothing a client sends or fails to do can stop the daemon.
"""
from __future__ import annotations

import argparse
import collections
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from . import __version__
from . import protocol as P

log = logging.getLogger("tinctd")
# Options each engine understands; the plugins send one dialog's worth and the rest is ignored.
ENGINE_OPTIONS = {"optimization": {"quality", "edge_sensitivity"}, "learned": {"vibrancy", "quality"}}


class Cancelled(Exception):
    pass


def state_dir() -> Path:
    """Where the lock and the log live: $TINCT_STATE_DIR, else $XDG_STATE_HOME/tinct."""
    base = os.environ.get("TINCT_STATE_DIR") or Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "tinct"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Worker(threading.Thread):
    """Runs jobs one at a time; replies go back to the socket thread through `outbox`."""

    def __init__(self, ctx: zmq.Context, wake: str, device):
        super().__init__(name="tinct-worker", daemon=True)
        self.ctx, self.wake_endpoint, self.device = ctx, wake, device
        self.cond = threading.Condition()
        self.queue: collections.deque = collections.deque()
        self.outbox: collections.deque = collections.deque()
        self.running = None
        self.cancel_running = False
        self.stopping = False
        self.done = 0

    # -- called from the socket thread -------------------------------------------------
    def submit(self, identity: bytes, job: P.Colorize) -> None:
        with self.cond:
            if job.key is not None:
                for old in [q for q in self.queue if q[1].key == job.key]:
                    self.queue.remove(old)
                    self.reply(old[0], P.error(old[1].id, "cancelled", "superseded by a newer request"))
            self.queue.append((identity, job))
            self.cond.notify()

    def cancel(self, request_id: str) -> bool:
        with self.cond:
            for item in list(self.queue):
                if item[1].id == request_id:
                    self.queue.remove(item)
                    self.reply(item[0], P.error(request_id, "cancelled", "cancelled before it started"))
                    return True
            if self.running is not None and self.running.id == request_id:
                self.cancel_running = True
                return True
        return False

    def status(self) -> dict:
        with self.cond:
            return {"queued": len(self.queue), "running": self.running.id if self.running else None,
                    "done": self.done}

    def stop(self) -> None:
        with self.cond:
            self.stopping, self.cancel_running = True, True
            self.cond.notify()

    # -- worker thread ----------------------------------------------------------------
    def reply(self, identity: bytes, message: dict) -> None:
        self.outbox.append((identity, message))
        if threading.current_thread() is self:
            self.wake.send(b"")

    def run(self) -> None:
        self.wake = self.ctx.socket(zmq.PUSH)
        self.wake.connect(self.wake_endpoint)
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    break
                identity, job = self.queue.popleft()
                self.running, self.cancel_running = job, False
            try:
                message = self.process(job)
            except Cancelled:
                message = P.error(job.id, "cancelled", "cancelled while running")
            except P.ProtocolError as exc:
                message = P.error(job.id, exc.code, exc.message)
            except Exception as exc:  # an engine bug must not take the daemon down
                log.exception("job %s failed", job.id)
                message = P.error(job.id, "internal", f"tinctd failed on this request: {exc}")
            with self.cond:
                self.running = None
                self.done += 1
            self.reply(identity, message)
        self.wake.close(0)

    def check_cancel(self, *_):
        if self.cancel_running:
            raise Cancelled()

    def process(self, job: P.Colorize) -> dict:
        import torch

        import tinct
        from tinct.api import ModelNotInstalled

        start = time.perf_counter()
        image = job.image.array()
        hints = job.hints.array() if job.hints is not None else None
        if hints is not None and hints.dtype != np.uint8:  # hints carry colour, 8 bits are plenty
            hints = (hints.astype(np.float32) * (255.0 / (65535.0 if hints.dtype == np.uint16 else 1.0)) + 0.5)
            hints = np.clip(hints, 0, 255).astype(np.uint8)
        options = {k: v for k, v in job.options.items() if k in ENGINE_OPTIONS.get(job.engine, ())}
        if job.engine == "optimization":
            options["callback"] = self.check_cancel
        decoded = time.perf_counter()
        note = None
        try:
            result = self.run_engine(tinct, job, image, hints, options, self.device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            note = "the GPU ran out of memory; this result was computed on the CPU"
            log.warning("job %s: CUDA out of memory, retrying on the CPU", job.id)
            result = self.run_engine(tinct, job, image, hints, options, "cpu")
        except ModelNotInstalled as exc:
            raise P.ProtocolError("unsupported", str(exc)) from None
        except ValueError as exc:
            raise P.ProtocolError("bad_request", str(exc)) from None
        engine_done = time.perf_counter()
        if job.type == "suggest":
            reply = {"colors": [list(map(int, c)) for c in result]}
        else:
            if job.selection is not None:
                result = P.blend(result, image, job.selection)
            layout, data = P.result_bytes(job.image, result)
            reply = {"width": job.image.width, "height": job.image.height, "layout": layout,
                     "sample": job.image.sample, "pixels": data}
        reply.update(v=P.VERSION, id=job.id, ok=True, type=job.type, engine=job.engine,
                     device=str(self.device),
                     timings={"decode": decoded - start, "engine": engine_done - decoded,
                              "total": time.perf_counter() - start})
        if note:
            reply["note"] = note
        return reply

    @staticmethod
    def run_engine(tinct, job, image, hints, options, device):
        if job.type == "suggest":
            suggest = getattr(tinct, "suggest_colors", None)
            if suggest is None:
                raise P.ProtocolError("unsupported", "colour suggestions need the learned engine, "
                                                     "which is not installed in this tinctd")
            return suggest(image, hints, job.x, job.y, job.k, device=device)
        return tinct.colorize(image, hints, engine=job.engine, device=device, **options)


class Daemon:
    """The socket side: receives, validates cheap things, queues, and sends replies."""

    def __init__(self, endpoint: str, max_pixels: int, device, curve=None):
        self.endpoint, self.max_pixels, self.device = endpoint, max_pixels, device
        self.max_bytes = P.max_message_bytes(max_pixels)
        self.started = time.time()
        self.engines = self.warm_engines()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.max_bytes)
        self.auth = None
        if curve:
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(curve["clients"]))
            public, secret = zmq.auth.load_certificate(str(curve["secret"]))
            self.sock.curve_secretkey, self.sock.curve_publickey, self.sock.curve_server = secret, public, True
        self.sock.bind(endpoint)
        self.wake = self.ctx.socket(zmq.PULL)
        wake = f"inproc://tinctd-wake-{id(self)}"
        self.wake.bind(wake)
        self.worker = Worker(self.ctx, wake, device)
        self.worker.start()
        self.stopping = False

    def warm_engines(self) -> dict:
        """Load every engine once; note which are missing and why."""
        from tinct import api

        engines = {}
        for name in api.ENGINES:
            try:
                api.get_engine(name)
                engines[name] = "ready"
            except api.ModelNotInstalled as exc:
                engines[name] = f"not installed: {exc}"
                log.warning("engine %s: %s", name, exc)
        grey = np.zeros((16, 16), np.uint8)
        api.colorize(grey, device=self.device)  # first call pays for kernels and threads
        return engines

    def hello(self) -> dict:
        import torch

        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return {"version": P.VERSION, "tinct": __version__, "engines": self.engines, "devices": devices,
                "device": str(self.device), "limits": {"max_pixels": self.max_pixels, "max_bytes": self.max_bytes},
                "layouts": list(P.LAYOUTS), "samples": list(P.SAMPLES)}

    def handle(self, identity: bytes, payload: list) -> dict | None:
        """A reply to send now, or None when the worker will answer later."""
        request_id = None
        try:
            message = P.unpack(payload, self.max_bytes)
            request_id = message.get("id") if isinstance(message.get("id"), str) else None
            kind = P.field(message, "type", str)
            version = P.field(message, "v", int)
            if version != P.VERSION:
                raise P.ProtocolError("unsupported", f"this tinctd speaks protocol {P.VERSION}, the plugin "
                                                     f"{version}; update the plugin or tinct")
            if kind not in P.REQUESTS:
                raise P.ProtocolError("bad_request", f"unknown request type {kind!r}")
            if kind == "hello":
                return {"v": P.VERSION, "id": request_id, "ok": True, "type": kind, **self.hello()}
            if kind == "status":
                return {"v": P.VERSION, "id": request_id, "ok": True, "type": kind, "uptime": time.time() - self.started,
                        **self.worker.status()}
            if kind == "cancel":
                target = P.field(message, "target", str)
                return {"v": P.VERSION, "id": request_id, "ok": True, "type": kind,
                        "found": self.worker.cancel(target)}
            job = P.parse_job(message, self.max_pixels, self.engines)
            self.worker.submit(identity, job)
            return None
        except P.ProtocolError as exc:
            return P.error(request_id, exc.code, exc.message)

    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        log.info("tinctd %s listening on %s (device %s)", __version__, self.endpoint, self.device)
        while not self.stopping:
            try:
                events = dict(poller.poll(200))
            except zmq.ZMQError:  # interrupted by a signal
                continue
            if self.sock in events:
                self.receive()
            if self.wake in events:
                while self.wake.poll(0):
                    self.wake.recv()
            while self.worker.outbox:
                identity, message = self.worker.outbox.popleft()
                self.send(identity, message)
        self.close()

    def receive(self) -> None:
        while self.sock.poll(0):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.ZMQError:
                return
            if len(frames) < 3 or len(frames[1]) or len(frames) > 3 + len(P.BLOBS):
                log.debug("ignoring a message of %d frames without the DEALER envelope", len(frames))
                continue
            identity = frames[0].bytes
            reply = self.handle(identity, [f.buffer for f in frames[2:]])
            if reply is not None:
                self.send(identity, reply)

    def send(self, identity: bytes, message: dict) -> None:
        try:  # a client that went away is silently dropped by ROUTER
            self.sock.send_multipart([identity, b""] + P.frames_of(message), zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            log.info("could not reply to a client: %s", exc)

    def close(self) -> None:
        self.worker.stop()
        self.worker.join(5)
        if self.auth:
            self.auth.stop()
        self.sock.close(0)
        self.wake.close(0)
        self.ctx.term()
        log.info("tinctd stopped")


def acquire_lock(directory: Path, endpoint: str):
    """One tinctd per user: an exclusive lock, naming who holds it."""
    path = directory / "tinctd.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        try:
            info = json.loads(handle.read() or "{}")
        except ValueError:
            info = {}
        raise SystemExit(f"tinctd is already running (pid {info.get('pid', '?')}) at "
                         f"{info.get('endpoint', '?')}; stop it first or use --state-dir for a second one")
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "endpoint": endpoint}))
    handle.flush()
    return handle


def check(device) -> int:
    """tinctd --check: device, engines and model, and a real colorization; 0 when usable."""
    import torch

    from tinct import api

    print(f"tinct {__version__}, torch {torch.__version__}")
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    ok = True
    for name in api.ENGINES:
        try:
            eng = api.get_engine(name)
            print(f"engine {name}: ready" + (f", model {eng.version}" if hasattr(eng, "version") else ""))
        except api.ModelNotInstalled as exc:
            print(f"engine {name}: not installed ({exc})")
    try:
        img = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
        hints = np.zeros((32, 32, 4), np.uint8)
        hints[4:8, 4:8] = (200, 50, 50, 255)
        out = api.colorize(img, hints, device=device)
        print(f"colorize: ok ({out.shape[1]}x{out.shape[0]})")
    except Exception as exc:
        print(f"colorize: FAILED ({exc})")
        ok = False
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tinctd", description="Tinct's colorization daemon for the GIMP and Krita plugins.")
    ap.add_argument("--endpoint", default=os.environ.get("TINCT_ENDPOINT", P.DEFAULT_ENDPOINT),
                    help=f"ZeroMQ endpoint, tcp:// or ipc:// (default {P.DEFAULT_ENDPOINT})")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    ap.add_argument("--max-megapixels", type=float, default=P.DEFAULT_MAX_PIXELS / 1e6)
    ap.add_argument("--state-dir", help="lock and log folder (default $XDG_STATE_HOME/tinct)")
    ap.add_argument("--allow-remote", action="store_true",
                    help="bind a non-loopback address (needs --curve-secret and --curve-clients)")
    ap.add_argument("--curve-secret", help="this server's zmq.auth secret certificate file")
    ap.add_argument("--curve-clients", help="folder of the allowed clients' public certificates")
    ap.add_argument("--check", action="store_true", help="print device, engines, models; exit 0 if usable")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.state_dir:
        os.environ["TINCT_STATE_DIR"] = args.state_dir
    from tinct.api import default_device

    device = default_device(args.device)
    if args.check:
        return check(device)
    if not P.is_loopback(args.endpoint):
        if not args.allow_remote:
            ap.error(f"{args.endpoint} is reachable from other machines; pass --allow-remote (with CURVE keys) "
                     "if that is what you want")
        if not (args.curve_secret and args.curve_clients):
            ap.error("a remote endpoint needs --curve-secret and --curve-clients (see docs/protocol.md)")
    directory = state_dir()
    lock = acquire_lock(directory, args.endpoint)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(directory / "tinctd.log")])
    curve = {"secret": args.curve_secret, "clients": args.curve_clients} if args.curve_secret else None
    daemon = Daemon(args.endpoint, int(args.max_megapixels * 1e6), device, curve)

    def stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        daemon.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.serve()
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
