"""`tinctd` (and `python -m tinct.serve`): arguments, the checks before minutes of warming engines,
the lock, the log and the signals; then the daemon loop (tinct.serve.daemon) until a signal."""
from __future__ import annotations

import argparse
import logging
import math
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from . import endpoint, keys
from . import protocol as P
from .daemon import MAX_CONNECTIONS, Daemon
from .state import acquire_lock, claim_socket, setup_logging, state_dir
from .warmup import check

try:
    import resource
except ImportError:  # Windows
    resource = None

log = logging.getLogger("tinctd")


def raise_fd_limit() -> None:
    """Open files up to the hard limit: each connection is one, and libzmq spins when it runs out."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        log.debug("the open-file limit stays %d", soft)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tinctd", description="Tinct's colorization daemon for the GIMP and Krita "
                                                            "plugins (protocol: docs/protocol.md).")
    default = os.environ.get("TINCT_ENDPOINT") or endpoint.default_endpoint()
    ap.add_argument("--endpoint", default=default,
                    help=f"ZeroMQ endpoint, ipc://PATH or tcp://ADDRESS:PORT (default $TINCT_ENDPOINT or {default})")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    ap.add_argument("--max-megapixels", type=float, default=P.DEFAULT_MAX_PIXELS / 1e6,
                    help="largest layer accepted (default %(default)g); memory may allow less (tinct.serve.admission)")
    ap.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                    help="open connections at once; more are refused (default %(default)d)")
    ap.add_argument("--state-dir", help="lock and log folder (default $TINCT_STATE_DIR or $XDG_STATE_HOME/tinct)")
    ap.add_argument("--allow-remote", action="store_true",
                    help="bind a non-loopback address (needs --curve-secret and --curve-clients)")
    ap.add_argument("--curve-secret", help="this server's zmq.auth secret certificate file "
                                           "(default on tcp: the user's key folder, tinct.serve.keys)")
    ap.add_argument("--curve-clients", help="folder of the allowed remote clients' public certificates")
    ap.add_argument("--check", action="store_true", help="print device, engines, models; exit 0 if usable")
    ap.add_argument("--verbose", action="store_true", help="log every refused request too")
    args = ap.parse_args(argv)
    os.umask(0o077)  # everything tinctd makes (lock, log, keys, sockets) is its user's alone
    if args.state_dir:
        os.environ["TINCT_STATE_DIR"] = args.state_dir
    if not (math.isfinite(args.max_megapixels) and 0 < args.max_megapixels <= 1e5):
        ap.error("--max-megapixels must be a number above 0 and at most 100000")
    if not 1 <= args.max_connections <= 1 << 16:
        ap.error("--max-connections must be from 1 to 65536")
    from tinct.engines import default_device

    try:
        device = default_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    if args.check:
        return check(device)
    try:
        address = endpoint.check(args.endpoint)
        if not endpoint.is_loopback(address):
            if not args.allow_remote:
                ap.error(f"{address} is reachable from other machines; pass --allow-remote (with CURVE keys) "
                         "if that is what you want")
            if not (args.curve_secret and args.curve_clients):
                ap.error("a remote endpoint needs --curve-secret and --curve-clients (see docs/protocol.md)")
        if address.startswith("tcp://"):  # the keys now, before minutes of warming engines
            keys.server_pair(Path(args.curve_secret) if args.curve_secret else None)
            keys.allowed_clients(Path(args.curve_clients) if args.curve_clients else None)
        directory = state_dir()
        lock = acquire_lock(directory, address)
        ipc_lock = claim_socket(address) if address.startswith("ipc://") else None
        setup_logging(directory, args.verbose)
    except endpoint.EndpointError as exc:
        ap.error(str(exc))
    raise_fd_limit()
    daemon = None

    def stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        if daemon is None:  # still warming the engines
            raise SystemExit(0)
        daemon.stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, stop)
    curve = {"secret": args.curve_secret, "clients": args.curve_clients}
    daemon = Daemon(address, int(args.max_megapixels * 1e6), device, curve, args.max_connections, ipc_lock)
    daemon.serve()
    lock.close()
    return 0

