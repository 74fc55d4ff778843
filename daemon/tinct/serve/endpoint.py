"""Where tinctd listens, and why only its own user can reach it there (docs/protocol.md, Threat model).

On Linux and macOS the default is an `ipc://` socket in the user's private runtime folder
(mode 0700, owned by the user): the kernel lets no other user connect to it or put a socket
of their own in its place, so nothing can impersonate tinctd or read a layer on the way.
Loopback TCP stays for Windows and sandboxed editors; there every local user can connect, so
tinctd is authenticated with CURVE (tinct.serve.keys) and the plugins send nothing to a peer that
cannot prove it holds tinctd's key.  Stdlib only: the plugins' client carries a copy of
these rules (tests/test_protocol.py keeps them equal).
"""
from __future__ import annotations

import ipaddress
import os
import re
import stat
import tempfile
from pathlib import Path

DEFAULT_PORT = 5571
TCP_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"  # the default where there are no ipc sockets (Windows)
SOCKET_NAME = "tinctd.sock"
IPC_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating zero (Linux; macOS 104)
TCP = re.compile(r"tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[0-9.]+|localhost|\*):(?P<port>[0-9]{1,5})")


class EndpointError(ValueError):
    """An endpoint or folder tinctd must not use; the text says why and what to do."""


def runtime_dir() -> Path | None:
    """The user's private folder for the socket and shared memory: $XDG_RUNTIME_DIR/tinct, else
    /dev/shm/tinct-<uid> (Linux) or <temp>/tinct-<uid>; None where there are no Unix sockets."""
    if os.name != "posix":
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "tinct"
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return Path(base) / f"tinct-{os.geteuid()}"


def private_folder(path: Path, create: bool = True) -> Path:
    """`path` as a folder only this user can enter (made 0700 if `create`), or EndpointError: a folder
    of another user, one others may enter, or a link is never used (someone could be waiting there)."""
    if create:
        try:
            path.mkdir(mode=0o700, parents=False, exist_ok=True)
        except OSError as exc:
            raise EndpointError(f"the folder {path} cannot be made ({exc.strerror})") from None
    try:
        info = path.lstat()
    except OSError as exc:
        raise EndpointError(f"the folder {path} cannot be used ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise EndpointError(f"{path} is not a folder (a link or a file is there); remove it")
    if info.st_uid != os.geteuid():
        raise EndpointError(f"the folder {path} belongs to another user (uid {info.st_uid}); "
                            "someone may be trying to intercept Tinct: remove it, or set XDG_RUNTIME_DIR")
    if info.st_mode & 0o077:
        raise EndpointError(f"the folder {path} can be entered by other users (mode {info.st_mode & 0o777:o}); "
                            "run chmod 700 on it")
    return path


def default_endpoint() -> str:
    """ipc://<runtime folder>/tinctd.sock where there are Unix sockets, else loopback TCP."""
    folder = runtime_dir()
    return f"ipc://{folder / SOCKET_NAME}" if folder is not None else TCP_ENDPOINT


def check(endpoint: str) -> str:
    """One endpoint tinctd can bind: `ipc://` with an absolute path, or `tcp://HOST:PORT` with an
    address (not a name, which could resolve anywhere) — never libzmq's lists or source;dest forms,
    which would slip a second address past the loopback rule."""
    if not isinstance(endpoint, str) or not endpoint.isprintable():
        raise EndpointError("the endpoint must be printable text like ipc:///run/user/1000/tinct/tinctd.sock "
                            "or tcp://127.0.0.1:5571")
    scheme, sep, rest = endpoint.partition("://")
    if scheme == "ipc" and sep:
        if not rest.startswith("/") or any(c in rest for c in ";,"):
            raise EndpointError(f"{endpoint}: an ipc endpoint needs an absolute path without ';' or ','")
        if len(rest.encode()) > IPC_PATH_MAX:
            raise EndpointError(f"{endpoint}: the socket path is longer than {IPC_PATH_MAX} bytes, "
                                "which Unix sockets cannot take; choose a shorter one")
        return endpoint
    match = TCP.fullmatch(endpoint)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise EndpointError(f"{endpoint!r} is not an endpoint tinctd can use: give one ipc://PATH or "
                            "tcp://ADDRESS:PORT (an IP address or localhost, a port 1-65535)")
    host = match["host"].strip("[]")
    if host not in ("localhost", "*"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise EndpointError(f"{endpoint}: {host} is not an IP address") from None
    return endpoint


def is_loopback(endpoint: str) -> bool:
    """Whether an endpoint is reachable from this machine only (ipc:// and inproc:// always are)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    match = TCP.fullmatch(endpoint)
    if match is None:
        return False
    host = match["host"].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ipc_folder(endpoint: str) -> Path | None:
    """The folder an ipc endpoint's socket lies in, None for other endpoints."""
    return Path(endpoint[len("ipc://"):]).parent if endpoint.startswith("ipc://") else None
