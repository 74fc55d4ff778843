"""tinctd's worker thread: runs jobs one at a time, so requests never fight over GPU memory.

The socket thread (tinct.serve.daemon) queues, withdraws and asks about tasks through the
methods marked below, all under one lock; finished answers come back through `finished` and a
wake-up message.  The worker owns the engines' states ("ready", "not installed: ..."): it is
the one that learns them, and the socket thread reads a copy (`engine_states`).
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from . import job as J
from . import protocol as P

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tinctd")
RETAIN_SCRATCH = 256 << 20  # shared-memory buffers are kept between jobs up to this size (each)


class Cancelled(Exception):
    """Raised from the engines' callback when the running job was cancelled or tinctd is stopping."""


@dataclass(eq=False)
class Task:
    """A job and everyone waiting for its answer (more than one when a client re-sent it)."""
    job: P.Colorize
    waiters: list
    size: int  # bytes of pixels the queued request holds (frames or shared memory)


class Progress:
    """A running solve's fraction done, estimated from the Krylov callback (iteration, residual).

    Each quality is one Krylov solve from zero (CG for `preview`, GCR for `final`), so the
    fraction is how far log(residual) has come towards log(TOL[quality]).  A job of `parts` solves
    (variations: one each) counts a new one when the iteration number does not grow, and each
    solve fills its share.  Never decreases (a retry on the CPU starts again from a large
    residual), stays below 1 until the reply.
    """

    def __init__(self, quality: str, parts: int = 1):
        from tinct.engines.optimization import levin

        self.tol = levin.TOL.get(quality, min(levin.TOL.values()))
        self.value = 0.0
        self.parts, self.part, self.iteration = parts, 0, 0

    def update(self, iteration: int, residual: float) -> float:
        if iteration <= self.iteration:
            self.part = min(self.part + 1, self.parts - 1)
        self.iteration = iteration
        within = math.log(residual) / math.log(self.tol) if 0 < residual < 1 else float(residual <= 0)
        done = (self.part + min(max(within, 0.0), 1.0)) / self.parts
        self.value = max(self.value, min(done, 0.99))
        return self.value


class Worker(threading.Thread):
    """Runs jobs one at a time; finished ones go back to the socket thread through `finished`."""

    def __init__(self, ctx: zmq.Context | None, wake: str, device: torch.device, engines: dict,
                 shm_dir: Path | None):
        super().__init__(name="tinct-worker", daemon=True)
        self.ctx, self.wake_endpoint, self.device = ctx, wake, device
        self.shm_dir = shm_dir
        self.cond = threading.Condition()
        self.engines = dict(engines)  # name -> state; written by this thread only, under `cond`
        self.queue: collections.deque[Task] = collections.deque()
        self.finished: collections.deque = collections.deque()
        self.running: Task | None = None
        self.progress: Progress | None = None
        self.cancel_running = False
        self.stopping = False
        self.done = 0
        self.buffers: dict[str, bytearray] = {}
        self.wake: zmq.Socket | None = None  # tells the socket thread that `finished` has something

    # -- called from the socket thread -------------------------------------------------
    def engine_states(self) -> dict:
        """A copy of the engines' states, for hello and for checking a request's engine name."""
        with self.cond:
            return dict(self.engines)

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
        assert self.ctx is not None  # a Worker made without a context is only driven by hand (tests)
        self.wake = wake = self.ctx.socket(zmq.PUSH)
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
            self.hand_back(task, reply)
            del task, reply  # while waiting for the next: a job holds its client's buffers (memfd mappings)
        self.wake = None
        wake.close(0)

    def hand_back(self, task: Task, reply: dict) -> None:
        """Give the socket thread a reply to send: the answer, or a `partial` one before it."""
        with self.cond:
            self.finished.append((task, reply))
        if self.wake is not None:
            self.wake.send(b"")

    def on_iteration(self, iteration: int, residual: float) -> None:
        """The engines' per-iteration callback: where a running job notices `cancel`."""
        if self.progress is not None:
            self.progress.update(iteration, residual)
        if self.cancel_running:
            raise Cancelled()

    def answer(self, job: P.Colorize) -> dict:
        """The reply to `job`, an error reply included: nothing an engine raises escapes."""
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

    def send_partial(self, job: P.Colorize, decoded: J.Decoded, start: float) -> None:
        """The `live` answer first, as a `partial` reply (docs/protocol.md); the asked-for quality follows."""
        live = J.Decoded(decoded.engine, decoded.original, decoded.image, decoded.hints,
                         {**decoded.options, "quality": J.PARTIAL_QUALITY})
        result, device, _ = J.run(job, live, self.device, self.on_iteration)
        reply = {"v": P.VERSION, "id": job.id, "ok": True, "type": "partial", "engine": job.engine,
                 "device": str(device), "quality": J.PARTIAL_QUALITY, **J.encode(job, live, result, None, None, True),
                 "timings": {"total": time.perf_counter() - start}}
        running = self.running
        if running is not None:  # None only when driven by hand (tests): the reply is then dropped
            self.hand_back(running, reply)
        log.info("partial %s: %dx%d in %.3f s", job.id, job.image.width, job.image.height, reply["timings"]["total"])

    def set_engine_state(self, name: str, state: str) -> None:
        with self.cond:
            self.engines[name] = state

    def process(self, job: P.Colorize) -> dict:
        """decode → run → encode (tinct.serve.job), admitted first and timed."""
        start = time.perf_counter()
        refusal = J.admit(job)  # now, with nothing else running, the memory figures are this job's to take
        if refusal is not None:
            raise P.ProtocolError(*refusal)
        try:
            decoded = J.decode(job, self.scratch, self.shm_dir)
        except J.EngineMissing as exc:
            self.set_engine_state(exc.engine, f"not installed: {exc.message}")
            raise
        self.set_engine_state(job.engine, "ready")
        if "callback" in decoded.engine.OPTIONS:
            self.progress = Progress(decoded.quality, job.variations or 1)
        decoded_at = time.perf_counter()
        if J.wants_partial(job, decoded):
            self.send_partial(job, decoded, start)
        result, device, note = J.run(job, decoded, self.device, self.on_iteration)
        engine_done = time.perf_counter()
        reply = {"v": P.VERSION, "id": job.id, "ok": True, "type": job.type, "engine": job.engine,
                 "device": str(device), **J.encode(job, decoded, result, self.scratch, self.shm_dir)}
        if note:
            reply["note"] = note
        done = time.perf_counter()
        reply["timings"] = {"decode": decoded_at - start, "engine": engine_done - decoded_at,
                            "encode": done - engine_done, "total": done - start}
        log.info("%s %s: %dx%d %s %s, %s on %s, %.3f s", job.type, job.id, job.image.width, job.image.height,
                 job.image.layout, job.image.sample, job.engine, device, done - start)
        return reply
