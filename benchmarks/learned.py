"""Speed of the learned engine: the hint network alone, and the whole engine with its full-resolution solve.

    python benchmarks/learned.py [--sides 256 512] [--full 1024 2048] [--threads 1 2] [--repeats 3] [--device cpu]

The issue's budget is <= 1.5 s for the network on a 512x512 input on the 2-core CPU and
<= 10 ms on an H100.  The network times are the median of --repeats runs after one warm-up,
with the committed weights (models/, installed as tinct.models), 10 simulated hints; the engine rows add the Levin
solve that brings the network's colours to the photo's own size (`final` quality), which is
where most of the time goes on large photos.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from tinct import api
from tinct.engines.learned import engine as learned
from tinct.training import measure


def timed(fn, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 512], help="network input sides")
    parser.add_argument("--full", type=int, nargs="+", default=[1024, 2048], help="photo sides for the engine rows")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    device = api.default_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    engine = learned.LearnedEngine()
    name, photo = next(measure.eval_images(size=None))
    params = sum(p.numel() for p in engine.model.parameters())
    print(f"{engine.version}, {params / 1e6:.2f} M parameters, device {device}, photo {name}")
    print(f"{'what':<32}{'side':>6}{'threads':>9}{'seconds':>10}")
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for side, full in [(s, False) for s in args.sides] + [(s, True) for s in args.full]:
            rgb = np.asarray(Image.fromarray(photo).resize((side, side), Image.Resampling.LANCZOS))
            layer = measure.hints_of(rgb, 10, np.random.default_rng(0))
            _, L, hint_ab, hint_w = api.prepare(measure.gray_of(rgb), layer, device)
            if full:
                what = "engine (network + final solve)"
                seconds = timed(lambda: engine.predict_ab(L, hint_ab, hint_w), args.repeats, sync)
            else:
                what = "network"
                seconds = timed(lambda: engine.network(L, hint_ab, hint_w, max_side=side), args.repeats, sync)
            print(f"{what:<32}{side:>6}{threads:>9}{seconds:>10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
