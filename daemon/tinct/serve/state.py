"""tinctd's private files: the state folder, the one-tinctd-per-user lock, the ipc socket's lock, the log.

Everything here is made 0600/0700, never opened through a link, and refused when it belongs to
another user or others may read it: another local user must not read the log, take the lock, or
plant a file where tinctd will write.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import stat
import sys
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

from . import endpoint


def state_dir() -> Path:
    """Where the lock and the log live: $TINCT_STATE_DIR, else $XDG_STATE_HOME/tinct (an empty or
    relative XDG_STATE_HOME is ignored, as the XDG spec says), made 0700 and checked like the
    shared-memory folder: another user's folder, or one others may write in, is refused."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local/state"
    path = Path(os.environ.get("TINCT_STATE_DIR") or base / "tinct").absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return endpoint.private_folder(path)


def claim_socket(address: str) -> TextIO:
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


def _lock_exclusively(handle) -> None:
    """A non-blocking exclusive lock on an open file, held until the process ends; OSError if taken.
    (Windows, untested here: msvcrt locks the first byte, which others then cannot read either.)"""
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        handle.seek(0)
        msvcrt.locking(  # pyright: ignore[reportAttributeAccessIssue]  # msvcrt's stubs: Windows only
            handle.fileno(), msvcrt.LK_NBLCK, 1)  # pyright: ignore[reportAttributeAccessIssue]  # likewise


def open_private(path: Path) -> TextIO:
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


def acquire_lock(directory: Path, address: str) -> TextIO:
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
