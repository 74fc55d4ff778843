"""Variations (issue 17 item 5): N colorizations of one photo from the learned engine, through
tinct.colorize, the tinct command and a real tinctd."""
import numpy as np
import pytest
import torch

import tinct
import tinct_client
from tinct.color import imagefile, lab
from tinct.engines.learned import variations
from tinct.serve import admission
from tinct.serve import job as J
from tinct.serve import protocol as P
from tinct.serve.worker import Progress
from tinct.tools import batch, cli

H = W = 96
PATCH = (slice(30, 66), slice(30, 66))  # inside the flat square, away from its edges


@pytest.fixture(scope="module")
def photo():
    """A grey photo: a ramp with ripples around a flat square of one lightness (24..72)."""
    yy, xx = np.mgrid[0:H, 0:W]
    g = 0.25 + 0.5 * xx / W + 0.05 * np.sin(yy / 5.0)
    g[24:72, 24:72] = 0.8
    return (np.clip(g, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def four(photo):
    return tinct.colorize(photo, engine="learned", variations=4)


def lab_of(img):
    return lab.srgb_to_lab(torch.tensor(img[..., :3].astype(np.float64) / 255).permute(2, 0, 1)).numpy()


def roughness(img) -> float:
    """Mean ab step between neighbouring pixels inside the flat square: per-pixel noise is rough."""
    ab = lab_of(img)[1:, PATCH[0], PATCH[1]]
    return float(np.mean([np.linalg.norm(np.diff(ab, axis=axis), axis=0).mean() for axis in (1, 2)]))


def test_n_distinct_colorizations_the_first_the_ordinary_answer(photo, four):
    assert isinstance(four, list) and len(four) == 4
    assert all(v.shape == (H, W, 3) and v.dtype == np.uint8 for v in four)
    np.testing.assert_array_equal(four[0], tinct.colorize(photo, engine="learned"))
    abs_ = [lab_of(v)[1:] for v in four]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.linalg.norm(abs_[i] - abs_[j], axis=0).mean() > 2.0, (i, j)


def test_each_keeps_the_photos_lightness(photo, four):
    grey = np.repeat(photo[..., None], 3, -1)
    for v in four:
        assert np.abs(lab_of(v)[0] - lab_of(grey)[0]).max() <= 0.5  # as colorize keeps it for u8


def test_deterministic_per_seed(photo, four):
    again = tinct.colorize(photo, engine="learned", variations=4)
    assert all(np.array_equal(a, b) for a, b in zip(four, again))
    other = tinct.colorize(photo, engine="learned", variations=4, seed=1)
    np.testing.assert_array_equal(other[0], four[0])  # the ordinary answer has no seed
    assert not any(np.array_equal(a, b) for a, b in zip(four[1:], other[1:]))


def test_regions_stay_coherent_and_differ_between_variations(photo, four, monkeypatch):
    """Inside a flat square each variation's colour is as smooth as the ordinary answer's (the noise
    is drawn per colour mode and on a coarse grid, not per pixel), yet the square's colour differs
    between variations.  The same measure on per-pixel noise fails, so it can catch that."""
    assert max(roughness(v) for v in four) < 2.5
    means = [lab_of(v)[1:, PATCH[0], PATCH[1]].mean((1, 2)) for v in four]
    assert max(np.linalg.norm(a - b) for a in means for b in means) > 5.0
    monkeypatch.setattr(variations, "noise", lambda shape, gen: variations.gumbel(tuple(shape), gen))
    per_pixel = tinct.colorize(photo, engine="learned", variations=4)
    assert min(roughness(v) for v in per_pixel[1:]) > 2.5


def test_with_strokes_they_are_honoured_and_the_rest_varies(photo):
    hints = np.zeros((H, W, 4), np.uint8)
    hints[5:11, 5:11] = (200, 60, 40, 255)
    hints[80:86, 80:86] = (40, 90, 200, 255)
    out = tinct.colorize(photo, hints, engine="learned", variations=3)
    np.testing.assert_array_equal(out[0], tinct.colorize(photo, hints, engine="learned"))
    stroke = [lab_of(v)[1:, 6:10, 6:10].mean((1, 2)) for v in out]
    assert max(np.linalg.norm(s - stroke[0]) for s in stroke) < 2.0  # every one keeps the red stroke
    assert all(np.abs(v.astype(int) - out[0]).mean() > 0.5 for v in out[1:])


@pytest.mark.parametrize("count", [0, 9, -1, 2.5, True, "4"])
def test_a_bad_count_is_a_clear_error(photo, count):
    with pytest.raises(ValueError, match="variations must be a whole number from 1 to 8"):
        tinct.colorize(photo, engine="learned", variations=count)


def test_other_engines_and_a_reference_are_refused(photo):
    with pytest.raises(ValueError, match="learned engine"):
        tinct.colorize(photo, variations=2)
    reference = np.zeros((8, 8, 3), np.uint8)
    reference[..., 0] = 200
    with pytest.raises(ValueError, match="reference"):
        tinct.colorize(photo, engine="learned", reference=reference, variations=2)
    with pytest.raises(ValueError, match="seed"):
        tinct.colorize(photo, engine="learned", variations=2, seed=-1)


def test_the_protocol_and_the_engine_agree_on_the_most():
    assert P.MAX_VARIATIONS == variations.MAX_VARIATIONS


def request(**fields) -> dict:
    message = {"v": P.VERSION, "type": "colorize", "id": "x", "width": 4, "height": 2, "layout": "RGBA",
               "sample": "u8", "pixels": bytes(32), "engine": "learned"}
    return {**message, **fields}


def test_the_protocol_checks_the_fields():
    job = P.parse_job(request(variations=3, seed=7), 100, ["learned"])
    assert (job.variations, job.seed, P.result_bytes(job)) == (3, 7, 3 * 32)
    assert P.parse_job(request(), 100, ["learned"]).variations is None
    for fields in ({"variations": 0}, {"variations": 9}, {"variations": 2, "seed": -1}, {"variations": "2"},
                   {"variations": True}):
        with pytest.raises(P.ProtocolError) as err:
            P.parse_job(request(**fields), 100, ["learned"])
        assert err.value.code == "bad_request"
    same = P.Shared(size=32, pid=1, source=(5, 6), target=(5, 6), key="0" * 64)
    with pytest.raises(P.ProtocolError, match="reply buffer of their own"):
        P.parse_job(request(variations=2, shm=same), 100, ["learned"])


def test_progress_spans_every_variations_solve():
    """Four solves, each from iteration 1 to its tolerance: the bar fills a quarter per solve."""
    progress = Progress("final", 4)
    ends = []
    for _ in range(4):
        seen = [progress.update(i, r) for i, r in [(1, 1e-1), (2, 1e-2), (3, 1e-4)]]
        assert seen == sorted(seen)
        ends.append(seen[-1])
    assert ends[:3] == pytest.approx([0.25, 0.5, 0.75]) and ends[3] == 0.99


def test_admission_counts_every_variation(monkeypatch):
    """A 20 MP RGBA f32 job fits in 10 GiB; with 8 variations (2 x 2.56 GB more) it never would; with
    64 GiB of which 8 are free it would, but not now."""
    layer = P.Layer(5000, 4000, "RGBA", "f32", b"")
    job = P.Colorize(id="x", client=b"", document=None, image=layer, hints=None, selection=None, engine="learned",
                     options={})
    monkeypatch.setattr(admission, "total_bytes", lambda root="/": 10 << 30)
    monkeypatch.setattr(admission, "available_bytes", lambda root="/": 10 << 30)
    assert J.admit(job) is None
    job.variations = 8
    code, message = J.admit(job) or ("", "")
    assert code == "too_large" and "8 variations" in message and "fewer variations" in message
    monkeypatch.setattr(admission, "total_bytes", lambda root="/": 64 << 30)
    monkeypatch.setattr(admission, "available_bytes", lambda root="/": 8 << 30)
    assert (J.admit(job) or ("",))[0] == "busy"
    job.variations = None
    assert J.admit(job) is None


# -- the tinct command ---------------------------------------------------------------------------

def test_cli_writes_one_file_per_variation_and_skips_them_as_photos(tmp_path, photo, four, capsys):
    imagefile.write(tmp_path / "p.png", photo)
    assert cli.main(["colorize", str(tmp_path / "p.png"), "--engine", "learned", "--variations", "4"]) == 0
    names = [f"p.colorized.v{k}.png" for k in range(1, 5)]
    assert capsys.readouterr().out.split() == [str(tmp_path / n) for n in names]
    for name, expected in zip(names, four):
        np.testing.assert_array_equal(imagefile.read(tmp_path / name), expected)
    assert batch.photos_in([tmp_path]) == [tmp_path / "p.png"]  # a rerun on the folder: no variation taken as a photo
    out = tmp_path / "out"
    assert cli.main(["colorize", str(tmp_path), "-o", str(out), "--engine", "learned", "--variations", "2",
                     "--seed", "3"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["p.v1.png", "p.v2.png"]
    np.testing.assert_array_equal(imagefile.read(out / "p.v1.png"), four[0])
    assert cli.main(["colorize", str(tmp_path), "-o", str(out), "--engine", "learned", "--variations", "2",
                     "--seed", "3"]) == 0
    assert "1 of 1 photos already done" in capsys.readouterr().err
    (out / "p.v2.png").unlink()  # one variation lost: the photo is done again
    assert cli.main(["colorize", str(tmp_path), "-o", str(out), "--engine", "learned", "--variations", "2",
                     "--seed", "3"]) == 0
    assert (out / "p.v2.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--variations", "2"], "learned engine"),
    (["--engine", "learned", "--variations", "9"], "from 1 to 8"),
    (["--engine", "learned", "--seed", "2"], "give --variations too"),
])
def test_cli_refuses_clearly(tmp_path, photo, capsys, args, message):
    imagefile.write(tmp_path / "p.png", photo)
    assert cli.main(["colorize", str(tmp_path / "p.png"), *args]) == 1
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


# -- a real tinctd -------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", [True, "files", False])
def test_tinctd_answers_n_layers_over_every_transport(daemon, photo, four, transport):
    rgba = np.dstack([photo] * 3 + [np.arange(H * W, dtype=np.uint32).reshape(H, W).astype(np.uint8)])
    with daemon.client(shared_memory=transport, timeout=30) as c:
        assert "variations" in c.hello()["features"]
        replies = c.colorize(width=W, height=H, layout="RGBA", sample="u8", pixels=rgba.tobytes(), engine="learned",
                             variations=4)
        assert c.transport == {True: "memfd", "files": "files", False: "frames"}[transport]
    assert len(replies) == 4
    for reply, expected in zip(replies, four):
        assert reply["layout"] == "RGBA" and reply["variations"] == 4
        layer = np.frombuffer(reply["pixels"], np.uint8).reshape(H, W, 4)
        np.testing.assert_array_equal(layer[..., 3], rgba[..., 3])  # alpha byte for byte
        assert np.abs(layer[..., :3].astype(int) - expected).max() <= 1  # tinct.colorize's answers


def test_tinctd_applies_the_selection_to_every_variation(daemon, photo):
    selection = np.zeros((H, W), np.uint8)
    selection[:, : W // 2] = 255
    with daemon.client(timeout=30) as c:
        replies = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=photo.tobytes(), engine="learned",
                             selection=selection.tobytes(), variations=3, seed=5)
    layers = [np.frombuffer(r["pixels"], np.uint8).reshape(H, W, 3) for r in replies]
    for layer in layers:
        np.testing.assert_array_equal(layer[:, W // 2:], np.repeat(photo[:, W // 2:, None], 3, -1))
    assert not np.array_equal(layers[1][:, : W // 2], layers[2][:, : W // 2])


def test_tinctd_refuses_bad_variations_clearly(daemon, photo):
    with daemon.client(timeout=30) as c:
        for kwargs, code, words in [({"engine": "learned", "variations": 9}, "bad_request", "1 to 8"),
                                    ({"engine": "optimization", "variations": 2}, "bad_request", "learned engine")]:
            with pytest.raises(tinct_client.TinctError) as err:
                c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=photo.tobytes(), **kwargs)
            assert err.value.code == code and words in err.value.message
        assert c.status()["uptime"] > 0  # still serving


def test_tinctd_refuses_more_variations_than_one_answer_may_hold(tinctd, tmp_path):
    """8 RGBA f32 layers are 128 bytes a pixel, more than a message of 49 bytes a pixel of max_pixels."""
    d = tinctd(tmp_path, "--max-megapixels", "0.01")
    side = 100  # 10,000 pixels: the most this tinctd takes
    pixels = np.full((side, side, 4), 0.5, np.float32).tobytes()
    with d.client(timeout=30) as c:
        with pytest.raises(tinct_client.TinctError) as err:
            c.colorize(width=side, height=side, layout="RGBA", sample="f32", pixels=pixels, engine="learned",
                       variations=8)
        assert err.value.code == "too_large" and "ask for at most 3" in err.value.message
        replies = c.colorize(width=side, height=side, layout="RGBA", sample="f32", pixels=pixels, engine="learned",
                             variations=3)
    assert [len(r["pixels"]) for r in replies] == [side * side * 16] * 3
