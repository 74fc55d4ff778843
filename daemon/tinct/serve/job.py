"""One colorize or suggest job in three steps, each testable alone: `decode` (the pixels attached,
the layer and strokes read, the engine found and its options), `run` (the engine, with a CUDA
out-of-memory retried on the CPU) and `encode` (the reply, its pixels in the transport the
request came by).  The worker thread (tinct.serve.worker) strings them together and times them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import admission, shm
from . import protocol as P

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tinctd")

Scratch = Callable[[str, int], memoryview]  # a reusable buffer: ("in" | "out", bytes) -> view
Result = np.ndarray | list[np.ndarray] | list[tuple[int, ...]]  # colorize's layer or variations, suggest's colours
PARTIAL_QUALITY = "live"  # what a `progressive` request gets first, as a `partial` reply


class EngineMissing(P.ProtocolError):
    """The job's engine cannot be loaded (e.g. the learned engine's weights are not installed)."""

    def __init__(self, engine: str, why: str):
        super().__init__("unsupported", why)
        self.engine = engine


@dataclass
class Decoded:
    """A job's inputs as the engines take them."""
    engine: Any                  # the engine object (tinct.engines registry)
    original: np.ndarray         # the layer as sent (its own sample type), for the alpha and the blend
    image: np.ndarray            # what the engine reads
    hints: np.ndarray | None     # RGBA strokes, or None
    options: dict = field(default_factory=dict)  # the request's options this engine knows

    @property
    def quality(self) -> str:
        """The quality this job runs at: the request's, else the engine's own default."""
        return self.options.get("quality") or getattr(self.engine, "DEFAULT_QUALITY", "final")


def wants_partial(job: P.Colorize, decoded: Decoded) -> bool:
    """Whether to answer `live` first: the request asked (progressive) and will take longer than that."""
    from tinct.engines import QUALITIES

    return (job.progressive and job.type == "colorize" and job.variations is None and PARTIAL_QUALITY in QUALITIES
            and decoded.quality != PARTIAL_QUALITY and "quality" in decoded.engine.OPTIONS)


def admit(job: P.Colorize) -> tuple[str, str] | None:
    """tinct.serve.admission's verdict on a job: refused before the OOM killer would have to step in.

    Variations hold their N results and the reply's N layers beside one engine run: twice the reply's
    bytes on top of the table's job (which counts one result), refused as too_large where the machine
    could never hold that, and as busy (through `reserved`) where it cannot now."""
    image = job.image
    pixels, quality, side = image.width * image.height, job.options.get("quality"), min(image.width, image.height)
    extra = 2 * P.result_bytes(job) if job.variations else 0
    total = admission.total_bytes()
    if extra and total is not None:
        need = admission.job_bytes(job.engine, quality, pixels, side) + extra
        if need > total - admission.TINCTD_BYTES:
            return ("too_large", f"{job.variations} variations of this {pixels / 1e6:.3g}-megapixel layer need about "
                                 f"{need / 1e9:.1f} GB of memory; this computer has {total / 1e9:.1f} GB. Ask for "
                                 "fewer variations, or colorize a smaller layer or a selection.")
    return admission.admit(job.engine, quality, pixels, reserved=extra, shortest_side=side)


def decode(job: P.Colorize, scratch: Scratch, shm_dir: Path | None) -> Decoded:
    """Attach the job's shared memory (the client's memfd pages, or a copy of its file into
    `scratch("in")`), read its layers and find its engine."""
    from tinct import engines

    shared = job.shared
    if shared is not None and shared.memfd:  # the client's own pages: nothing to copy
        job.attach(memoryview(shared.maps[0])[:shared.size] if shared.size else memoryview(b""))
    elif shared is not None:
        assert shm_dir is not None  # the daemon queues a file request only with a folder
        view = scratch("in", shared.size)
        shm.read(shm_dir, shared.file, view)
        job.attach(view)
    original = job.image.raw()
    try:
        engine = engines.get_engine(job.engine)
    except engines.ModelNotInstalled as exc:
        raise EngineMissing(job.engine, str(exc)) from None
    options = {k: v for k, v in job.options.items() if k in engine.OPTIONS}
    hints = job.hints.rgba() if job.hints is not None else None
    return Decoded(engine, original, job.image.engine_input(original), hints, options)


def call_engine(job: P.Colorize, decoded: Decoded, device: torch.device, callback: Callable | None) -> Result:
    """The engine itself on `device` (tinct.colorize or tinct.suggest_colors)."""
    import tinct

    if job.type == "suggest":
        return tinct.suggest_colors(decoded.image, decoded.hints, job.x, job.y, job.k, device=device)
    options = dict(decoded.options)
    if callback is not None and "callback" in decoded.engine.OPTIONS:
        options["callback"] = callback
    return tinct.colorize(decoded.image, decoded.hints, engine=job.engine, device=device, variations=job.variations,
                          seed=job.seed, **options, **job.guidance())


def run(job: P.Colorize, decoded: Decoded, device: torch.device,
        callback: Callable | None = None) -> tuple[Result, torch.device, str | None]:
    """(result, the device it ran on, a note for the user or None).  A CUDA out-of-memory is retried
    on the CPU (and said in the note); a ValueError is tinct's own sentence about the input."""
    import torch

    try:
        try:
            return call_engine(job, decoded, device, callback), device, None
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("job %s: CUDA out of memory, retrying on the CPU", job.id)
            cpu = torch.device("cpu")
            return (call_engine(job, decoded, cpu, callback), cpu,
                    "the GPU ran out of memory; this result was computed on the CPU")
    except ValueError as exc:
        raise P.ProtocolError("bad_request", str(exc)) from None


def encode(job: P.Colorize, decoded: Decoded, result: Result, scratch: Scratch | None, shm_dir: Path | None,
           partial: bool = False) -> dict:
    """The reply's fields for `result`: colours for suggest; for colorize the layer, written straight
    into the client's memfd reply buffer, or into its reply file, or (else, and always for a
    `partial` reply, which must not overwrite the buffer the final answer is read from) as a frame."""
    if job.type == "suggest":
        return {"colors": [[int(v) for v in c] for c in result]}
    shared = None if partial else job.shared
    out = None
    if shared is not None and shared.memfd:  # straight into the client's reply buffer
        out = memoryview(shared.maps[1])[:P.result_bytes(job)]
    elif shared is not None:  # written to the client's file before the next job: reusable
        assert scratch is not None  # the worker passes its buffers for shared-memory requests
        out = scratch("out", P.result_bytes(job))
    if isinstance(result, list):  # variations: each layer into its place in one buffer, back to back
        assert job.variations == len(result)  # tinct.colorize answers as many as asked
        data = out if out is not None else memoryview(bytearray(P.result_bytes(job)))
        size, layout = P.layer_bytes(job.image), P.output_layout(job.image.layout)
        for k, layer in enumerate(result):
            assert isinstance(layer, np.ndarray)  # colorize's layers, not suggest's colours
            P.encode_result(job, layer, decoded.original, data[k * size:(k + 1) * size])
    else:
        layout, data = P.encode_result(job, result, decoded.original, out)
    reply = {"width": job.image.width, "height": job.image.height, "layout": layout, "sample": job.image.sample}
    if job.variations is not None:
        reply["variations"] = job.variations
    if shared is not None and shared.memfd:
        reply["shm"] = shared.reply_spec(len(data))
    elif shared is not None:
        assert shm_dir is not None  # as for reading the request
        try:
            shm.write(shm_dir, shared.reply, data)
            reply["shm"] = shared.reply_spec(len(data))
        except OSError as exc:  # e.g. a full tmpfs: the socket still works (a copy: `out` is reused)
            log.warning("job %s: result sent as a frame, the shared-memory file failed: %s", job.id, exc)
            reply["pixels"] = bytes(data)
    else:
        reply["pixels"] = data
    return reply
