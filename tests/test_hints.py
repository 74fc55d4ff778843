import numpy as np
import pytest
import torch
from skimage import color

from tinct.color import hints


def _layer(seed=0):
    """A 32x40 layer: random colours, alpha 0 on half the pixels (with junk RGB under it)."""
    rng = np.random.default_rng(seed)
    layer = rng.integers(0, 256, (32, 40, 4)).astype(np.uint8)
    layer[..., 3][rng.random((32, 40)) < 0.5] = 0
    return layer


def test_from_layer_gives_lab_ab_of_the_rgb_weighted_by_alpha():
    layer = _layer()
    ab, weight = hints.from_layer(layer)
    assert ab.shape == (2, 32, 40) and weight.shape == (1, 32, 40)
    painted = layer[..., 3] > 0
    expected = np.moveaxis(color.rgb2lab(layer[..., :3])[..., 1:], -1, 0)
    assert np.abs(ab.numpy()[:, painted] - expected[:, painted]).max() < 0.05
    assert np.array_equal(weight[0].numpy(), layer[..., 3] / np.float32(255))
    assert (ab[:, ~torch.from_numpy(painted)] == 0).all()


def test_lightness_of_the_paint_is_ignored():
    # Same chroma, three lightnesses: the hint is the same ab.
    lab = np.array([[[30.0, 20.0, -25.0], [55.0, 20.0, -25.0], [80.0, 20.0, -25.0]]])
    layer = np.concatenate([color.lab2rgb(lab), np.ones((1, 3, 1))], axis=2)
    ab, _ = hints.from_layer(layer)
    assert torch.allclose(ab, torch.tensor([20.0, -25.0])[:, None, None].expand(2, 1, 3), atol=0.01)


@pytest.mark.parametrize("dtype, scale", [(np.uint16, 257), (np.float32, 1 / 255), (np.float64, 1 / 255)])
def test_every_supported_depth_gives_the_same_hints(dtype, scale):
    layer = _layer(1)
    ab8, w8 = hints.from_layer(layer)
    ab, w = hints.from_layer((layer.astype(np.float64) * scale).astype(dtype))
    assert torch.allclose(ab, ab8, atol=1e-3) and torch.allclose(w, w8, atol=1e-6)


@pytest.mark.parametrize(
    "layer, message",
    [
        (np.zeros((8, 8, 3), np.uint8), r"\(H, W, 4\)"),
        (np.zeros((8, 8), np.uint8), r"\(H, W, 4\)"),
        (np.zeros((8, 8, 4, 1), np.uint8), r"\(H, W, 4\)"),
        ([[0, 0, 0, 0]], r"\(H, W, 4\)"),
        (np.zeros((8, 8, 4), np.int16), "dtype"),
        (np.full((8, 8, 4), np.nan, np.float32), "NaN"),
        (np.zeros((0, 8, 4), np.uint8), "empty"),
    ],
)
def test_bad_layers_raise_value_error(layer, message):
    with pytest.raises(ValueError, match=message):
        hints.from_layer(layer)


def test_check_size_names_both_sizes():
    hints.check_size(np.zeros((480, 640, 4)), (480, 640, 3))
    with pytest.raises(ValueError, match="hints layer is 640x480 but the photo is 800x600"):
        hints.check_size(np.zeros((480, 640, 4)), (600, 800))


def _stroke(h, w, col, ab=(40.0, -30.0)):
    """A 1-pixel-wide vertical stroke at column `col`, full opacity."""
    a = torch.zeros(2, h, w)
    a[:, :, col] = torch.tensor(ab)[:, None]
    weight = torch.zeros(1, h, w)
    weight[0, :, col] = 1
    return a, weight


def test_thin_stroke_survives_8x_reduction_with_its_exact_colour():
    ab, w = hints.downsample(*_stroke(64, 64, 13), (8, 8))
    assert torch.allclose(w[0, :, 1], torch.full((8,), 1 / 8))
    assert (w[0, :, [0, 2, 3, 4, 5, 6, 7]] == 0).all()
    assert torch.allclose(ab[:, :, 1], torch.tensor([40.0, -30.0])[:, None].expand(2, 8), atol=1e-5)
    assert (ab[:, :, 0] == 0).all()


@pytest.mark.parametrize("size", [(10, 10), (23, 37), (7, 50)])
def test_thin_stroke_survives_non_integer_factors(size):
    ab, w = hints.downsample(*_stroke(64, 100, 41), size)
    assert ab.shape == (2, *size) and w.shape == (1, *size)
    hit = w[0] > 0
    assert hit.any(dim=1).all()  # every output row still sees the stroke
    assert torch.allclose(ab[:, hit], torch.tensor([40.0, -30.0])[:, None].expand(2, int(hit.sum())), atol=1e-4)
    assert torch.isfinite(ab).all() and (ab[:, ~hit] == 0).all()


def test_overlapping_strokes_average_by_weight():
    ab = torch.zeros(2, 2, 2)
    ab[:, 0, 0] = torch.tensor([60.0, 0.0])
    ab[:, 1, 1] = torch.tensor([0.0, -30.0])
    weight = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]])
    out_ab, out_w = hints.downsample(ab, weight, (1, 1))
    assert torch.allclose(out_w, torch.tensor([[[0.375]]]))
    assert torch.allclose(out_ab[:, 0, 0], torch.tensor([40.0, -10.0]))


def test_no_hints_downsample_to_zero_without_nan():
    ab, w = hints.downsample(torch.zeros(2, 30, 30), torch.zeros(1, 30, 30), (7, 9))
    assert (ab == 0).all() and (w == 0).all()


@pytest.mark.cuda
def test_from_layer_and_downsample_on_cuda_match_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    layer = _layer(2)
    ab, w = hints.from_layer(layer, device="cuda")
    assert ab.device.type == "cuda" and w.device.type == "cuda"
    ab_cpu, w_cpu = hints.from_layer(layer)
    # alpha / 255: the CPU multiplies by the reciprocal, CUDA divides (one rounding apart)
    assert torch.allclose(ab.cpu(), ab_cpu, atol=1e-3) and torch.allclose(w.cpu(), w_cpu, rtol=1e-6, atol=0)
    small, small_w = hints.downsample(ab, w, (9, 11))
    ref, ref_w = hints.downsample(ab_cpu, w_cpu, (9, 11))
    assert torch.allclose(small.cpu(), ref, atol=1e-3) and torch.allclose(small_w.cpu(), ref_w)
