"""`tinct eval`: the sweep's CSV and plot, on a tiny eval folder, with our own exported weights."""
import argparse
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from tinct import engines
from tinct.engines.learned import net
from tinct.training import evaluate, measure, train


@pytest.fixture
def learned_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    bins = net.ab_bins()
    path = tmp_path / "hint.pt"
    train.export(net.HintNet(len(bins), width=8), bins, torch.ones(len(bins)), {"width": 8, "step": 0, "history": []},
                 path)
    monkeypatch.setenv("TINCT_MODEL", str(path))
    monkeypatch.delitem(engines._loaded, "learned", raising=False)
    yield path
    engines._loaded.pop("learned", None)


def test_options_parse_numbers_and_words():
    assert evaluate.engine_options(["prior_weight=1e-4", "quality=preview"]) == {"prior_weight": 1e-4,
                                                                                   "quality": "preview"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        evaluate.engine_options(["vibrancy"])


def test_sweep_writes_every_engine_and_hint_count(tmp_path, learned_weights, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "eval" / "set").mkdir(parents=True)
    photos = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    for i, rgb in enumerate(photos):
        Image.fromarray(rgb).save(tmp_path / "eval" / "set" / f"p{i}.png")
    out = tmp_path / "out"
    args = ["--eval-dir", str(tmp_path / "eval"), "--size", "32", "--hints", "0", "5", "--out", str(out),
            "--set", "vibrancy=0.5"]
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    assert evaluate.run(parser.parse_args(args)) == 0
    rows = list(csv.DictReader(open(out / "eval.csv")))
    # per photo: grey, learned at 0 and 5 hints, optimization at 5 hints (it needs strokes)
    assert sorted((r["engine"], r["hints"]) for r in rows if r["photo"] == "set/p0") == [
        ("grey", "0"), ("learned", "0"), ("learned", "5"), ("optimization", "5")]
    resized = next(measure.eval_images(tmp_path / "eval", size=32))[1]
    grey = next(r for r in rows if r["photo"] == "set/p0" and r["engine"] == "grey")
    assert float(grey["psnr_db"]) == pytest.approx(measure.psnr(measure.gray_of(resized), resized))
    assert Image.open(out / "eval.png").size == (640, 400)
    printed = capsys.readouterr().out
    assert "dB against grey, colourfulness" in printed
    assert "black-and-white originals with 10 neutral strokes" in printed


def test_black_and_white_originals_stay_grey(learned_weights):
    """The grey-original check: neutral strokes on a black-and-white photo give it back (issue 17)."""
    rng = np.random.default_rng(2)
    photos = [(f"set/p{i}", rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for i in range(2)]
    # a strong pull towards the untrained network's boldest colours: the neutral strokes must still win
    scores = evaluate.grey_originals(photos, options={"vibrancy": 1.0, "prior_weight": 1.0})
    assert len(scores) == 2 and min(scores) >= 45.0
