"""tinct_shm: the shared memory tinct_client hands pixels to tinctd through (docs/protocol.md).

Kept apart from the client's sockets and retries: two ways of placing a request's binary fields
where tinctd can map them, and reading the result back, each with the same small interface
(`kind`, `place`, `read`, `trim`, `close`).  On Linux, sealed memfd buffers this process keeps
mapped (`Memfd`); elsewhere, two files in tinctd's private shared-memory folder (`SharedFiles`).
Standard library only; vendored beside tinct_client into both plugins.
"""
from __future__ import annotations

import mmap
import os
import sys
import uuid

try:
    import fcntl  # memfd seals (Linux); other systems have no memfd buffers
except ImportError:
    fcntl = None

KEEP_SHARED = 256 << 20  # shared-memory buffers up to this size together keep their pages between requests


class Memfd:
    """This client's request buffer, and a reply buffer for results longer than their layer (grey
    comes back as RGB): memfds sealed against shrinking (so tinctd may map them), kept mapped
    while they fit and grown in place when a layer needs more (docs/protocol.md).  A result as
    long as its layer replaces the layer in the request buffer: one buffer to keep, and tinctd
    need not copy the alpha channel, which is already there.

    Only processes of tinctd's user can read the folder's key, which every request shows."""

    kind = "memfd"
    NAMES = ("tinct-request", "tinct-reply")

    @staticmethod
    def possible() -> bool:
        return sys.platform.startswith("linux") and hasattr(os, "memfd_create") and hasattr(fcntl, "F_ADD_SEALS")

    def __init__(self, folder: str, info: dict):
        self.folder, self.key_file = folder, info.get("shm_key", "")
        if not self.key_file.startswith("key.") or os.sep in self.key_file:
            raise OSError("tinctd names no key file for memfd buffers")
        self.key = self._read_key()
        self.fds, self.inodes = [-1, -1], [0, 0]
        self.maps: list[mmap.mmap | None] = [None, None]  # the two buffers as mapped here, None until needed
        self.out = 0  # the buffer the last request's result goes to

    def _read_key(self) -> str:
        fd = os.open(os.path.join(self.folder, self.key_file), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return os.read(fd, 128).decode("ascii", "replace").strip()
        finally:
            os.close(fd)

    def reread_key(self, info: dict) -> bool:
        """Whether tinctd's key changed (it makes a new one at every start, and names it in hello) and
        was taken up."""
        try:
            self.key_file = info.get("shm_key", "")
            key = self._read_key()
        except (OSError, TypeError):
            return False
        changed, self.key = key != self.key, key
        return changed

    def _fit(self, which: int, size: int) -> None:
        """Buffer `which` (0 request, 1 reply) at least `size` bytes and mapped; made when there is
        none, and sealed before tinctd ever sees it."""
        if self.fds[which] < 0:
            fd = os.memfd_create(self.NAMES[which], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            assert fcntl is not None  # Memfd is used only where possible()
            try:
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
                self.inodes[which] = os.fstat(fd).st_ino
            except OSError:
                os.close(fd)
                raise
            self.fds[which] = fd
        mapped = self.maps[which]
        if size == 0 or (mapped is not None and len(mapped) >= size):
            return
        os.ftruncate(self.fds[which], size)  # only ever grows: tinctd may hold a mapping of it
        if mapped is not None:
            mapped.close()
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if which == 0 else 0)
        self.maps[which] = mmap.mmap(self.fds[which], size, mmap.MAP_SHARED, prot)

    def place(self, blobs: list, result: int) -> tuple[dict, list[int]]:
        """Copy the binary fields (the layer first) back to back into the request buffer; where they
        are and where the result of `result` bytes goes, and their lengths."""
        views = [memoryview(blob).cast("B") for blob in blobs]
        lengths = [len(view) for view in views]
        self.out = 0 if result in (0, lengths[0]) else 1
        self._fit(0, sum(lengths))
        if self.out:
            self._fit(1, result)
        offset = 0
        for view in views:
            assert self.maps[0] is not None  # _fit mapped it for these bytes
            self.maps[0][offset:offset + len(view)] = view
            offset += len(view)
        return ({"pid": os.getpid(), "in": [self.fds[0], self.inodes[0]],
                 "out": [self.fds[self.out], self.inodes[self.out]], "key": self.key}, lengths)

    def read(self, spec: dict, length: int) -> bytes:
        """The first `length` bytes of the buffer the result went to, as a new bytes object."""
        mapped = self.maps[self.out]
        if spec.get("out") != [self.fds[self.out], self.inodes[self.out]] or length > len(mapped or b""):
            raise OSError("the reply names another buffer, or more than it holds")
        if length:
            assert mapped is not None  # a length longer than no buffer was refused above
            return mapped[:length]
        return b""

    def trim(self) -> None:
        """Give big buffers' memory back after a request (new ones are made for the next); small ones
        keep their pages."""
        if sum(len(m) for m in self.maps if m is not None) > KEEP_SHARED:
            self.close()

    def close(self) -> None:
        for mapped in self.maps:
            if mapped is not None:
                mapped.close()
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = [-1, -1]
        self.maps = [None, None]


class SharedFiles:
    """This client's request and reply files in tinctd's shared-memory folder (docs/protocol.md)."""

    kind = "files"

    def __init__(self, folder: str, info: dict):
        base = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.names = (base + ".in", base + ".out")
        self.paths = [os.path.join(folder, name) for name in self.names]
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        self.fds = []
        try:
            for path in self.paths:
                self.fds.append(os.open(path, flags, 0o600))
        except OSError:
            self.close()
            raise

    def place(self, blobs: list, result: int = 0) -> tuple[dict, list[int]]:
        """Write the binary fields back to back from the start of the request file; where, and their lengths."""
        lengths, offset = [], 0
        for blob in blobs:
            view = memoryview(blob).cast("B")
            done = 0
            while done < len(view):
                done += os.pwrite(self.fds[0], view[done:], offset + done)
            lengths.append(len(view))
            offset += len(view)
        return {"file": self.names[0], "reply": self.names[1]}, lengths

    def read(self, spec: dict, length: int) -> bytes:
        """The first `length` bytes of the reply file."""
        if spec.get("file") != self.names[1]:
            raise OSError("the reply names another file")
        data = os.pread(self.fds[1], length, 0)
        parts = [data]
        while sum(map(len, parts)) < length:
            more = os.pread(self.fds[1], length - sum(map(len, parts)), sum(map(len, parts)))
            if not more:
                raise OSError("the reply file is shorter than the reply says")
            parts.append(more)
        return data if len(parts) == 1 else b"".join(parts)

    def trim(self) -> None:
        """Give big files' memory back after a request; small ones keep their pages for the next."""
        if sum(os.fstat(fd).st_size for fd in self.fds) > KEEP_SHARED:
            for fd in self.fds:
                os.ftruncate(fd, 0)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        for path in self.paths:
            try:
                os.unlink(path)
            except OSError:
                pass
