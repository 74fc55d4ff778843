"""Round-trip overhead of the plugin <-> tinctd transport, the engine's own time excluded.

    python benchmarks/transport.py [--sizes 1 12 50] [--repeat 5] [--endpoint tcp|ipc]

Starts a real tinctd on a free loopback port (or an ipc:// socket), sends RGBA u8 layers of
each size (no hints, so the engine does the least work) through tinct_client, and subtracts
the engine time the daemon reports: what remains is the client's and the daemon's
validation, msgpack, ZeroMQ, the shared-memory files, the wire <-> numpy conversion and the
copies on both sides.  Both ways pixels can travel are measured: as ZeroMQ frames (any
endpoint) and through shared-memory files (same machine, the default there).  The baseline
is a plain in-process copy of the same bytes there and back (two copies, fresh memory each,
as the round trip gets), measured in the same run.  Target: at most 10 ms more than that
copy per 12 MP.  Medians of `repeat` round trips after one warm-up.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from daemon_fixture import RunningDaemon  # noqa: E402


def copy_there_and_back(pixels: bytes) -> float:
    start = time.perf_counter()
    bytes(bytearray(pixels))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 50], help="megapixels")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--endpoint", choices=["tcp", "ipc"], default="tcp")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{tmp}/tinctd.sock" if args.endpoint == "ipc" else None
        daemon = RunningDaemon(Path(tmp), endpoint=endpoint)
        try:
            print(f"tinctd at {daemon.endpoint}; per-size medians of {args.repeat} round trips")
            print(f"{'MP':>5} {'MB':>6} {'pixels via':>10} {'round trip ms':>13} {'engine ms':>9} "
                  f"{'transport ms':>12} {'copy ms':>8} {'extra ms':>8} {'extra/12MP':>10}")
            for mp in args.sizes:
                side = int((mp * 1e6) ** 0.5)
                pixels = np.random.default_rng(0).integers(0, 255, (side, side, 4), dtype=np.uint8).tobytes()
                for via, shared in (("frames", False), ("shm", True)):
                    with daemon.client(timeout=120, shared_memory=shared) as client:
                        rounds, engine, copies = [], [], []
                        for i in range(args.repeat + 1):
                            start = time.perf_counter()
                            reply = client.colorize(width=side, height=side, layout="RGBA", sample="u8",
                                                    pixels=pixels)
                            total = time.perf_counter() - start
                            assert len(reply["pixels"]) == len(pixels) and (client.files is not False) == shared
                            if i:  # the first round trip warms up both sides
                                rounds.append(total)
                                engine.append(reply["timings"]["engine"])
                                copies.append(copy_there_and_back(pixels))
                    r, e, c = (statistics.median(x) * 1e3 for x in (rounds, engine, copies))
                    t = statistics.median(a - b for a, b in zip(rounds, engine)) * 1e3
                    print(f"{side * side / 1e6:5.1f} {len(pixels) / 2**20:6.1f} {via:>10} {r:13.1f} {e:9.1f} "
                          f"{t:12.1f} {c:8.1f} {t - c:8.1f} {(t - c) * 12e6 / (side * side):10.1f}", flush=True)
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
