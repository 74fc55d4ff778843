"""A batch on a Ray cluster: each photo one Ray task, its result written here as in local mode.

The photo's files travel to the task through Ray's object store and the encoded result travels
back, so the cluster's nodes need Tinct but no access to this machine's disk (a `ray://` client on
a laptop works as well as a driver on the head node), and every output is written on this machine
by `tinct.tools.batch`: temporary name, rename, manifest.  A task whose worker or node dies is
rerun elsewhere by Ray (`max_retries`); the engines stay warm in Ray's reused worker processes.
At most two tasks per slot are in flight, so the archive is read only as fast as it is colorized.

Ray is an optional extra (`pip install 'tinct[cluster]'`), imported only here, only when asked.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from .batch import Job, Outcome, Runner, reason, write_atomically, write_outputs

INSTALL = ("--cluster needs Ray, which is not installed here: pip install 'tinct[cluster]' "
           "(the same Ray version as the cluster's nodes, which need Tinct installed too)")
RETRIES = 3  # reruns of a photo whose worker or node died, before it is recorded as failed


def connect(address: str) -> ModuleType:
    """Ray, connected to the cluster at `address` ("auto", "HOST:PORT" or "ray://HOST:PORT")."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError(INSTALL) from exc
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return ray


def colorize_remote(files: dict[str, tuple[str, bytes]], target: str, variations: int | None, engine: str,
                    device: str | None, options: dict, threads: int) -> tuple[list[bytes] | None, str | None, str]:
    """The Ray task: rebuild the job's files in a private folder, colorize them, return the bytes of each
    output (the result, or its `variations`).

    `files` maps each role ("photo", "hints", "reference") to (its path on the driver, its bytes); errors come back
    as sentences naming the driver's paths, not the folder here.
    """
    import ray
    import torch

    torch.set_num_threads(threads)  # the CPUs it holds (the bytes do not depend on it)
    node = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory(prefix="tinct-") as folder:
        here = {role: Path(folder, role + Path(name).suffix) for role, (name, _) in files.items()}
        for role, (_, data) in files.items():
            here[role].write_bytes(data)
        job = Job(here["photo"], Path(folder, "result" + Path(target).suffix), here.get("hints"), here.get("reference"),
                  variations)
        try:
            write_outputs(job, engine, device, options)
            return [output.read_bytes() for output in job.outputs()], None, node
        except Exception as exc:  # the photo's own failure: recorded, not retried
            text = reason(exc)
            for role, (name, _) in files.items():
                text = text.replace(str(here[role]), name)
            return None, text, node


def results(address: str, engine: str, device: str | None, options: dict, threads: int | None = None) -> Runner:
    """A runner for `tinct.tools.batch.run` that colorizes on the Ray cluster at `address`, each photo
    a task holding `threads` CPUs (default 1: one photo per CPU) and running as many PyTorch threads."""
    ray = connect(address)  # before the batch starts: a wrong address is one sentence, not a failed bar

    def run(jobs: list[Job]) -> Iterator[Outcome]:
        try:
            yield from _dispatch(ray, jobs, engine, device, options, threads or 1)
        finally:
            ray.shutdown()
    return run


def _dispatch(ray: ModuleType, jobs: list[Job], engine: str, device: str | None, options: dict,
              threads: int) -> Iterator[Outcome]:
    gpus = device == "cuda" or (device is None and ray.cluster_resources().get("GPU", 0) >= 1)

    def window() -> int:  # two photos per slot the cluster has now (an autoscaler may add nodes)
        resources = ray.cluster_resources()
        return 2 * max(1, int(resources.get("GPU", 0)) if gpus else int(resources.get("CPU", 0)) // threads)

    task = ray.remote(colorize_remote).options(num_cpus=threads, num_gpus=1 if gpus else 0,
                                               max_retries=RETRIES, retry_exceptions=False)
    pending: dict = {}  # Ray's reference to each task's result -> its job
    waiting = iter(jobs)
    while True:
        slots = window()
        while len(pending) < slots and (job := next(waiting, None)) is not None:
            try:
                files = {role: (str(path), path.read_bytes()) for role, path in job.inputs().items()}
            except OSError as exc:
                yield Outcome(job, reason(exc))
                continue
            pending[task.remote(files, job.target.name, job.variations, engine, device, options, threads)] = job
        if not pending:
            return
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ref)
        try:
            data, error, node = ray.get(ref)
        except ray.exceptions.RayError as exc:  # retries used up: the photo is recorded as failed
            yield Outcome(job, f"the cluster lost it: {reason(exc)}")
            continue
        if data is not None:
            try:
                for output, content in zip(job.outputs(), data, strict=True):
                    write_atomically(output, lambda part, content=content: part.write_bytes(content))
            except OSError as exc:
                error = reason(exc)
        yield Outcome(job, error, node)
