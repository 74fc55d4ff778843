"""Round-trip overhead of the plugin <-> tinctd transport, the engine's own time excluded.

    python benchmarks/transport.py [--sizes 1 12 50] [--repeat 5] [--endpoint tcp|ipc]

Starts a real tinctd on a free loopback port (or an ipc:// socket), sends RGBA u8 layers of
each size (no hints, so the engine does the least work) through tinct_client, and subtracts
the engine time the daemon reports: what remains is the client's and the daemon's
validation, msgpack, ZeroMQ, the shared memory, the wire <-> numpy conversion (tinctd's
decode and encode, also shown on their own) and the copies on both sides.  Every way
pixels can travel is measured, one round trip of each in turn so that a machine whose load
changes treats them alike: ZeroMQ frames (any endpoint), files in tinctd's shared-memory
folder, and memfd buffers (same machine; memfd is the default where there is one).

The baseline is a plain in-process copy of the same bytes there and back (two copies into
fresh memory, as the round trip has to hand the plugin a new bytes object), measured right
after every round trip; `extra` is the median of (transport - copy) over those pairs.
Target: at most 10 ms more than that copy per 12 MP.  A second table shows what memory
itself costs here, from the same run: a copy into warm (reused) memory, a copy into fresh
memory (allocation and first-touch page faults included), and the baseline.  Medians of
`repeat` round trips after one warm-up.
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

WAYS = {"frames": False, "files": "files", "memfd": True}  # transport -> Client(shared_memory=...)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def memory_costs(pixels: bytes, warm: bytearray) -> dict:
    """Seconds for the baseline (two fresh copies), one copy into fresh memory, one into `warm`."""
    view = memoryview(warm)
    return {"copy": timed(lambda: bytes(bytearray(pixels))), "fresh": timed(lambda: bytearray(pixels)),
            "warm": timed(lambda: view.__setitem__(slice(None), pixels))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 50], help="megapixels")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--endpoint", choices=["tcp", "ipc"], default="tcp")
    args = ap.parse_args()
    median = statistics.median
    memory = {}
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{tmp}/tinctd.sock" if args.endpoint == "ipc" else None
        daemon = RunningDaemon(Path(tmp), endpoint=endpoint)
        try:
            print(f"tinctd at {daemon.endpoint}; per-size medians of {args.repeat} round trips")
            print(f"{'MP':>5} {'MB':>6} {'pixels via':>10} {'round trip ms':>13} {'engine ms':>9} "
                  f"{'transport ms':>12} {'in tinctd ms':>12} {'copy ms':>8} {'extra ms':>8} {'extra/12MP':>10}")
            for mp in args.sizes:
                side = int((mp * 1e6) ** 0.5)
                pixels = np.random.default_rng(0).integers(0, 255, (side, side, 4), dtype=np.uint8).tobytes()
                warm = bytearray(len(pixels))
                clients = {via: daemon.client(timeout=300, shared_memory=way) for via, way in WAYS.items()}
                samples = {via: [] for via in WAYS}  # per round trip: total, engine, transport, in tinctd, copy
                costs = []
                try:
                    for i in range(args.repeat + 1):
                        for via, client in clients.items():
                            start = time.perf_counter()
                            reply = client.colorize(width=side, height=side, layout="RGBA", sample="u8",
                                                    pixels=pixels)
                            total = time.perf_counter() - start
                            if client.transport != via:
                                raise SystemExit(f"the pixels went as {client.transport}, not {via}: this system or "
                                                 "tinctd does not offer that way")
                            assert len(reply["pixels"]) == len(pixels)
                            cost = memory_costs(pixels, warm)
                            if i:  # the first round trip warms up both sides
                                t = reply["timings"]
                                samples[via].append((total, t["engine"], total - t["engine"],
                                                     t["decode"] + t["encode"], cost["copy"]))
                                costs.append(cost)
                finally:
                    for client in clients.values():
                        client.close()
                for via, rows in samples.items():
                    r, e, t, inside, c = (median(x) * 1e3 for x in zip(*rows))
                    extra = median(row[2] - row[4] for row in rows) * 1e3
                    print(f"{side * side / 1e6:5.1f} {len(pixels) / 2**20:6.1f} {via:>10} {r:13.1f} {e:9.1f} "
                          f"{t:12.1f} {inside:12.1f} {c:8.1f} {extra:8.1f} {extra * 12e6 / (side * side):10.1f}",
                          flush=True)
                memory[side * side / 1e6] = {k: median(c[k] for c in costs) * 1e3 for k in costs[0]}
        finally:
            daemon.stop()
    print("\nmemory on this machine, same run (medians): a copy into warm memory, into fresh memory "
          "(allocation and page faults included), and the baseline (two fresh copies)")
    print(f"{'MP':>5} {'warm copy ms':>12} {'fresh copy ms':>13} {'baseline ms':>11}")
    for mp, m in memory.items():
        print(f"{mp:5.1f} {m['warm']:12.1f} {m['fresh']:13.1f} {m['copy']:11.1f}")


if __name__ == "__main__":
    main()
