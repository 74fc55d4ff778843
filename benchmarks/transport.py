"""Round-trip overhead of the plugin <-> tinctd transport, the engine's own time excluded.

    python benchmarks/transport.py [--sizes 1 12 50] [--repeat 3]

Starts a real tinctd on a free loopback port, sends RGBA u8 layers of each size (no hints,
so the engine does the least work) through tinct_client, and subtracts the time the daemon
reports for decoding and the engine: what remains is msgpack, validation, ZeroMQ and copies
on both sides.  The baseline is a plain in-process copy of the same bytes, measured in the
same run.  Target: at most 10 ms more than the copy per 12 MP.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 50], help="megapixels")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = RunningDaemon(Path(tmp))
        try:
            print(f"{'MP':>5} {'MB':>7} {'round trip s':>12} {'daemon s':>9} {'transport ms':>12} "
                  f"{'copy ms':>8} {'extra ms':>9}")
            with daemon.client(timeout=60) as client:
                for mp in args.sizes:
                    side = int((mp * 1e6) ** 0.5)
                    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 4), dtype=np.uint8).tobytes()
                    transport, copies, rounds, inside = [], [], [], []
                    for _ in range(args.repeat):
                        start = time.perf_counter()
                        reply = client.colorize(width=side, height=side, layout="RGBA", sample="u8", pixels=pixels)
                        total = time.perf_counter() - start
                        rounds.append(total)
                        inside.append(reply["timings"]["total"])
                        transport.append(total - reply["timings"]["total"])
                        start = time.perf_counter()
                        copy = bytearray(pixels)  # the bytes once each way, as the round trip moves them
                        bytes(copy)
                        copies.append(time.perf_counter() - start)
                    t, c = statistics.median(transport), statistics.median(copies)
                    print(f"{side * side / 1e6:5.1f} {len(pixels) / 2**20:7.1f} {statistics.median(rounds):12.2f} "
                          f"{statistics.median(inside):9.2f} {t * 1e3:12.1f} {c * 1e3:8.1f} {(t - c) * 1e3:9.1f}",
                          flush=True)
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
