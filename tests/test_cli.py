"""The tinct command on real files: one photo, a folder with hints beside the photos, 16-bit TIFF;
batches resumed from their manifest, outputs written whole or not at all (no Ray here: test_cluster)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinct.color import imagefile
from tinct.tools import batch, cli


@pytest.fixture
def archive(tmp_path):
    g = np.full((40, 50), 90, np.uint8)
    g[:, 25:] = 180
    imagefile.write(tmp_path / "a.png", g)
    imagefile.write(tmp_path / "b.tif", (g.astype(np.uint16) * 257))
    hints = np.zeros((40, 50, 4), np.uint8)
    hints[5:10, 5:10] = (30, 160, 40, 255)
    imagefile.write(tmp_path / "a.hints.png", hints)
    return tmp_path


def test_one_photo_with_explicit_hints_and_output(archive):
    out = archive / "out.png"
    assert cli.main(["colorize", str(archive / "a.png"), "--hints", str(archive / "a.hints.png"),
                     "-o", str(out)]) == 0
    res = imagefile.read(out)
    assert res.shape == (40, 50, 3) and res.dtype == np.uint8
    r, g, b = res[20, 10].astype(int)
    assert g > r + 10 and g > b + 10  # the green stroke spread over the dark half


def test_folder_finds_hints_beside_each_photo_and_keeps_depth(archive, capsys):
    out = archive / "done"
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", batch.MANIFEST]
    assert imagefile.read(out / "b.tif").dtype == np.uint16
    a = imagefile.read(out / "a.png").astype(int)
    assert a[20, 10, 1] > a[20, 10, 0] + 10  # a.hints.png was used
    assert "2/2" in capsys.readouterr().err  # the progress bar


def test_default_output_sits_beside_the_photo_and_never_overwrites_it(archive):
    assert cli.main(["colorize", str(archive / "a.png")]) == 0
    assert (archive / "a.colorized.png").exists()
    before = (archive / "a.png").read_bytes()
    assert cli.main(["colorize", str(archive / "a.png"), "-o", str(archive / "a.png")]) == 1
    assert (archive / "a.png").read_bytes() == before


def test_errors_are_sentences_and_a_nonzero_status(archive, capsys):
    assert cli.main(["colorize", str(archive / "missing.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (archive / "broken.png").write_bytes(b"not a png")
    assert cli.main(["colorize", str(archive / "broken.png")]) == 1
    capsys.readouterr()
    assert cli.main(["colorize", str(archive / "a.png"), "--threads", "0"]) == 1
    assert "--threads 0: give 1 or more" in capsys.readouterr().err


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "tinct.tools.cli", "colorize", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "--engine" in res.stdout


def manifest_of(out):
    """The manifest's whole records (a line cut short is skipped, as the manifest itself does)."""
    records = []
    for line in (out / batch.MANIFEST).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def test_a_rerun_skips_what_is_done_and_retries_what_failed(archive, capsys):
    out = archive / "done"
    (archive / "c.png").write_bytes(b"not a png")
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 photos failed" in err and err.rstrip().splitlines()[-1].startswith(f"  {archive / 'c.png'}: ")
    records = {r["output"]: r for r in manifest_of(out)}
    assert {k: r["status"] for k, r in records.items()} == {"a.png": "done", "b.tif": "done", "c.png": "failed"}
    assert "cannot read" in records["c.png"]["reason"]
    kept = {name: (out / name).stat().st_mtime_ns for name in ("a.png", "b.tif")}

    imagefile.write(archive / "c.png", np.full((8, 8), 77, np.uint8))  # the broken scan, scanned again
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    assert "2 of 3 photos already done" in capsys.readouterr().err
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # not written again
    assert imagefile.read(out / "c.png").shape == (8, 8, 3)
    assert manifest_of(out)[-1]["output"] == "c.png" and manifest_of(out)[-1]["status"] == "done"
    assert len(manifest_of(out)) == 4

    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    assert "3 of 3 photos already done" in capsys.readouterr().err
    assert len(manifest_of(out)) == 4


def test_changed_hints_other_settings_or_a_lost_output_are_done_again(archive, capsys):
    out = archive / "done"
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    hints = imagefile.read(archive / "a.hints.png")
    hints[5:10, 30:35] = (200, 20, 20, 255)
    imagefile.write(archive / "a.hints.png", hints)
    os.utime(archive / "a.hints.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    capsys.readouterr()
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    assert "1 of 2 photos already done" in capsys.readouterr().err and manifest_of(out)[-1]["output"] == "a.png"
    assert cli.main(["colorize", str(archive), "-o", str(out), "--quality", "preview"]) == 0
    assert "already done" not in capsys.readouterr().err and len(manifest_of(out)) == 5
    (out / "b.tif").unlink()
    assert cli.main(["colorize", str(archive), "-o", str(out), "--quality", "preview"]) == 0
    assert (out / "b.tif").exists() and manifest_of(out)[-1]["output"] == "b.tif"


def test_a_line_cut_short_by_a_kill_only_means_that_photo_is_done_again(archive):
    out = archive / "done"
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    lines = (out / batch.MANIFEST).read_text().splitlines()
    (out / batch.MANIFEST).write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    manifest = batch.Manifest(out / batch.MANIFEST, {"engine": "optimization"})
    jobs = batch.plan(batch.photos_in([archive]), out, True)
    assert [manifest.done(job) for job in jobs] == [True, False]
    manifest.close()
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0  # b.tif again, on a line of its own
    assert [r["output"] for r in manifest_of(out)] == ["a.png", "b.tif"]


def test_a_second_batch_into_the_same_folder_is_refused_while_the_first_runs(archive, capsys):
    out = archive / "done"
    out.mkdir()
    first = batch.Manifest(out / batch.MANIFEST, {"engine": "optimization"})
    try:
        assert cli.main(["colorize", str(archive), "-o", str(out)]) == 1
        assert "another tinct batch is writing to" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [batch.MANIFEST]
    finally:
        first.close()
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0


def test_outputs_are_whole_or_untouched(tmp_path):
    target = tmp_path / "photo.png"
    target.write_bytes(b"the previous result")

    def dies_halfway(part):
        part.write_bytes(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError):
        batch.write_atomically(target, dies_halfway)
    assert target.read_bytes() == b"the previous result" and os.listdir(tmp_path) == ["photo.png"]
    batch.write_atomically(target, lambda part: part.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["photo.png"]


def test_parts_left_by_a_killed_run_are_removed_and_never_taken_for_photos(archive):
    out = archive / "done"
    out.mkdir()
    left = out / f".a{batch.PART_TAG}999999.png"
    imagefile.write(left, np.zeros((4, 4), np.uint8))
    imagefile.write(archive / f".c{batch.PART_TAG}999999.png", np.zeros((4, 4), np.uint8))
    assert batch.photos_in([archive]) == [archive / "a.png", archive / "b.tif"]
    assert cli.main(["colorize", str(archive), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", batch.MANIFEST]


def test_outputs_that_would_collide_are_refused_before_anything_is_written(archive, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    imagefile.write(other / "a.png", np.zeros((4, 4), np.uint8))
    out = tmp_path / "together"
    assert cli.main(["colorize", str(archive), str(other), "-o", str(out)]) == 1
    assert "would both be written to" in capsys.readouterr().err and not out.exists()
    assert cli.main(["colorize", str(archive), "-o", str(archive)]) == 1  # the photos' own folder
    assert "would overwrite the photo itself" in capsys.readouterr().err


def test_a_killed_local_batch_leaves_only_whole_files_and_resumes(tmp_path):
    photos, out = tmp_path / "scans", tmp_path / "colour"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        imagefile.write(photos / f"p{i}.png", (rng.random((360, 480)) * 255).astype(np.uint8))
    command = [sys.executable, "-m", "tinct.tools.cli", "colorize", str(photos), "-o", str(out), "--device", "cpu"]
    run = subprocess.Popen(command, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not ((out / batch.MANIFEST).exists() and (out / batch.MANIFEST).read_text().count("\n") >= 2):
            assert run.poll() is None and time.monotonic() < deadline, "the batch ended before it could be killed"
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.wait()
    done = {r["output"] for r in manifest_of(out)}
    assert 2 <= len(done) < 8
    for path in out.iterdir():
        if path.name != batch.MANIFEST and not path.name.startswith("."):
            assert imagefile.read(path).shape == (360, 480, 3)  # whole, never half written
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} of 8 photos already done" in rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([f"p{i}.png" for i in range(8)] + [batch.MANIFEST])


def test_cluster_without_ray_says_how_to_install(archive, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where it is not installed
    assert cli.main(["colorize", str(archive), "-o", str(archive / "done"), "--cluster", "auto"]) == 1
    assert "pip install 'tinct[cluster]'" in capsys.readouterr().err


def test_ray_is_imported_only_for_a_cluster(archive):
    done = subprocess.run([sys.executable, "-c", "import sys; from tinct.tools import cli; "
                           f"assert cli.main(['colorize', {str(archive)!r}, '-o', {str(archive / 'o')!r}]) == 0; "
                           "assert 'ray' not in sys.modules, 'ray was imported'"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_reference_beside_a_photo_goes_with_it_and_is_not_a_photo(archive):
    imagefile.write(archive / "a.ref.jpg", np.full((30, 30, 3), (200, 120, 40), np.uint8))
    assert batch.photos_in([archive]) == [archive / "a.png", archive / "b.tif"]
    a, b = batch.plan(batch.photos_in([archive]), archive / "out", True)
    assert (a.reference, a.hints, b.reference, b.hints) == (archive / "a.ref.jpg", archive / "a.hints.png", None, None)
    assert a.inputs() == {"photo": archive / "a.png", "hints": archive / "a.hints.png",
                          "reference": archive / "a.ref.jpg"}
