"""`tinct colorize --cluster` on a real two-node Ray cluster (tests/ray_cluster.py: a head and a
worker node as separate processes in a private network namespace), a worker node killed mid-batch."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ray_cluster import ADDRESS, private_cluster, unavailable
from tinct.color import imagefile
from tinct.tools import batch, cli

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
CLIENT_TIMEOUT = 300  # a ray:// run: seconds, past the proxier's own 120 s wait for a client server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for this file's tests (starting one takes ~15 s); the last test kills its worker node."""
    with private_cluster(tmp_path_factory.mktemp("cluster") / "ray.log") as started:
        yield started


def archive(folder: Path, count: int = 20) -> list[str]:
    """`count` small scans of three kinds (8-bit PNG, 16-bit TIFF, JPEG), most with a hints layer."""
    folder.mkdir()
    rng = np.random.default_rng(19)
    names = []
    for i in range(count):
        y, x = np.mgrid[0:240, 0:320]
        grey = (60 + 120 * (x > 80 + 6 * i) + rng.normal(0, 6, (240, 320))).clip(0, 255)
        suffix = (".png", ".tif", ".jpg")[i % 3]
        image = (grey * 257).astype(np.uint16) if suffix == ".tif" else grey.astype(np.uint8)
        imagefile.write(folder / f"scan{i:02d}{suffix}", image)
        if i % 4:
            hints = np.zeros((240, 320, 4), np.uint8)
            hints[20:40, 20:40] = (40 + 9 * i, 160, 60, 255)
            hints[180:200, 240:260] = (200, 40, 10 * i, 255)
            imagefile.write(folder / f"scan{i:02d}.hints.png", hints)
        names.append(f"scan{i:02d}{suffix}")
    return names


def test_failures_are_recorded_listed_and_retried_on_the_cluster_with_the_learned_engine(cluster, tmp_path):
    names = archive(tmp_path / "scans", count=3)
    (tmp_path / "scans" / "broken.png").write_bytes(b"not a png")
    out, local = tmp_path / "out", tmp_path / "local"
    options = ["--engine", "learned", "--vibrancy", "0.8"]
    command = [sys.executable, "-m", "tinct.tools.cli", "colorize", tmp_path / "scans", "-o", out, "--cluster", "auto",
               *options]
    first = subprocess.run(cluster.enter + [str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert first.returncode == 1
    assert first.stderr.rstrip().splitlines()[-1].startswith(f"  {tmp_path / 'scans' / 'broken.png'}: cannot read "
                                                             f"{tmp_path / 'scans' / 'broken.png'}")
    imagefile.write(tmp_path / "scans" / "broken.png", np.full((16, 16), 99, np.uint8))
    command[command.index("auto")] = "ray://127.0.0.1:10001"  # the rerun through Ray Client, as from a laptop
    # Ray Client's proxier may take up to its 120 s (ray_cluster.py) to start this client's server on
    # a loaded 2-core machine, so the run gets more than that (it timed out at 120 s twice)
    second = subprocess.run(cluster.enter + [str(c) for c in command], capture_output=True, text=True,
                            timeout=CLIENT_TIMEOUT)
    assert second.returncode == 0, second.stderr + cluster.client_server_logs()
    assert "3 of 4 photos already done" in second.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["broken.png", batch.MANIFEST])
    # the options reached the tasks: the same bytes as this engine with them here (two threads, one there)
    assert cli.main(["colorize", str(tmp_path / "scans"), "-o", str(local), "--threads", "2", *options]) == 0
    for name in names + ["broken.png"]:
        assert (out / name).read_bytes() == (local / name).read_bytes(), name
    # variations travel too: every photo's N files, each the same bytes as here
    varied = tmp_path / "varied"
    command[command.index(out)] = varied
    third = subprocess.run(cluster.enter + [str(c) for c in command] + ["--variations", "2", "--seed", "3"],
                           capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    assert third.returncode == 0, third.stderr + cluster.client_server_logs()
    assert cli.main(["colorize", str(tmp_path / "scans"), "-o", str(local / "varied"), "--threads", "2", *options,
                     "--variations", "2", "--seed", "3"]) == 0
    made = sorted(p.name for p in varied.iterdir() if p.name != batch.MANIFEST)
    assert len(made) == 2 * len(names + ["broken.png"]) and all(".v1." in m or ".v2." in m for m in made)
    for name in made:
        assert (varied / name).read_bytes() == (local / "varied" / name).read_bytes(), name


def test_a_batch_survives_a_dead_worker_node_and_equals_local_mode(cluster, tmp_path):
    names = archive(tmp_path / "scans")
    local, remote = tmp_path / "local", tmp_path / "remote"
    # two PyTorch threads here, one in each cluster task (its default): the bytes must not care
    assert cli.main(["colorize", str(tmp_path / "scans"), "-o", str(local), "--device", "cpu", "--threads", "2"]) == 0

    command = [sys.executable, "-m", "tinct.tools.cli", "colorize", tmp_path / "scans", "-o", remote,
               "--device", "cpu", "--cluster", ADDRESS]
    run = cluster.popen(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # kill the worker node while it is colorizing a photo
        while not cluster.worker_busy():
            assert run.poll() is None and time.monotonic() < deadline, "the batch ended before the kill"
            time.sleep(0.02)
        cluster.kill_worker()
        manifest = remote / batch.MANIFEST
        before = len(manifest.read_text().splitlines()) if manifest.exists() else 0
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert before < len(names) - 2, "the kill came too late to matter"
    records = [json.loads(line) for line in (remote / batch.MANIFEST).read_text().splitlines()]
    assert sorted(r["output"] for r in records) == sorted(names) and {r["status"] for r in records} == {"done"}
    # the photo the dead node was running was done again on the head, as was all that came after
    # (at most one result from the worker may have been on its way to the driver when it died)
    after = [r["node"] for r in records[before:]]
    assert after.count(cluster.nodes["worker"]) <= 1 and after[-1] == cluster.nodes["head"]
    assert "20/20" in err and "failed=0" in err
    for name in names:
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    assert sorted(p.name for p in remote.iterdir()) == sorted(names + [batch.MANIFEST])  # no parts left

    again = subprocess.run(cluster.enter + [str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "20 of 20 photos already done" in again.stderr
    assert len((remote / batch.MANIFEST).read_text().splitlines()) == len(names)
