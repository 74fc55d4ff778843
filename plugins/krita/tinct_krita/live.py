"""Running requests off Krita's GUI thread, and Live mode's timing.

A colorize takes from a fraction of a second to many, so every request runs in a worker
thread with a client of its own; the GUI polls for finished ones.  Live mode sends a request
300 ms after the last change to the hints layer (ChangeWatch); a newer request for the same
photo supersedes the older one: the one in flight is cancelled in tinctd, the newer one goes
out once it is back (replacing any that was waiting meanwhile), and only the newest answer is
ever applied.  The requests also carry the photo as tinctd's `document`, which makes tinctd
drop a queued older one by itself.  A Live request asks tinctd for a quick `partial` answer
first (its `live` quality); that one is handed back too, marked partial, unless a newer
request has come meanwhile, and the full answer replaces it.  Pure Python: unit-tested with a
stand-in client and against a real tinctd.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import tinct_plugin

CANCEL_AGAIN = 0.25   # seconds between cancels of a request that has not stopped yet


class Debounce:
    """Fires once `delay` seconds after the last touch; touches meanwhile push it back."""

    def __init__(self, delay: float):
        self.delay = delay
        self.deadline = None

    def touch(self, now: float) -> None:
        self.deadline = now + self.delay

    def due(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            return True
        return False


class ChangeWatch:
    """Live mode's eye on the hints layer: told at every poll which layer it is and how it looks
    (any digest), it says when a change has been followed by `delay` seconds of stillness."""

    def __init__(self, delay: float):
        self.debounce = Debounce(delay)
        self.seen = None   # (layer, digest) at the last poll

    def see(self, now: float, layer: object, digest: object) -> bool:
        """Record this poll's look (layer None: there is none); True when `layer` is new to the watch,
        whose first look is no change but the "before" of the next one."""
        new = layer is not None and (self.seen is None or self.seen[0] != layer)
        if not new and layer is not None and self.seen[1] != digest:
            self.debounce.touch(now)
        self.seen = (layer, digest) if layer is not None else None
        return new

    def poke(self, now: float) -> None:
        """Something else that changes the result (a setting, Live switched on): count it as a change."""
        self.debounce.touch(now)

    def due(self, now: float) -> bool:
        return self.debounce.due(now)


@dataclass
class Request:
    request_id: str
    method: str
    kwargs: dict
    document: object
    tag: object
    partial: bool = False  # ask for a quick partial answer before the full one


@dataclass
class Outcome:
    """A finished request: `result` or `error` (an exception), and the caller's `tag`; `partial`:
    tinctd's quick answer, the full one still to come."""

    request_id: str
    document: object
    tag: object
    result: object = None
    error: object = None
    partial: bool = False


class Runner:
    """Runs client calls in threads; `poll()` hands back the outcomes that still matter.

    Requests for one `document` go out one at a time: a newer one waits (replacing any older one
    still waiting) while the one in flight is cancelled, and goes out once that one is back.
    Sent side by side, they could reach tinctd in the other order, and the older one would
    supersede the newer there.  make_client(client_id) returns a tinct_client.Client; all share
    one client id, as tinctd's superseding of queued requests by `document` needs."""

    def __init__(self, make_client: Callable[[str], Any]):
        self.make_client = make_client
        self.client_id = uuid.uuid4().hex
        self.lock = threading.Lock()
        self.idle = []        # clients not running anything
        self.running = {}     # request id -> (client, method)
        self.flying = {}      # document -> the id of its request in flight
        self.waiting = {}     # document -> the Request to send when that one is back
        self.finished = []    # outcomes not yet polled
        self.closed = False
        self.hello = None     # tinctd's latest hello, as a client last had it (limits, defaults)

    def submit(self, method: str, kwargs: dict, document: object = None, tag: object = None,
               partial: bool = False) -> str:
        """Run `client.<method>(**kwargs)`; a `document` makes it supersede that document's older requests;
        `partial` (colorize) hands back tinctd's quick answer too, before the full one."""
        request = Request(uuid.uuid4().hex, method, kwargs, document, tag, partial and method == "colorize")
        with self.lock:
            if document is not None:
                # an answer that came in but was not polled yet is older too
                self.finished = [o for o in self.finished if o.document != document]
                older = self.flying.get(document)
                if older is not None:
                    self.waiting[document] = request
                    if self.running[older][1] == "colorize":  # suggestions are quick and have no id to cancel
                        threading.Thread(target=self._cancel, args=(older,), daemon=True).start()
                    return request.request_id
                self.flying[document] = request.request_id
        self._start(request)
        return request.request_id

    def _start(self, request):
        with self.lock:
            client = self.idle.pop() if self.idle else None
        if client is None:
            client = self.make_client(self.client_id)
        kwargs = request.kwargs
        if request.method == "colorize":
            kwargs = dict(kwargs, request_id=request.request_id, document=request.document)
        if request.partial:
            kwargs["partial"] = lambda reply: self._partial(request, reply)
        with self.lock:
            self.running[request.request_id] = (client, request.method)
        threading.Thread(target=self._run, args=(client, request, kwargs), name=f"tinct-{request.method}",
                         daemon=True).start()

    def _run(self, client, request, kwargs):
        outcome = Outcome(request.request_id, request.document, request.tag)
        # a colorize goes through tinct_plugin, which checks its colour guidance against tinctd's hello
        call = (functools.partial(tinct_plugin.colorize, client) if request.method == "colorize"
                else getattr(client, request.method))
        try:
            outcome.result = call(**kwargs)
        except Exception as exc:  # every failure goes back to the GUI thread, which says it
            outcome.error = exc
        with self.lock:
            self.hello = getattr(client, "info", None) or self.hello
            del self.running[request.request_id]
            after = self.waiting.pop(request.document, None) if request.document is not None else None
            # its partial answer, if not polled yet, is no use now
            self.finished = [o for o in self.finished if o.request_id != request.request_id]
            if after is not None:
                self.flying[request.document] = after.request_id   # this answer is superseded
            else:
                self.flying.pop(request.document, None)
                self.finished.append(outcome)
            if self.closed:
                client.close()
                after = None
            else:
                self.idle.append(client)
        if after is not None:
            self._start(after)

    def _partial(self, request, reply):
        """tinctd's quick answer to `request` (from its thread): handed back unless a newer one waits."""
        with self.lock:
            if request.document is None or request.document not in self.waiting:
                self.finished.append(Outcome(request.request_id, request.document, request.tag, reply,
                                             partial=True))

    def _cancel(self, request_id):
        """Ask tinctd to cancel `request_id` until it is back: a cancel that overtakes the request finds nothing."""
        while True:
            with self.lock:
                client = self.running.get(request_id, (None,))[0]
            if client is None:
                return
            try:
                client.cancel(request_id)
            except Exception:  # tinctd gone: the request comes back with that error, which is dropped
                pass
            time.sleep(CANCEL_AGAIN)

    def busy(self) -> bool:
        """Whether anything is still running, waiting to go out or waiting to be polled."""
        with self.lock:
            return bool(self.running or self.waiting or self.finished)

    def poll(self) -> list[Outcome]:
        """Outcomes finished since the last poll, superseded ones left out."""
        with self.lock:
            done, self.finished = self.finished, []
        return done

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.waiting.clear()
            idle, self.idle = self.idle, []
        for client in idle:
            client.close()
