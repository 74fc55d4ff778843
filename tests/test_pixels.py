import warnings

import numpy as np
import pytest
import torch

from tinct.color import lab, pixels
from tinct.native import kernels

SHAPES = {1: lambda h, w: (h, w), 2: lambda h, w: (h, w, 2), 3: lambda h, w: (h, w, 3), 4: lambda h, w: (h, w, 4)}


def _image(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 2), (5, 7, 3), (5, 7, 4)])
def test_round_trip_keeps_dtype_values_and_alpha_bit_exact(dtype, shape):
    image = _image(dtype, shape)
    d = pixels.decode(image)
    assert d.rgb.shape == (3, 5, 7) and d.rgb.dtype == torch.float32
    assert 0 <= d.rgb.min() and d.rgb.max() <= 1
    out = pixels.encode(d.rgb, d)
    assert out.dtype == image.dtype
    channels = 1 if len(shape) == 2 else shape[2]
    assert d.channels == channels
    assert out.shape == (5, 7, 4 if channels in (2, 4) else 3)
    colour = image.reshape(5, 7, channels)[..., : 3 if channels >= 3 else 1]
    if np.dtype(dtype).kind == "u":
        assert np.array_equal(out[..., :3], np.broadcast_to(colour, (5, 7, 3)))
    else:
        assert np.abs(out[..., :3] - colour).max() < 1e-6
    if channels in (2, 4):
        assert d.alpha.dtype == image.dtype
        assert out[..., 3].tobytes() == image[..., -1].tobytes()
    else:
        assert d.alpha is None


def test_alpha_is_untouched_whatever_the_colour():
    image = _image(np.uint16, (6, 6, 4), seed=1)
    d = pixels.decode(image)
    out = pixels.encode(torch.rand(3, 6, 6), d)
    assert np.array_equal(out[..., 3], image[..., 3])


def test_integer_output_rounds_half_up_and_clamps():
    d = pixels.decode(np.zeros((1, 4, 3), np.uint8))
    v = torch.tensor([0.5 / 255, 1.49 / 255, -0.3, 1.7]).reshape(1, 1, 4).expand(3, 1, 4)
    assert pixels.encode(v, d)[0, :, 0].tolist() == [1, 1, 0, 255]


def test_grey_values_become_equal_rgb():
    d = pixels.decode(np.array([[0, 128, 255]], np.uint8))
    assert torch.equal(d.rgb[0], d.rgb[2])
    assert torch.allclose(d.rgb[1], torch.tensor([[0, 128 / 255, 1.0]]))


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 0), np.uint8), "empty"),
        (np.zeros((5,), np.uint8), "dimensions"),
        (np.zeros((2, 5, 5, 3), np.uint8), "dimensions"),
        (np.zeros((5, 5, 5), np.uint8), "5 channels"),
        (np.zeros((5, 5, 0), np.uint8), "0 channels"),
        (np.zeros((5, 5, 3), np.int32), "dtype int32"),
        (np.zeros((5, 5, 3), np.float16), "dtype float16"),
        (np.zeros((5, 5, 3), bool), "dtype bool"),
        (np.full((5, 5, 3), np.nan, np.float32), "NaN"),
        (np.full((5, 5, 4), np.inf, np.float64), "infinite"),
        (np.full((5, 5, 3), 1.5, np.float32), "0..1"),
        ([[0, 1], [1, 0]], "numpy array"),
    ],
)
def test_bad_input_raises_a_clear_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        pixels.decode(image)


def test_encode_rejects_colour_of_the_wrong_size():
    d = pixels.decode(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
        pixels.encode(torch.zeros(3, 4, 5), d)


@pytest.mark.cuda
def test_decode_onto_cuda_and_encode_back():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for dtype in (np.uint8, np.uint16, np.float32):
        image = _image(dtype, (9, 11, 4), seed=2)
        d = pixels.decode(image, device="cuda")
        assert d.rgb.device.type == "cuda"
        out = pixels.encode(d.rgb, d)
        assert out.dtype == image.dtype and out[..., 3].tobytes() == image[..., 3].tobytes()
        assert np.allclose(out.astype(np.float64), image.astype(np.float64), atol=1e-6)


def test_read_only_arrays_decode_without_warnings():
    image = _image(np.uint8, (4, 5, 3), seed=3)
    image.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = pixels.decode(image)
    assert np.array_equal(pixels.encode(d.rgb, d), image)


def _plain(monkeypatch):
    """The PyTorch paths: the native kernels switched off."""
    monkeypatch.setattr(kernels, "_kernels", None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_native_ends_match_the_pytorch_paths(monkeypatch, dtype, channels):
    """Lightness in and L + ab out in one native pass each give PyTorch's answer: L to float
    rounding, colours to one step of the 16-step gamut bisection (wildly out-of-gamut ab here)."""
    image = _image(dtype, SHAPES[channels](23, 31), seed=channels)
    ab = torch.randn(2, 23, 31, generator=torch.Generator().manual_seed(1)) * 80
    d = pixels.decode(image)
    L = pixels.lightness(d)
    out = pixels.encode_lab(L, ab, d)
    with monkeypatch.context() as m:
        _plain(m)
        L_plain = pixels.lightness(d)
        out_plain = pixels.encode_lab(L_plain, ab, d)
    assert L.shape == L_plain.shape == (1, 23, 31)
    assert torch.allclose(L, L_plain, atol=2e-5, rtol=0)
    assert out.dtype == out_plain.dtype == image.dtype and out.shape == out_plain.shape
    unit = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    tolerance = 1 / 255 if dtype == np.uint8 else 5e-4  # one 8-bit step; one of the 16 bisection steps
    assert np.abs(out.astype(np.float64) - out_plain.astype(np.float64)).max() / unit <= tolerance
    if channels in (2, 4):
        assert out[..., 3].tobytes() == np.ascontiguousarray(image[..., -1]).tobytes()
    # and the lightness it hands back is the photo's own: L of the output equals L, to 8-bit rounding
    back = pixels.lightness(pixels.decode(out[..., :3].copy()))
    assert (back - L).abs().max() < (0.5 if dtype == np.uint8 else 0.01)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_a_large_grey_photos_lightness_by_table_has_the_same_bits(dtype, channels):
    """A grey photo of more pixels than four times its codes takes its L from a table of every code's
    L: the same arithmetic as a pixel at a time (a small crop), so the same bits.  In an RGB photo
    the grey pixels take it, the coloured ones (a third here) the whole sum."""
    side = 100 if dtype == np.uint8 else 520
    image = _image(dtype, SHAPES[channels](side, side), seed=channels)
    if channels >= 3:
        grey = np.random.default_rng(7).random((side, side)) < 2 / 3
        image[grey, 1] = image[grey, 2] = image[grey, 0]
    L = pixels.lightness(pixels.decode(image))
    for y, x in ((0, 0), (side - 20, side - 20)):
        crop = np.ascontiguousarray(image[y:y + 20, x:x + 20])
        assert torch.equal(L[:, y:y + 20, x:x + 20], pixels.lightness(pixels.decode(crop)))


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
def test_native_ends_give_the_same_bytes_at_any_thread_count():
    image = _image(np.uint8, (67, 45, 3), seed=5)
    ab = torch.randn(2, 67, 45, generator=torch.Generator().manual_seed(2)) * 60
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            d = pixels.decode(image)
            L = pixels.lightness(d)
            outs.append((L.numpy().tobytes(), pixels.encode_lab(L, ab, d).tobytes()))
    finally:
        torch.set_num_threads(before)
    assert outs[0] == outs[1] == outs[2]


def test_float64_takes_the_pytorch_path_and_strided_pixels_work():
    image = _image(np.float64, (6, 8, 3), seed=6)
    d = pixels.decode(image)
    L = pixels.lightness(d)
    assert torch.allclose(L, lab.lightness(d.rgb))
    out = pixels.encode_lab(L, torch.zeros(2, 6, 8), d)
    assert out.dtype == np.float64 and out.shape == (6, 8, 3)
    strided = _image(np.uint8, (6, 16, 3), seed=7)[:, ::2]
    d = pixels.decode(strided)
    assert torch.allclose(pixels.lightness(d), lab.lightness(d.rgb), atol=2e-5)
    out = pixels.encode_lab(pixels.lightness(d), torch.zeros(2, 6, 8), d)
    assert out.flags.c_contiguous and out.shape == (6, 8, 3)


def test_nan_colour_never_reads_outside_the_tables():
    """A NaN from an engine must give some colour, not a crash: the 8-bit path indexes tables by value."""
    d = pixels.decode(np.full((3, 4), 120, np.uint8))
    ab = torch.full((2, 3, 4), float("nan"))
    out = pixels.encode_lab(pixels.lightness(d), ab, d)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
