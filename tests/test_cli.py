"""The tinct command on real files: one photo, a folder with hints beside the photos, 16-bit TIFF."""
import subprocess
import sys

import numpy as np
import pytest

from tinct.color import imagefile
from tinct.tools import cli


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
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif"]
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


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "tinct.tools.cli", "colorize", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "--engine" in res.stdout
