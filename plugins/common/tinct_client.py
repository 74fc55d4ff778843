"""tinct_client: how the GIMP and Krita plugins talk to tinctd (docs/protocol.md).

Pure Python with pyzmq and msgpack only (no numpy, no torch), so both plugins vendor it,
with tinct_shm beside it.  Every failure, from a daemon that is not running to a refused request, becomes
one `TinctError` whose text a photographer can act on.

Lazy Pirate: every request goes out on a REQ socket; when the daemon falls silent the
socket is thrown away, tinctd is started if a start command is configured, and the same
request, with the same id, is sent again.  That is safe because tinctd treats a request
id it already knows as a resend of that request, not new work.  While a colorize runs the
client asks tinctd every half second how it is going, so a daemon that dies is noticed
at once while a long job on a live one may take as long as it needs.

On the same machine the pixels do not go through the socket: on Linux they go through two
sealed memfd buffers the client keeps mapped and tinctd maps too (no copy but the one into
the request buffer and the one out of the reply buffer), elsewhere through two files in
tinctd's private shared-memory folder (both in tinct_shm).  A request tinctd cannot take that way is sent again
the next way, the socket being the last.

Where tinctd listens and how to start it come from the arguments, else $TINCT_ENDPOINT and
$TINCTD_COMMAND, else the settings file the installer writes (`config_path()`): an editor
started from a desktop menu has none of our environment variables.  By default that is a
socket in the user's private runtime folder, which no other user can reach or replace; on
loopback TCP (Windows, sandboxed editors) the client speaks CURVE with tinctd's public key
from the user's key folder and sends nothing to a peer that cannot prove it is tinctd
(docs/protocol.md, Threat model).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, overload

import msgpack
import zmq
import zmq.auth

if TYPE_CHECKING:  # editors' Pythons may be older than 3.10: the alias exists only for the checker
    Buffer = bytes | bytearray | memoryview

if __package__:  # vendored into a plugin's package (Krita's tinct_krita)
    from .tinct_shm import Memfd, SharedFiles
else:  # beside the plug-in's script (GIMP), or plugins/common on sys.path
    from tinct_shm import Memfd, SharedFiles

_Memfd, _SharedFiles = Memfd, SharedFiles  # the names the tests knew the transports by

# Copies of tinct.serve.protocol's constants (this file must not import tinct); a test keeps them equal.
PROTOCOL_VERSION = 2
DEFAULT_PORT = 5571
TCP_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"  # the default where there are no ipc sockets (Windows)
SOCKET_NAME = "tinctd.sock"
OWNER_BYTES = 16  # the leading bytes of this client's routing ids that tinctd files its requests under
LAYOUTS = {"GRAY": 1, "GRAYA": 2, "RGB": 3, "RGBA": 4, "BGRA": 4}
RESULT_LAYOUTS = {"GRAY": "RGB", "GRAYA": "RGBA"}  # what comes back for these (colour needs three channels)
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
BLOBS = ("pixels", "hints", "selection", "reference")  # binary fields: frames of their own, or in shared memory
START_WAIT = 60.0    # seconds a freshly started tinctd gets to load its engines
PROBE_EVERY = 0.5    # seconds between "how is my request going" questions while one runs
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
HANDSHAKE_FAILED = (getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0)
                    | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
                    | getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0))


class TinctError(Exception):
    """Anything that went wrong: `code` for programs, `str(err)` (== `message`) for people.

    code is one of bad_request, too_large, unsupported, busy, cancelled, internal (from tinctd)
    or unavailable, timeout (from this client)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def runtime_dir() -> str | None:
    """The user's private folder tinctd's socket lies in (as tinct.serve.endpoint.runtime_dir finds it)."""
    if os.name != "posix":
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, "tinct")
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(base, f"tinct-{os.geteuid()}")


def default_endpoint() -> str:
    """ipc://<runtime folder>/tinctd.sock where there are Unix sockets, else loopback TCP."""
    folder = runtime_dir()
    return f"ipc://{os.path.join(folder, SOCKET_NAME)}" if folder else TCP_ENDPOINT


def key_dir() -> str:
    """The user's key folder (tinct.serve.keys): $TINCT_KEY_DIR, else `keys` beside the settings file."""
    return os.environ.get("TINCT_KEY_DIR") or os.path.join(os.path.dirname(config_path()), "keys")


def _private_folder_problem(path: str):
    """Why the folder `path` cannot be trusted with a layer (someone else's, or open to others), or None."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"its folder {path} cannot be used ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if os.name == "posix" and info.st_uid != os.geteuid():
        return f"its folder {path} belongs to another user"
    if os.name == "posix" and info.st_mode & 0o077:
        return f"its folder {path} can be entered by other users"
    return None


def config_path() -> str:
    """The per-user settings file the installers write: tinct/client.json in the platform's
    settings folder (%APPDATA%, ~/Library/Application Support, $XDG_CONFIG_HOME or ~/.config)."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "tinct", "client.json")


def load_config(path: str | None = None) -> dict:
    """{"endpoint": str, "start_command": list[str]} as far as the settings file gives them; {} without one.

    A file that is there but unusable is a TinctError naming it, never silently ignored."""
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TinctError("unavailable", f"Tinct's settings file {path} cannot be read ({exc}); correct it, "
                                        "or delete it and run Tinct's installer again.") from None
    wrong = TinctError("unavailable", f"Tinct's settings file {path} needs \"endpoint\" as text and "
                                      "\"start_command\" as a list of words; correct it, or delete it and run "
                                      "Tinct's installer again.")
    if not isinstance(data, dict):
        raise wrong
    config = {}
    endpoint, command = data.get("endpoint"), data.get("start_command")
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint:
            raise wrong
        config["endpoint"] = endpoint
    if command is not None:
        command = shlex.split(command) if isinstance(command, str) else command
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise wrong
        config["start_command"] = command
    return config


class Client:
    def __init__(self, endpoint: str | None = None, timeout: float = 30.0, retries: int = 2,
                 start_command: list[str] | str | None = None, curve: dict | None = None,
                 shared_memory: bool | str = True, client_id: str | None = None):
        """Talk to tinctd at `endpoint` (default $TINCT_ENDPOINT, else the settings file's, else
        default_endpoint()).

        timeout: seconds of silence before the daemon counts as gone; retries: how many times a
        request is re-sent after that.  start_command: list[str] (default $TINCTD_COMMAND,
        shlex-split, else the settings file's when the endpoint is the one the file names) run
        detached when nothing answers.  curve: {"server_key", "public", "secret"}
        (Z85 bytes, from zmq.auth.load_certificate) for a remote tinctd; a tcp endpoint without it uses
        the user's key folder (key_dir()).  shared_memory: True for
        the fastest way the machine has (memfd buffers, else files), "files" for files only, False
        to always send pixels through the socket.  client_id: requests with the same client_id and
        document supersede each other while queued (default: one id per Client); it never leaves
        this process as such: tinctd sees only routing ids derived from it.
        """
        endpoint = endpoint or os.environ.get("TINCT_ENDPOINT")
        self.timeout, self.retries, self.curve = float(timeout), int(retries), curve
        command = start_command if start_command is not None else os.environ.get("TINCTD_COMMAND")
        if not endpoint or command is None:
            config = load_config()
            endpoint = endpoint or config.get("endpoint") or default_endpoint()
            # the file describes one daemon: its start command is no use for another endpoint
            if command is None and config.get("endpoint", default_endpoint()) == endpoint:
                command = config.get("start_command")
        self.endpoint: str = endpoint
        self.start_command = shlex.split(command) if isinstance(command, str) else list(command or [])
        secret = client_id.encode() if client_id else os.urandom(OWNER_BYTES)
        self.owner = b"t" + hashlib.sha256(secret).digest()[:OWNER_BYTES - 1]  # never a zero byte first
        self.shared_memory = shared_memory
        self.ctx = zmq.Context()
        self.ctx.setsockopt(zmq.LINGER, 0)  # every socket, monitors too: closing never waits for a gone tinctd
        self.sock = None          # the REQ socket for hello/status/cancel, replaced after silence
        self._monitors = {}       # socket -> its monitor, which reports a peer that fails CURVE
        self.shared: Memfd | SharedFiles | Literal[False] | None = None  # False: pixels go as frames
        self.transport = None     # how the last request's pixels went: "memfd", "files" or "frames"
        self.info = None          # tinctd's last hello: limits, shared memory
        self.started = False

    # -- public requests ------------------------------------------------------------
    def hello(self) -> dict:
        """Protocol version, engines (name -> "ready" or why not), devices, limits."""
        self.info = self._call({"type": "hello"})
        return self.info

    def status(self) -> dict:
        return self._call({"type": "status"})

    def cancel(self, request_id: str) -> None:
        """Cancel a queued or running request; safe to call from another thread."""
        sock = self._socket()
        try:
            reply = self._exchange(sock, self._frames({"type": "cancel", "target": request_id}), self.timeout)
        finally:
            self._close(sock)
        if reply is None:
            raise TinctError("unavailable", f"The Tinct daemon is not answering at {self.endpoint}, so nothing "
                                            "could be cancelled.")
        self._checked(reply)

    @overload
    def colorize(self, *, width: int, height: int, layout: str, sample: str, pixels: Buffer,
                 hints: Buffer | None = None, hints_layout: str = "RGBA", hints_sample: str = "u8",
                 engine: str = "optimization", options: dict | None = None, selection: Buffer | None = None,
                 document: str | None = None, request_id: str | None = None,
                 progress: Callable[[float], None] | None = None, partial: Callable[[dict], None] | None = None,
                 guidance: dict | None = None, variations: None = None, seed: int = 0) -> dict: ...
    @overload
    def colorize(self, *, width: int, height: int, layout: str, sample: str, pixels: Buffer,
                 hints: Buffer | None = None, hints_layout: str = "RGBA", hints_sample: str = "u8",
                 engine: str = "optimization", options: dict | None = None, selection: Buffer | None = None,
                 document: str | None = None, request_id: str | None = None,
                 progress: Callable[[float], None] | None = None, partial: Callable[[dict], None] | None = None,
                 guidance: dict | None = None, variations: int, seed: int = 0) -> list[dict]: ...
    def colorize(self, *, width: int, height: int, layout: str, sample: str, pixels: Buffer,
                 hints: Buffer | None = None, hints_layout: str = "RGBA", hints_sample: str = "u8",
                 engine: str = "optimization", options: dict | None = None, selection: Buffer | None = None,
                 document: str | None = None, request_id: str | None = None,
                 progress: Callable[[float], None] | None = None, partial: Callable[[dict], None] | None = None,
                 guidance: dict | None = None, variations: int | None = None, seed: int = 0) -> dict | list[dict]:
        """Colorize one layer; see docs/protocol.md for the fields and the reply.

        variations: N (1..8, learned engine, hello's features has "variations") answers a list of N
        replies instead of one, each with its own layer as `pixels`, the first the ordinary answer;
        `seed` chooses which ones are drawn.

        guidance: the optional colour guidance fields (hello's features has "reference"): reference
        (bytes, travelling like the layer) with reference_width/height/layout/sample, swatches, palette.

        progress: called about twice a second while the daemon works, with the fraction done
        (0..1, an estimate; 0 while queued).  partial: called with tinctd's quick `live` answer
        (a reply like the final one, its pixels always as a frame) before the final one comes."""
        message = self._layer_message("colorize", width, height, layout, sample, pixels, hints, hints_layout,
                                      hints_sample, engine, options, selection, document, request_id)
        message.update(guidance or {})
        if partial is not None:
            message["progressive"] = True
        if variations is None:
            return self._job(message, progress, partial)
        variations = int(variations)
        message.update(variations=variations, seed=int(seed))
        reply = self._job(message, progress, partial)
        if reply.get("variations") != variations:  # a tinctd without the feature ignores the field
            raise TinctError("unsupported", "This Tinct daemon does not make variations; update tinct.")
        size = len(reply["pixels"]) // variations
        return [dict(reply, pixels=reply["pixels"][k * size:(k + 1) * size]) for k in range(variations)]

    def suggest(self, *, width: int, height: int, layout: str, sample: str, pixels: Buffer,
                hints: Buffer | None = None, hints_layout: str = "RGBA", hints_sample: str = "u8",
                x: int, y: int, k: int = 8) -> list:
        """The k most likely sRGB u8 colours at (x, y) from the learned engine, most likely first."""
        message = self._layer_message("suggest", width, height, layout, sample, pixels, hints, hints_layout,
                                      hints_sample, "learned", None, None, None, None)
        message.update(x=int(x), y=int(y), k=int(k))
        return [tuple(c) for c in self._job(message, None)["colors"]]

    def close(self) -> None:
        if self.sock is not None:
            self._close(self.sock)
            self.sock = None
        if self.shared:
            self.shared.close()
        self.shared = None
        for sock in list(self._monitors):
            self._close(sock)
        self.ctx.destroy(linger=0)  # any socket still open (a request abandoned by an exception) goes too

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- building requests ----------------------------------------------------------
    @staticmethod
    def _layer_message(kind, width, height, layout, sample, pixels, hints, hints_layout, hints_sample,
                       engine, options, selection, document, request_id) -> dict:
        if layout not in LAYOUTS or sample not in SAMPLE_BYTES:
            raise TinctError("unsupported", f"Tinct cannot read {layout} {sample} layers; it reads "
                                            f"{', '.join(LAYOUTS)} in {', '.join(SAMPLE_BYTES)}.")
        need = width * height * LAYOUTS[layout] * SAMPLE_BYTES[sample]
        for name, data in (("layer", pixels), ("hints layer", hints), ("selection", selection)):
            try:
                memoryview(data if data is not None else b"")
            except TypeError:
                raise TinctError("bad_request", f"The {name} data must be bytes, not {type(data).__name__}.") from None
        if memoryview(pixels).nbytes != need:
            raise TinctError("bad_request", f"The layer data is {memoryview(pixels).nbytes} bytes; a {width}x{height} "
                                            f"{layout} {sample} layer needs {need}.")
        message = {"type": kind, "id": request_id or uuid.uuid4().hex, "width": int(width), "height": int(height),
                   "layout": layout, "sample": sample, "pixels": pixels, "engine": engine,
                   "options": dict(options or {})}
        if hints is not None:
            message.update(hints=hints, hints_layout=hints_layout, hints_sample=hints_sample)
        if selection is not None:
            message["selection"] = selection
        if document is not None:
            message["document"] = str(document)
        return message

    def _frames(self, message: dict, info: dict | None = None) -> list:
        """[header, blob...]: binary fields as frames, or placed in shared memory when tinctd offers it."""
        header = {"v": PROTOCOL_VERSION, "id": uuid.uuid4().hex}
        header.update((k, v) for k, v in message.items() if k not in BLOBS)
        blobs = [(k, message[k]) for k in BLOBS if message.get(k) is not None]
        if blobs:
            self.transport = "frames"
        shared = self._shared_memory(info) if blobs and info else None
        while shared:
            try:
                where, lengths = shared.place([v for _, v in blobs], _result_bytes(message))
                header["shm"] = dict(where, blobs=[k for k, _ in blobs], lengths=lengths)
                self.transport, blobs = shared.kind, []
                break
            except OSError:  # e.g. no memory for buffers, or the folder is full: the next way
                self._fall_back()
                assert info is not None  # shared memory is set up only from it
                shared = self._shared_memory(info)
        header["blobs"] = [k for k, _ in blobs]
        return [msgpack.packb(header, use_bin_type=True)] + [v for _, v in blobs]

    def _shared_memory(self, info: dict) -> Memfd | SharedFiles | None:
        """This client's shared memory, set up once: memfd buffers where tinctd and the system have
        them, else files in tinctd's folder, if we see that folder as the same one; None: frames."""
        if self.shared is None:
            self.shared = False
            folder = info.get("shm_dir")
            scheme, _, rest = self.endpoint.partition("://")
            local = scheme == "ipc" or (scheme == "tcp" and rest.rpartition(":")[0] in LOOPBACK)
            try:  # not a same-named folder in another mount namespace
                st = os.stat(folder) if folder else None
                same = st is not None and [st.st_dev, st.st_ino] == info.get("shm_id")
            except OSError:
                same = False
            ways = []
            if self.shared_memory is True and info.get("memfd") and Memfd.possible():
                ways.append(Memfd)
            if self.shared_memory and hasattr(os, "pwrite"):
                ways.append(SharedFiles)
            for way in ways if local and same else []:
                try:
                    self.shared = way(folder, info)
                    break
                except OSError:
                    pass
        return self.shared or None

    def _fall_back(self) -> None:
        """Stop using the current shared memory: memfd buffers give way to files, files to frames."""
        kind = self.shared.kind if self.shared else None
        if self.shared:
            self.shared.close()
        self.shared = None
        self.shared_memory = "files" if kind == "memfd" and self.shared_memory else False

    # -- plumbing -------------------------------------------------------------------
    def _socket(self, kind: int = zmq.REQ):
        """A REQ (or `kind`) socket to tinctd: a routing id under this client's owner bytes (tinctd files its
        requests under them), CURVE on TCP, and a private folder for an ipc socket."""
        curve = self._curve()
        scheme, _, path = self.endpoint.partition("://")
        if scheme == "ipc" and os.path.isdir(os.path.dirname(path)):
            problem = _private_folder_problem(os.path.dirname(path))
            if problem:
                raise TinctError("unavailable", f"Tinct will not use the daemon socket {path}: {problem}. Someone "
                                                "may be trying to intercept your images; remove that folder.")
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.owner + os.urandom(4))
        if curve:
            sock.curve_serverkey = curve["server_key"]
            sock.curve_publickey = curve["public"]
            sock.curve_secretkey = curve["secret"]
        if HANDSHAKE_FAILED:
            self._monitors[sock] = sock.get_monitor_socket(HANDSHAKE_FAILED)
        sock.connect(self.endpoint)
        return sock

    def _close(self, sock) -> None:
        monitor = self._monitors.pop(sock, None)
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(0)
        sock.close(0)

    def _curve(self):
        """The CURVE keys for a tcp endpoint: given, or tinctd's public key and the plugin's key pair from
        the user's key folder (tinctd writes them on its first start, the installer before)."""
        if self.curve or not self.endpoint.startswith("tcp://"):
            return self.curve
        folder = key_dir()
        try:
            server_key, _ = zmq.auth.load_certificate(os.path.join(folder, "tinctd.key"))
            public, secret = zmq.auth.load_certificate(os.path.join(folder, "plugin.key_secret"))
        except (OSError, ValueError):
            if not self._listening():
                if not self.start_command or self.started:
                    raise self._not_running() from None
                self._start_daemon()  # its first start makes the keys
                return self._curve()
            raise TinctError("unavailable", f"Tinct's keys are missing from {folder}, so the plugin cannot check "
                                            f"that what listens at {self.endpoint} is your Tinct daemon. Start "
                                            "'tinctd' once (it makes them) or run Tinct's installer again.") from None
        self.curve = {"server_key": server_key, "public": public, "secret": secret}
        return self.curve

    def _handshake_failed(self, event: int) -> TinctError:
        """The sentence for a connection that failed before any request went out."""
        if event == getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", -1):
            return TinctError("unavailable", f"The Tinct daemon at {self.endpoint} refused this plugin's connection: "
                                             "it has too many connections open, or this plugin's key is not one it "
                                             "allows (run Tinct's installer again).")
        return TinctError("unavailable", f"Something listens at {self.endpoint} but cannot prove it is your Tinct "
                                         f"daemon (it does not hold the key in {key_dir()}); nothing was sent to "
                                         "it. Stop that program, or start 'tinctd' on another endpoint.")

    def _exchange(self, sock, frames: list, timeout: float) -> dict | None:
        """Send `frames` and wait for the reply; None after `timeout` s of silence, or as soon as
        nothing is listening at the endpoint at all."""
        sock.send_multipart(frames, copy=False)
        got = self._await(sock, timeout)
        return got and got[1]

    def _await(self, sock, timeout: float, job=None):
        """(socket, reply) for the first reply on `sock` or on the `job` socket; None after `timeout` s
        of silence, or as soon as nothing is listening at the endpoint at all."""
        poller = zmq.Poller()
        for s in (job, sock):
            if s is not None:
                poller.register(s, zmq.POLLIN)
                if s in self._monitors:
                    poller.register(self._monitors[s], zmq.POLLIN)
        deadline = time.monotonic() + timeout
        checked = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            events = dict(poller.poll(int(min(left, 0.3) * 1000) + 1))
            for s in (job, sock):
                if s is not None and s in events:
                    return s, self._decode(self._receive(s))
                if s in self._monitors and self._monitors[s] in events:
                    event = int.from_bytes(self._monitors[s].recv_multipart()[0][:2], "little")
                    raise self._handshake_failed(event)  # refused, or a peer that is not tinctd
            if not checked:
                if not self._listening():
                    return None
                checked = True

    def _call(self, message: dict) -> dict:
        """A small request, Lazy Pirate style: resent after silence, starting tinctd if configured."""
        frames = self._frames(message)
        attempts = 0
        while attempts <= self.retries:
            if self.sock is None:
                self.sock = self._socket()
            reply = self._exchange(self.sock, frames, self.timeout)
            if reply is not None:
                return self._checked(reply)
            self._close(self.sock)  # a REQ socket that got no answer cannot send again
            self.sock = None
            if not self._listening():
                if self.started or not self.start_command:
                    break
                self._start_daemon()  # starting it does not use up a retry
            else:
                attempts += 1
        if self._listening():
            raise TinctError("timeout", f"The Tinct daemon at {self.endpoint} did not answer within "
                                        f"{self.timeout:g} s. It may be stuck; restart it ('tinctd').")
        raise self._not_running()

    def _not_running(self) -> TinctError:
        how = ("" if self.start_command else
               " Start it with the command 'tinctd' (or set TINCTD_COMMAND so the plugin can start it).")
        return TinctError("unavailable", f"The Tinct daemon is not running at {self.endpoint}.{how}")

    def _job(self, message: dict, progress, partial=None) -> dict:
        """Send work and wait for it, resending the same request id if the daemon goes silent."""
        # tinctd's limits and shared memory; asked again only when nothing listens (to start it, or say so)
        info = self.info if self.info and self._listening() else self.hello()
        limit = info.get("limits", {}).get("max_pixels")
        if limit and message["width"] * message["height"] > limit:
            raise TinctError("too_large", f"The layer is {message['width'] * message['height'] / 1e6:.3g} "
                                          f"megapixels; this Tinct daemon accepts at most {limit / 1e6:.3g}. "
                                          "Colorize a smaller layer, or start tinctd with a larger "
                                          "--max-megapixels.")
        try:
            attempts, rekeyed = 0, False
            while attempts <= self.retries:
                # placed again for every attempt: one answered but lost may have left its result in place
                reply = self._watch(self._frames(message, info), message["id"], progress, partial)
                error = reply.get("error") if reply is not None and not reply.get("ok") else None
                if isinstance(error, dict) and error.get("transport") and self.transport != "frames":
                    if self.transport == "memfd" and not rekeyed:  # a restarted tinctd has a new key
                        rekeyed, info = True, self.hello()
                        assert isinstance(self.shared, Memfd)  # the memfd transport is its
                        if self.shared.reread_key(info):
                            continue
                    self._fall_back()  # the shared memory failed, not the request: send it the next way
                    continue
                if reply is not None:
                    return self._checked(reply)
                attempts += 1
                try:
                    self.hello()  # gone: reach it again (or start it), then resend
                except TinctError:
                    break
        finally:
            if self.shared:
                self.shared.trim()
        if self.shared:  # a job tinctd may still finish must not write into the next request's buffers
            self.shared.close()
            self.shared = None
        raise TinctError("unavailable", "The Tinct daemon stopped while working on this image; nothing was "
                                        "changed. Start it again ('tinctd') and retry.")

    def _watch(self, frames: list, request_id: str, progress, partial=None) -> dict | None:
        """One attempt: the reply, or None when tinctd is silent or has not known the request for `timeout` s.

        Every PROBE_EVERY s without the reply, tinctd is asked about the request on the small-request
        socket; the reply may still arrive meanwhile, so both sockets are watched.  The job goes out
        on a DEALER socket of its own, which (unlike REQ) takes a `partial` reply before the answer."""
        sock = self._socket(zmq.DEALER)
        try:
            sock.send_multipart([b"", *frames], copy=False)
            lost_since = None
            while True:
                if sock.poll(int(PROBE_EVERY * 1000)):
                    reply = self._decode(self._receive(sock))
                    if reply.get("type") != "partial":
                        return reply
                    self._partial(reply, partial)
                    lost_since = None
                    continue
                if self.sock is None:
                    self.sock = self._socket()
                self.sock.send_multipart(self._frames({"type": "status", "target": request_id}), copy=False)
                got = self._await(self.sock, self.timeout, job=sock)
                if got is None or got[0] is sock:  # silence, or the answer overtook the question
                    self._close(self.sock)  # either way this REQ socket has a question left unanswered
                    self.sock = None
                    if got is not None and got[1].get("type") == "partial":
                        self._partial(got[1], partial)
                        lost_since = None
                        continue
                    return got and got[1]
                state = got[1]
                if progress is not None:
                    progress(float(state.get("progress", 0.0)))
                if state.get("job") in ("queued", "running"):
                    lost_since = None
                elif lost_since is None:  # not arrived yet, or answered and the answer on its way
                    lost_since = time.monotonic()
                elif time.monotonic() - lost_since > self.timeout:
                    return None
        finally:
            self._close(sock)

    @staticmethod
    def _receive(sock) -> list:
        """A reply's frames; a DEALER socket's come after the empty delimiter that REQ strips itself."""
        frames = sock.recv_multipart(copy=False)
        return frames[1:] if sock.type == zmq.DEALER else frames

    def _partial(self, reply: dict, partial) -> None:
        if partial is not None and reply.get("ok"):
            partial(reply)

    def _decode(self, frames) -> dict:
        try:
            reply = msgpack.unpackb(frames[0].buffer, raw=False)
            names = reply.pop("blobs", [])
            reply.update((name, frame.bytes) for name, frame in zip(names, frames[1:]))
            spec = reply.pop("shm", None)
            if spec is not None:
                assert self.shared, "a shared-memory reply to a request sent without shared memory"
                data = self.shared.read(spec, sum(spec["lengths"]))
                offset = 0
                for name, length in zip(spec["blobs"], spec["lengths"]):
                    reply[name] = data if len(spec["blobs"]) == 1 else data[offset:offset + length]
                    offset += length
        except Exception as exc:
            raise TinctError("internal", f"The Tinct daemon's answer could not be read ({exc}); update the "
                                         "plugin and tinct together.") from None
        return reply

    @staticmethod
    def _checked(reply: dict) -> dict:
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        err = error if isinstance(error, dict) else {}
        raise TinctError(str(err.get("code", "internal")), str(err.get("message", "tinctd refused the request.")))

    def _listening(self) -> bool:
        """Whether anything accepts connections at the endpoint; a refused TCP connect is immediate."""
        scheme, _, rest = self.endpoint.partition("://")
        if scheme == "ipc":  # a socket file left by a tinctd that was killed refuses connections
            if not hasattr(socket, "AF_UNIX"):
                return os.path.exists(rest)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(rest)
                    return True
                except OSError:
                    return False
        if scheme != "tcp":
            return True
        host, _, port = rest.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            return True
        except (OSError, ValueError):
            return False

    def _start_daemon(self) -> None:
        """Run the start command detached and wait until it listens (it loads its engines first)."""
        self.started = True
        try:
            subprocess.Popen(self.start_command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise TinctError("unavailable", f"Could not start the Tinct daemon with "
                                            f"'{shlex.join(self.start_command)}' ({exc}).") from None
        deadline = time.monotonic() + START_WAIT
        while not self._listening():
            if time.monotonic() > deadline:
                raise TinctError("unavailable", f"Started the Tinct daemon ('{shlex.join(self.start_command)}') "
                                                f"but it did not answer within {START_WAIT:g} s; its log "
                                                "(~/.local/state/tinct/tinctd.log) says why.")
            time.sleep(0.2)


def _result_bytes(message: dict) -> int:
    """How long a request's result pixels are: the reply buffer's size (nothing for suggest)."""
    if message.get("type") != "colorize":
        return 0
    sent: str = message["layout"]
    layout = RESULT_LAYOUTS.get(sent, sent)
    return (message["width"] * message["height"] * LAYOUTS[layout] * SAMPLE_BYTES[message["sample"]]
            * message.get("variations", 1))
