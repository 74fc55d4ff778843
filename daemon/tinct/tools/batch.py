"""Many photos colorized as one batch, the same way on this machine and on a cluster.

A batch is planned into jobs (photo, its hints layer and reference photo, its output), each
finished job is recorded in a manifest beside the outputs (JSON lines, `tinct-batch.jsonl`), and a
rerun skips what the manifest says is done, so a batch of days can be stopped and resumed.  Outputs are written to a
temporary name and renamed, so a killed run never leaves half a file under the real name.  Where
the photos are colorized is the caller's choice (`local_results` here, `tinct.tools.cluster` on
Ray); progress, the manifest, the failures and the exit status are this module's, for both.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
HINTS_TAG, REFERENCE_TAG, RESULT_TAG = ".hints", ".ref", ".colorized"
MANIFEST = "tinct-batch.jsonl"
PART_TAG = ".tinct-part-"  # temporary outputs: .NAME.tinct-part-PID.EXT, renamed when complete
VARIATION_TAG = re.compile(r"\.v[1-9]$")  # --variations N: OUTPUT.v1.EXT ... OUTPUT.vN.EXT, OUTPUT's stem first


@dataclass(frozen=True)
class Job:
    """One photo to colorize: where it is, its hints layer and colour reference if any, where its result goes
    (with `variations`, the names `outputs` makes of it)."""

    photo: Path
    target: Path
    hints: Path | None = None
    reference: Path | None = None
    variations: int | None = None

    def outputs(self) -> list[Path]:
        """The files this job writes: `target`, or with N variations TARGET.v1.EXT ... TARGET.vN.EXT."""
        if self.variations is None:
            return [self.target]
        return [self.target.with_name(f"{self.target.stem}.v{k}{self.target.suffix}")
                for k in range(1, self.variations + 1)]

    def inputs(self) -> dict[str, Path]:
        """The files this job reads, by role."""
        roles = (("photo", self.photo), ("hints", self.hints), ("reference", self.reference))
        return {role: path for role, path in roles if path}


@dataclass(frozen=True)
class Outcome:
    """A finished job: `error` is None when its output is written; `node` says where it ran, if not here."""

    job: Job
    error: str | None = None
    node: str | None = None


Runner = Callable[[list[Job]], Iterable[Outcome]]


def photos_in(paths: list[Path]) -> list[Path]:
    """The photos named or found (not recursively) in the named folders, skipping hints, references, results
    (variations included)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES
                            and not p.stem.endswith((HINTS_TAG, REFERENCE_TAG, RESULT_TAG))
                            and not VARIATION_TAG.sub("", p.stem).endswith(RESULT_TAG) and PART_TAG not in p.name)
        elif path.exists():
            found.append(path)
        else:
            raise ValueError(f"{path} does not exist")
    return found


def hints_beside(photo: Path) -> Path | None:
    hints = photo.with_name(photo.stem + HINTS_TAG + ".png")
    return hints if hints.exists() else None


def reference_beside(photo: Path) -> Path | None:
    """NAME.ref.EXT beside the photo (any photo type): a colour photo whose colours it should take."""
    found = [photo.with_name(photo.stem + REFERENCE_TAG + suffix) for suffix in sorted(PHOTO_SUFFIXES)]
    return next((path for path in found if path.exists()), None)


def plan(photos: list[Path], out: Path | None, many: bool, hints: Path | None = None,
         reference: Path | None = None, variations: int | None = None) -> list[Job]:
    """The jobs for `photos`: outputs in the folder `out` (`many`), the file `out`, or beside each photo.

    `hints` is one photo's hints layer (default: NAME.hints.png beside it); `reference` one colour
    reference for every photo (default: NAME.ref.* beside each); `variations` N writes N files per
    photo (Job.outputs).

    Refuses, before anything is written, outputs that would overwrite a photo or each other.
    """
    if hints and many:
        raise ValueError("--hints names one hints layer, for one photo; for several, put NAME.hints.png "
                         "beside each photo")
    jobs = []
    for photo in photos:
        if out is None:
            target = photo.with_name(photo.stem + RESULT_TAG + photo.suffix)
        else:
            target = out / photo.name if many else out
        jobs.append(Job(photo, target, hints or hints_beside(photo), reference or reference_beside(photo), variations))
    seen: dict[Path, Path] = {}
    for job, output in ((j, output) for j in jobs for output in j.outputs()):
        where = output.resolve()
        if where == job.photo.resolve():
            raise ValueError(f"the output {output} would overwrite the photo itself; choose another -o")
        if where in seen:
            raise ValueError(f"{seen[where]} and {job.photo} would both be written to {output}; "
                             "colorize photos with the same name into different folders")
        seen[where] = job.photo
    return jobs


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """`write(path)` to a temporary name beside `target`, then rename it: `target` is whole or untouched."""
    part = target.with_name(f".{target.stem}{PART_TAG}{os.getpid()}{target.suffix}")
    try:
        write(part)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def remove_parts(folder: Path) -> None:
    """Temporary outputs that a killed run left in `folder`; call it holding the folder's `Manifest`,
    so that no other batch is writing there."""
    for part in folder.glob(f".*{PART_TAG}*"):
        part.unlink(missing_ok=True)


def colorized(job: Job, engine: str, device: str | None, options: dict) -> np.ndarray | list[np.ndarray]:
    """Read the job's files and colorize: the result, or with `job.variations` the list of them."""
    from tinct import api
    from tinct.color import imagefile

    image = imagefile.read(job.photo)
    hints = imagefile.read(job.hints) if job.hints else None
    if job.reference:
        options = {**options, "reference": imagefile.read(job.reference)}
    return api.colorize(image, hints, engine=engine, device=device, variations=job.variations, **options)


def write_outputs(job: Job, engine: str, device: str | None, options: dict) -> None:
    """Colorize `job` and write each of its outputs atomically (all its variations, or its one result)."""
    from tinct.color import imagefile

    result = colorized(job, engine, device, options)
    for output, layer in zip(job.outputs(), result if isinstance(result, list) else [result], strict=True):
        write_atomically(output, lambda part, layer=layer: imagefile.write(part, layer))


def reason(exc: BaseException) -> str:
    """A failure as one line: our own errors are sentences already; anything else names its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}".rstrip(": ")


def local_results(engine: str, device: str | None, options: dict, threads: int | None = None) -> Runner:
    """Colorize jobs one after another in this process, with `threads` PyTorch threads (default: all cores)."""
    def run(jobs: list[Job]) -> Iterator[Outcome]:
        if threads:
            import torch

            torch.set_num_threads(threads)
        for job in jobs:
            try:
                write_outputs(job, engine, device, options)
            except Exception as exc:  # one bad photo must not stop an archive: it is recorded and listed
                yield Outcome(job, reason(exc))
            else:
                yield Outcome(job)
    return run


class Manifest:
    """What a batch has finished, as JSON lines in its output folder; a photo's last line is its state.

    A job counts as done when its last record says so for the same settings and the same input files
    (size and modification time), and its output still exists; anything else is colorized again.
    Held locked until `close`, so a second batch into the same folder is refused, not interleaved.
    """

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = path, settings
        self.file = open(path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ValueError(f"another tinct batch is writing to {path.parent}; let it finish or choose "
                             "another -o") from None
        self.file.seek(0)
        text = self.file.read()
        if text and not text.endswith("\n"):
            self.file.write("\n")  # end a line cut short by a killed run, so the next record starts its own
        self.last: dict[str, dict] = {}
        for line in text.splitlines():
            try:
                record = json.loads(line)
                self.last[record["output"]] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a killed run: that photo is simply done again

    def close(self) -> None:
        self.file.close()

    def _key(self, job: Job) -> str:
        return job.target.name

    def _inputs(self, job: Job) -> dict[str, list[int]]:
        return {role: [p.stat().st_size, p.stat().st_mtime_ns] for role, p in job.inputs().items()}

    def done(self, job: Job) -> bool:
        record = self.last.get(self._key(job))
        try:
            return (record is not None and record.get("status") == "done" and record.get("settings") == self.settings
                    and record.get("inputs") == self._inputs(job) and all(p.exists() for p in job.outputs()))
        except OSError:
            return False

    def record(self, outcome: Outcome) -> None:
        job = outcome.job
        status = "failed" if outcome.error else "done"
        entry: dict = {"output": self._key(job), "photo": str(job.photo), "status": status}
        if outcome.error:
            entry["reason"] = outcome.error
        try:
            entry["inputs"] = self._inputs(job)
        except OSError as exc:
            entry["inputs"] = reason(exc)
        entry.update(settings=self.settings, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if outcome.node:
            entry["node"] = outcome.node
        self.file.write(json.dumps(entry) + "\n")  # one write per line: a kill cuts at most the last one short
        self.file.flush()
        os.fsync(self.file.fileno())


def run(jobs: list[Job], runner: Runner, manifest: Manifest | None = None, bar: bool = True) -> int:
    """Colorize `jobs` with `runner`, skipping those `manifest` has done: 0, or 1 when any photo failed.

    With `bar`, one progress bar (photos per second, ETA, failures so far) and the failures listed at
    the end; without it (a single photo), each output's path on stdout.
    """
    from tqdm import tqdm

    todo = [job for job in jobs if not (manifest and manifest.done(job))]
    if manifest and len(todo) < len(jobs):
        print(f"tinct: {len(jobs) - len(todo)} of {len(jobs)} photos already done ({manifest.path}); "
              f"colorizing the other {len(todo)}", file=sys.stderr)
    failed: list[Outcome] = []
    with tqdm(total=len(todo), unit="photo", disable=not bar, dynamic_ncols=True, postfix={"failed": 0}) as progress:
        for outcome in runner(todo):
            if manifest:
                manifest.record(outcome)
            if outcome.error:
                failed.append(outcome)
                progress.write(f"tinct: {outcome.job.photo}: {outcome.error}", file=sys.stderr)
            elif not bar:
                print(*outcome.job.outputs(), sep="\n")
            progress.set_postfix(failed=len(failed), refresh=False)
            progress.update(1)
    if failed and bar:
        where = f" (recorded in {manifest.path}; run again to retry them)" if manifest else ""
        print(f"tinct: {len(failed)} of {len(todo)} photos failed{where}:", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.job.photo}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0
