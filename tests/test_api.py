"""tinct.colorize: formats in and out, lightness kept, alpha untouched, hints honoured, bad input refused."""
import numpy as np
import pytest
import torch

import tinct
from tinct.color import lab


def photo(h=48, w=64, seed=0):
    """A grey test photo with two regions separated by an edge."""
    rng = np.random.default_rng(seed)
    g = np.full((h, w), 0.35)
    g[:, w // 2:] = 0.75
    return np.clip(g + rng.normal(0, 0.01, (h, w)), 0, 1)


def strokes(h=48, w=64):
    layer = np.zeros((h, w, 4), np.uint8)
    layer[10:14, 5:20] = (200, 40, 30, 255)   # red on the dark side
    layer[30:34, 40:60] = (40, 90, 220, 255)  # blue on the light side
    return layer


def as_layout(grey, dtype, channels):
    maxv = {np.uint8: 255, np.uint16: 65535}.get(dtype)
    base = grey if maxv is None else np.round(grey * maxv)
    base = base.astype(dtype)
    if channels == 1:
        return base
    alpha = np.linspace(0, 1, grey.size).reshape(grey.shape)
    alpha = (alpha if maxv is None else np.round(alpha * maxv)).astype(dtype)
    planes = {2: [base, alpha], 3: [base] * 3, 4: [base] * 3 + [alpha]}[channels]
    return np.stack(planes, -1)


def lightness(img):
    rgb = img[..., :3].astype(np.float64)
    rgb /= {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(img.dtype, 1)
    return lab.srgb_to_lab(torch.tensor(rgb).permute(2, 0, 1))[0].numpy()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_layout_and_depth_round_trips(dtype, channels):
    img = as_layout(photo(), dtype, channels)
    out = tinct.colorize(img, strokes(), quality="preview")
    assert out.dtype == img.dtype
    assert out.shape == img.shape[:2] + ({1: 3, 2: 4}.get(channels, channels),)
    if channels in (2, 4):
        np.testing.assert_array_equal(out[..., 3], img[..., -1])
    src = img if channels >= 3 else np.repeat(img[..., :1] if img.ndim == 3 else img[..., None], 3, -1)
    tol = {np.uint8: 0.5, np.uint16: 0.01, np.float32: 0.01}[dtype]
    assert np.abs(lightness(out) - lightness(src)).max() <= tol


def test_hint_colours_appear_where_painted_and_stop_at_the_edge():
    img = as_layout(photo(), np.uint8, 3)
    out = tinct.colorize(img, strokes()).astype(int)
    left, right = out[20:28, 5:20].reshape(-1, 3).mean(0), out[20:28, 40:60].reshape(-1, 3).mean(0)
    assert left[0] > left[2] + 20   # reddish
    assert right[2] > right[0] + 20  # bluish


def test_no_hints_gives_grey_with_the_same_lightness():
    img = as_layout(photo(), np.uint8, 3)
    out = tinct.colorize(img)
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 1


def test_learned_engine_without_weights_says_so(monkeypatch):
    from tinct import api, engines
    monkeypatch.setitem(api.ENGINES, "learned", "tinct.no_such_module:Engine")
    monkeypatch.delitem(engines._loaded, "learned", raising=False)
    with pytest.raises(tinct.ModelNotInstalled, match="not installed"):
        tinct.colorize(photo().astype(np.float32), engine="learned")


@pytest.mark.parametrize("image, hints, message", [
    (np.zeros((0, 5), np.uint8), None, "empty"),
    (np.full((8, 8), np.nan, np.float32), None, "NaN"),
    (np.zeros((8, 8, 5), np.uint8), None, "channels"),
    (np.zeros((2, 8, 8, 3), np.uint8), None, "dimensions"),
    (np.zeros((8, 8), np.int32), None, "dtype"),
    (np.zeros((8, 8), np.uint8), np.zeros((8, 9, 4), np.uint8), "hints layer"),
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8), "RGBA"),
])
def test_bad_input_is_a_clear_value_error(image, hints, message):
    with pytest.raises(ValueError, match=message):
        tinct.colorize(image, hints)


def test_unknown_engine_and_option_are_refused():
    img = photo().astype(np.float32)
    with pytest.raises(ValueError, match="unknown engine"):
        tinct.colorize(img, engine="magic")
    with pytest.raises(ValueError, match="unknown option"):
        tinct.colorize(img, strokes(), vibrancy=2.0)


def test_cuda_is_refused_clearly_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        tinct.colorize(photo().astype(np.float32), device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_and_cpu_agree():
    img = as_layout(photo(), np.uint8, 3)
    cpu = tinct.colorize(img, strokes(), device="cpu").astype(int)
    gpu = tinct.colorize(img, strokes(), device="cuda").astype(int)
    assert np.abs(cpu - gpu).max() <= 2


def test_the_same_bytes_at_any_thread_count():
    """A photo comes back the same bytes whether torch has 1, 2 or 3 threads (a laptop, tinctd, a
    cluster node): every sum that crosses threads runs in a fixed order.  Big enough for several
    multigrid levels, a dense coarsest solve and the `live` proxy."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:180, 0:240] / 60.0
    grey = np.clip(0.5 + 0.3 * np.sin(x * 2 + np.cos(y * 3)) + rng.normal(0, 0.02, x.shape), 0, 1)
    image = np.round(np.stack([grey, grey * 0.9, grey * 0.8], -1) * 255).astype(np.uint8)
    layer = np.zeros((180, 240, 4), np.uint8)
    layer[20:26, 30:90] = (200, 60, 40, 255)
    layer[120:126, 150:220] = (40, 120, 200, 255)
    runs = [("optimization", layer, {"quality": q}) for q in ("live", "preview", "final")]
    runs += [("learned", layer, {}), ("learned", None, {})]
    strip = np.ascontiguousarray(np.tile(image[:40], (1, 14, 1)))  # 40 x 3360: its coarsest grid is a strip
    strip_layer = np.ascontiguousarray(np.tile(layer[:40], (1, 14, 1)))
    before = torch.get_num_threads()
    answers = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            answers.append([tinct.colorize(image, hints, engine=e, **o).tobytes() for e, hints, o in runs]
                           + [tinct.colorize(strip, strip_layer).tobytes()])
    finally:
        torch.set_num_threads(before)
    for name, one, two, three in zip(runs + [("optimization", "strip", {})], *answers):
        assert one == two == three, name
