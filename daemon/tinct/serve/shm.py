"""Shared memory: how a plugin on the same machine hands tinctd its pixels without a socket.

A 12 MP layer is 48 MB; pushing it through a TCP socket and back costs several times a
memory copy.  A local client instead leaves the layer in memory tinctd can reach and sends
only where it is; tinctd puts the result back the same way (docs/protocol.md).  Two ways:

- **memfd buffers** (Linux): the client keeps one or two sealed memfds (`memfd_create`)
  mapped for its lifetime; tinctd opens them through /proc/<client pid>/fd/<n> and maps them
  too, caching the mappings while the client keeps them, so pixels are decoded straight from
  the client's pages and the result encoded straight into its buffer (over the layer, when
  it is as long): no copy and no fresh page beyond what the client itself does.  A mapping
  can only crash the daemon (SIGBUS) if the file shrinks under it; tinctd maps only memfds
  sealed against shrinking (seals can never be removed).  Only tinctd's own user can use
  them: the request must show the secret in the private folder's `key` file, and each
  buffer must be that user's.
- **files** in tinctd's private tmpfs folder, read and written with system calls (never
  mmap, so a file that shrinks is an error, not a crash) into buffers of tinctd's own:
  where there is no memfd, or tinctd cannot open the client's /proc folder.

Every file name is checked before a byte is read: it must match NAME (no paths), the folder
is tinctd's own (mode 0700), the file a regular one owned by tinctd's user, opened without
following links, and long enough.  Files of clients that died are removed when tinctd starts.
A problem with either way is a ProtocolError marked `transport`: the client then sends the
same request the next way.
"""
from __future__ import annotations

import hmac
import mmap
import os
import re
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl  # memfd seals (Linux); elsewhere there are no memfd buffers
except ImportError:  # Windows
    fcntl = None

from .endpoint import EndpointError, private_folder, runtime_dir
from .protocol import ProtocolError, Shared

NAME = re.compile(r"([0-9]{1,10})-[0-9a-f]{32}\.(in|out)")  # <client pid>-<random>.in / .out
KEY = re.compile(r"key\.([0-9]{1,10})")  # key.<tinctd pid>: its secret, shown by clients that use memfd buffers


def refused(message: str, code: str = "bad_request") -> ProtocolError:
    """A shared-memory problem: the client can send the same request another way (`transport`)."""
    return ProtocolError(code, message, transport=True)


def directory() -> Path | None:
    """tinctd's private folder for shared memory (the user's runtime folder, tinct.serve.endpoint), created
    if needed; None where there is none, or where it is someone else's or others may enter it."""
    path = runtime_dir()
    if path is None or not hasattr(os, "preadv"):
        return None
    try:
        return private_folder(path)
    except EndpointError:
        return None  # fall back to frames


def sweep(folder: Path) -> int:
    """Remove the files of clients, and the keys of tinctds, that are no longer running; the number removed."""
    removed = 0
    for entry in folder.iterdir():
        match = NAME.fullmatch(entry.name) or KEY.fullmatch(entry.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
            removed += 1
        except (PermissionError, OverflowError):
            pass
    return removed


# -- files -------------------------------------------------------------------------------
def _open(folder: Path, name: str, flags: int, need: int = 0) -> int:
    """A descriptor for a client's file, refusing anything that is not plainly one."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise ProtocolError("bad_request", "a shared-memory file name must look like '<pid>-<32 hex digits>.in' "
                                           "or '.out', with no folder")
    try:
        # non-blocking: a FIFO under that name must not hold the socket thread waiting for a writer
        fd = os.open(folder / name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refused(f"the plugin's shared-memory file {name} cannot be opened ({exc.strerror}); "
                      "it may have closed") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_size < need:
        os.close(fd)
        raise refused(f"the shared-memory file {name} is not a file of this user at least {need} bytes long")
    return fd


def check(folder: Path, name: str, need: int) -> None:
    """Refuse a request whose file is missing, foreign or shorter than its fields, before queueing it."""
    os.close(_open(folder, name, os.O_RDONLY, need))


def read(folder: Path, name: str, out: memoryview) -> None:
    """Fill `out` from the start of the client's file."""
    fd = _open(folder, name, os.O_RDONLY, len(out))
    try:
        done = 0
        while done < len(out):
            n = os.preadv(fd, [out[done:]], done)
            if n <= 0:
                raise refused(f"the shared-memory file {name} shrank while tinctd read it")
            done += n
    finally:
        os.close(fd)


def write(folder: Path, name: str, data: memoryview) -> None:
    """Replace the client's reply file's content with `data`."""
    fd = _open(folder, name, os.O_WRONLY)
    try:
        os.ftruncate(fd, len(data))
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
    finally:
        os.close(fd)


# -- memfd buffers -------------------------------------------------------------------------
def key_name() -> str:
    """This tinctd's key file in the folder (hello names it): one per process, so tinctds of
    other endpoints (tests, a second --state-dir) never overwrite each other's."""
    return f"key.{os.getpid()}"


def new_key(folder: Path) -> str:
    """A fresh secret (64 hex digits) in this tinctd's key file, made at every start: only tinctd's
    user can read the folder, so a request that shows it was sent by one of that user's processes
    since this tinctd started (a key read before, by anyone, opens nothing now)."""
    text = secrets.token_hex(32)
    fresh = folder / f"{key_name()}.{secrets.token_hex(8)}"
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(fresh, folder / key_name())
    return text


def memfd_possible() -> bool:
    """Whether this system lets tinctd open a client's memfd: Linux's /proc and file seals."""
    return sys.platform.startswith("linux") and hasattr(fcntl, "F_GET_SEALS") and os.path.isdir("/proc/self/fd")


@dataclass
class Mapped:
    dev: int
    ino: int
    writable: bool
    map: mmap.mmap


class Buffers:
    """Clients' memfd buffers mapped into tinctd, kept while the client keeps them open.

    Used from tinctd's socket thread only; a job holds the mappings it needs, so dropping one
    here never unmaps memory a running job reads or writes."""

    def __init__(self, secret: str):
        self.secret = secret
        self.maps: dict[tuple[int, int], Mapped] = {}

    def attach(self, shared: Shared, result: int) -> None:
        """Check and map a request's buffers into `shared.maps` before it is queued."""
        if not hmac.compare_digest(shared.key.encode(), self.secret.encode()):
            raise refused("the shared-memory key is not this tinctd's; the plugin must read it from the "
                          "shared-memory folder tinctd names")
        assert shared.source and shared.target  # a memfd request names both buffers (protocol._shared)
        if shared.source == shared.target:  # the result replaces the layer: one mapping, written if there is one
            both = self.get(shared.pid, *shared.source, max(shared.size, result), result > 0)
            shared.maps = (both, both)
        else:
            shared.maps = (self.get(shared.pid, *shared.source, shared.size, False),
                           self.get(shared.pid, *shared.target, result, True))

    def get(self, pid: int, fd: int, ino: int, need: int, writable: bool) -> mmap.mmap | None:
        """The client's buffer `fd` (inode `ino`) mapped, at least `need` bytes; None when nothing is needed."""
        path = f"/proc/{pid}/fd/{fd}"
        try:
            now = os.stat(path)  # follows the link to the memfd itself
        except OSError as exc:
            raise refused(f"tinctd cannot reach the plugin's shared-memory buffer {fd} of process {pid} "
                          f"({exc.strerror}); it may have closed") from None
        cached = self.maps.get((pid, fd))
        if (cached is not None and (cached.dev, cached.ino) == (now.st_dev, now.st_ino) and len(cached.map) >= need
                and cached.writable >= writable):
            return cached.map
        self.maps.pop((pid, fd), None)
        if now.st_ino != ino:
            raise refused(f"buffer {fd} of process {pid} is not the one the plugin named (another process, "
                          "or one it replaced)")
        if not stat.S_ISREG(now.st_mode):
            raise refused("the plugin's shared-memory buffer is not a memfd of tinctd's user")
        try:  # O_NONBLOCK: should it have become a pipe meanwhile, opening it must not wait for a writer
            handle = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise refused(f"tinctd cannot open the plugin's shared-memory buffer ({exc.strerror})") from None
        try:
            info = os.fstat(handle)  # what was opened, which may differ from what was looked at
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_ino != ino:
                raise refused("the plugin's shared-memory buffer is not a memfd of tinctd's user")
            assert fcntl is not None  # Buffers exist only where memfd_possible()
            try:
                seals = fcntl.fcntl(handle, fcntl.F_GET_SEALS)
            except OSError:
                seals = 0  # not a memfd at all
            if not seals & fcntl.F_SEAL_SHRINK:
                raise refused("the plugin's shared-memory buffer is not a memfd sealed against shrinking; "
                              "tinctd maps only buffers that cannot shrink under it")
            if info.st_size < need:
                raise refused(f"the plugin's shared-memory buffer is {info.st_size} bytes; this request needs {need}")
            if need == 0:
                return None
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            try:
                mapped = mmap.mmap(handle, info.st_size, mmap.MAP_SHARED, prot)
            except (OSError, ValueError, OverflowError) as exc:
                raise refused(f"tinctd cannot map the plugin's shared-memory buffer ({exc})") from None
        finally:
            os.close(handle)  # the mapping keeps the memfd alive
        self.maps[(pid, fd)] = Mapped(info.st_dev, info.st_ino, writable, mapped)
        return mapped

    def prune(self) -> None:
        """Forget the buffers their clients closed or died with, giving their memory back."""
        for (pid, fd), cached in list(self.maps.items()):
            try:
                now = os.stat(f"/proc/{pid}/fd/{fd}")
                if (now.st_dev, now.st_ino) == (cached.dev, cached.ino):
                    continue
            except OSError:
                pass
            del self.maps[(pid, fd)]
