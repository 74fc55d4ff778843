"""Photos per minute: `tinct colorize FOLDER` on this machine against the same batch on a two-node Ray cluster.

    python benchmarks/cluster.py [--photos 10] [--mp 1] [--strokes 60] [--engine optimization]
                                 [--cpus-per-node 1] [--keep DIR]

Both in the same run, on the same photos: Kodak photos (../shared/data/eval, or TINCT_EVAL_DIR)
upscaled to --mp megapixels and turned grey, each with a hints layer of --strokes short strokes
in the original's colours (benchmarks/memory.py's `inputs`), as NAME.png + NAME.hints.png.

- local: `tinct colorize FOLDER -o OUT --device cpu` in a fresh process, PyTorch's default threads
  (all cores), and again with `--threads 1`, as each cluster task runs;
- cluster: the same command with `--cluster`, its driver inside the private namespace of a real
  head + worker node (tests/ray_cluster.py, root needed), each node --cpus-per-node CPUs, one photo
  per CPU at a time. The cluster's start (~15 s) is not counted; the driver's connection and the
  workers' first import of PyTorch are.

Wall time is the whole command's, so it includes start-up; photos/min = photos / wall. The outputs
of local `--threads 1` and the cluster are compared byte for byte (the optimization engine's float
sums depend on the thread count, so other thread counts may differ by one level in a few pixels).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the cluster launcher the tests use

from memory import EVAL, inputs  # noqa: E402  (benchmarks/memory.py: photo + strokes at a size)

from ray_cluster import ADDRESS, private_cluster, unavailable  # noqa: E402


def make_batch(folder: Path, count: int, megapixels: float, strokes: int) -> None:
    from tinct.color import imagefile

    originals = sorted(EVAL.glob("kodak24/*.png"))
    if not originals:
        raise SystemExit(f"no Kodak photos under {EVAL}/kodak24 (set TINCT_EVAL_DIR)")
    folder.mkdir()
    for i in range(count):
        grey, hints = inputs(originals[i % len(originals)], megapixels, strokes, seed=i)
        imagefile.write(folder / f"photo{i:03d}.png", grey)
        imagefile.write(folder / f"photo{i:03d}.hints.png", hints)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--mp", type=float, default=1.0)
    parser.add_argument("--strokes", type=int, default=60)
    parser.add_argument("--engine", default="optimization", choices=["optimization", "learned"])
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--keep", help="make the batch in this new folder and keep it")
    args = parser.parse_args()
    if why := unavailable():
        raise SystemExit(f"no cluster here: {why}")

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tinct-cluster-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    photos = root / "photos"
    make_batch(photos, args.photos, args.mp, args.strokes)
    tinct = [sys.executable, "-m", "tinct.tools.cli", "colorize", str(photos), "--device", "cpu",
             "--engine", args.engine, "-o"]

    rows = [("local", "1 process, all cores", timed(tinct + [str(root / "local-all")])),
            ("local --threads 1", "1 process, 1 thread", timed(tinct + [str(root / "local"), "--threads", "1"]))]
    with private_cluster(root / "ray.log", args.cpus_per_node) as cluster:
        cluster_wall = timed(cluster.enter + tinct + [str(root / "cluster"), "--cluster", ADDRESS])
    rows.append(("cluster", f"2 nodes x {args.cpus_per_node} CPU", cluster_wall))
    names = sorted(p.name for p in photos.iterdir() if not p.name.endswith(".hints.png"))
    same = all((root / "local" / n).read_bytes() == (root / "cluster" / n).read_bytes() for n in names)

    print(f"{args.photos} photos at {args.mp:g} MP, {args.strokes} strokes each, engine {args.engine}; "
          f"outputs byte-identical: {'yes' if same else 'NO'}")
    print("| mode | workers | wall s | photos/min | vs local |")
    print("|---|---|---:|---:|---:|")
    for mode, workers, wall in rows:
        print(f"| {mode} | {workers} | {wall:.1f} | {60 * args.photos / wall:.1f} | {rows[0][2] / wall:.2f}x |")
    if not args.keep:
        import shutil

        shutil.rmtree(root)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
