"""tinct_client: how the GIMP and Krita plugins talk to tinctd (docs/protocol.md).

Pure Python with pyzmq and msgpack only (no numpy, no torch), so both plugins vendor this
one file.  Every failure, from a daemon that is not running to a refused request, becomes
one `TinctError` whose text a photographer can act on.

Small requests (hello, status, cancel) are retried Lazy-Pirate style: on silence the socket
is thrown away, tinctd is started if a start command is configured, and the request is sent
again.  A colorize is sent once (it is not idempotent work) and then watched: while it runs,
the client pings the daemon, so a daemon that dies mid-request is noticed within
`timeout` seconds while a long job on a live daemon may take as long as it needs.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid

import msgpack
import zmq

# Copies of tinct.protocol's constants (this file must not import tinct); a test keeps them equal.
PROTOCOL_VERSION = 1
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5571"
LAYOUTS = {"GRAY": 1, "GRAYA": 2, "RGB": 3, "RGBA": 4, "BGRA": 4}
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
BLOBS = ("pixels", "hints", "selection")  # binary fields, each a frame of its own
START_WAIT = 30.0  # seconds a freshly started tinctd gets to load its engines


class TinctError(Exception):
    """Anything that went wrong; `code` for programs, `str(err)` for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Client:
    def __init__(self, endpoint=None, timeout=10.0, retries=2, start_command=None, curve=None):
        """`curve`: {"server_key": public key of tinctd, "public": ours, "secret": ours} (bytes, Z85)."""
        self.endpoint = endpoint or os.environ.get("TINCT_ENDPOINT") or DEFAULT_ENDPOINT
        self.timeout, self.retries, self.curve = float(timeout), int(retries), curve
        command = start_command if start_command is not None else os.environ.get("TINCTD_COMMAND")
        self.start_command = shlex.split(command) if isinstance(command, str) else command
        self.client_id = uuid.uuid4().hex
        self.ctx = zmq.Context()
        self.sock = None
        self.inbox: dict[str, dict] = {}

    # -- public requests ------------------------------------------------------------
    def hello(self) -> dict:
        return self._call({"type": "hello"})

    def status(self) -> dict:
        return self._call({"type": "status"})

    def cancel(self, request_id: str) -> None:
        """Cancel a queued or running request; safe to call from another thread."""
        other = Client(self.endpoint, self.timeout, 0, [], self.curve)
        try:
            other._call({"type": "cancel", "target": request_id})
        finally:
            other.close()

    def colorize(self, *, width, height, layout, sample, pixels, hints=None, hints_layout="RGBA",
                 hints_sample="u8", engine="optimization", options=None, selection=None, document=None,
                 request_id=None, progress=None) -> dict:
        message = self._layer_message("colorize", width, height, layout, sample, pixels, hints, hints_layout,
                                      hints_sample, engine, options, selection, document, request_id)
        return self._job(message, progress)

    def suggest(self, *, width, height, layout, sample, pixels, hints=None, hints_layout="RGBA",
                hints_sample="u8", x, y, k=8) -> list:
        message = self._layer_message("suggest", width, height, layout, sample, pixels, hints, hints_layout,
                                      hints_sample, "learned", None, None, None, None)
        message.update(x=int(x), y=int(y), k=int(k))
        return [tuple(c) for c in self._job(message, None)["colors"]]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
        self.ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- plumbing -------------------------------------------------------------------
    @staticmethod
    def _layer_message(kind, width, height, layout, sample, pixels, hints, hints_layout, hints_sample,
                       engine, options, selection, document, request_id) -> dict:
        if layout not in LAYOUTS or sample not in SAMPLE_BYTES:
            raise TinctError("unsupported", f"Tinct cannot read {layout} {sample} layers.")
        need = width * height * LAYOUTS[layout] * SAMPLE_BYTES[sample]
        if len(pixels) != need:
            raise TinctError("bad_request", f"The layer data is {len(pixels)} bytes, expected {need}.")
        message = {"type": kind, "id": request_id or uuid.uuid4().hex, "width": int(width), "height": int(height),
                   "layout": layout, "sample": sample, "pixels": bytes(pixels), "engine": engine,
                   "options": dict(options or {})}
        if hints is not None:
            message.update(hints=bytes(hints), hints_layout=hints_layout, hints_sample=hints_sample)
        if selection is not None:
            message["selection"] = bytes(selection)
        if document is not None:
            message["document"] = str(document)
        return message

    def _socket(self):
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve:
            sock.curve_serverkey = self.curve["server_key"]
            sock.curve_publickey = self.curve["public"]
            sock.curve_secretkey = self.curve["secret"]
        sock.connect(self.endpoint)
        return sock

    def _send(self, message: dict) -> str:
        message = {"v": PROTOCOL_VERSION, "client": self.client_id, **message}
        message.setdefault("id", uuid.uuid4().hex)
        if self.sock is None:
            self.sock = self._socket()
        blobs = [k for k in BLOBS if message.get(k) is not None]
        header = {k: v for k, v in message.items() if k not in BLOBS}
        header["blobs"] = blobs
        frames = [b"", msgpack.packb(header, use_bin_type=True)] + [message[k] for k in blobs]
        self.sock.send_multipart(frames, copy=False)  # pixels go straight from the caller's memory
        return message["id"]

    def _wait(self, request_id: str, seconds: float) -> dict | None:
        """The reply to `request_id`, or None after `seconds` of nothing; other replies are kept."""
        deadline = time.monotonic() + seconds
        while request_id not in self.inbox:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                return None
            frames = self.sock.recv_multipart(copy=False)
            try:
                reply = msgpack.unpackb(frames[1].buffer, raw=False)
                names = reply.pop("blobs", [])
                reply.update((name, frame.bytes) for name, frame in zip(names, frames[2:]))
            except Exception:
                continue
            if isinstance(reply, dict) and isinstance(reply.get("id"), str):
                self.inbox[reply["id"]] = reply
        return self.inbox.pop(request_id)

    def _call(self, message: dict) -> dict:
        """An idempotent request, retried on silence (Lazy Pirate), starting tinctd if configured."""
        started = False
        for attempt in range(self.retries + 1):
            request_id = self._send(dict(message, id=uuid.uuid4().hex))
            reply = self._wait(request_id, START_WAIT if started else self.timeout)
            if reply is not None:
                return self._checked(reply)
            self.sock.close(0)  # its queue may hold a request nobody will answer
            self.sock = None
            if not started and self.start_command:
                started = self._start_daemon()
        hint = ("" if self.start_command else
                " Start it with the command 'tinctd' (or set TINCTD_COMMAND so the plugin can start it).")
        raise TinctError("unavailable", f"The Tinct daemon is not answering at {self.endpoint}.{hint}")

    def _job(self, message: dict, progress) -> dict:
        """Send work once and wait for it, pinging the daemon so that a dead one is noticed."""
        self.hello()  # reaches (or starts) the daemon first
        request_id = self._send(message)
        began = time.monotonic()
        while True:
            reply = self._wait(request_id, min(1.0, self.timeout))
            if reply is not None:
                return self._checked(reply)
            if progress:
                progress(time.monotonic() - began)
            ping = self._send({"type": "status"})
            if self._wait(ping, self.timeout) is None and request_id not in self.inbox:
                self.sock.close(0)
                self.sock = None
                raise TinctError("unavailable", "The Tinct daemon stopped while working on this image; "
                                                "nothing was changed. Start it again and retry.")

    @staticmethod
    def _checked(reply: dict) -> dict:
        if reply.get("ok"):
            return reply
        err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        raise TinctError(str(err.get("code", "internal")), str(err.get("message", "tinctd refused the request.")))

    def _start_daemon(self) -> bool:
        try:
            subprocess.Popen(self.start_command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise TinctError("unavailable", f"Could not start the Tinct daemon ({exc}).") from None
        return True
