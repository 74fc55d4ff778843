"""Shared-memory files: how a plugin on the same machine hands tinctd its pixels without a socket.

A 12 MP layer is 48 MB; pushing it through a TCP socket and back costs several times a
memory copy.  A local client instead writes the layer into a file of its own in a private
tmpfs folder that tinctd names in its `hello` reply, and sends only the file's name; tinctd
writes the result into the client's reply file the same way (docs/protocol.md).

Every name is checked before a byte is read: it must match NAME (no paths), the folder is
tinctd's own (mode 0700), the file a regular one owned by tinctd's user, opened without
following links, and long enough.  tinctd reads and writes with system calls, never mmap,
so a client that shrinks its file mid-request gets an error instead of crashing the daemon.
Files of clients that died are removed when tinctd starts.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .protocol import ProtocolError

NAME = re.compile(r"([0-9]{1,10})-[0-9a-f]{32}\.(in|out)")  # <client pid>-<random>.in / .out


def directory() -> Path | None:
    """tinctd's private folder for shared-memory files, created if needed; None where there is none."""
    if os.name != "posix" or not hasattr(os, "preadv"):
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        path = Path(runtime) / "tinct"
    elif Path("/dev/shm").is_dir():
        path = Path("/dev/shm") / f"tinct-{os.geteuid()}"
    else:
        return None
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        return None  # someone else's folder, or one others can enter: fall back to frames
    return path


def sweep(folder: Path) -> int:
    """Remove the files of clients that are no longer running; the number removed."""
    removed = 0
    for entry in folder.iterdir():
        match = NAME.fullmatch(entry.name)
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


def _open(folder: Path, name: str, flags: int, need: int = 0) -> int:
    """A descriptor for a client's file, refusing anything that is not plainly one."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise ProtocolError("bad_request", "a shared-memory file name must look like '<pid>-<32 hex digits>.in' "
                                           "or '.out', with no folder")
    try:
        fd = os.open(folder / name, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ProtocolError("bad_request", f"the plugin's shared-memory file {name} cannot be opened "
                                           f"({exc.strerror}); it may have closed") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_size < need:
        os.close(fd)
        raise ProtocolError("bad_request", f"the shared-memory file {name} is not a file of this user at least "
                                           f"{need} bytes long")
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
                raise ProtocolError("bad_request", f"the shared-memory file {name} shrank while tinctd read it")
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
