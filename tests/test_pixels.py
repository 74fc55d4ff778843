import warnings

import numpy as np
import pytest
import torch

from tinct.color import pixels

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
