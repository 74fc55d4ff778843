import numpy as np
import pytest
import torch
from skimage import color

from tinct.color import lab

TOL_LAB = 0.05  # the bar against skimage, in L, a, b units


def _hwc(x):
    return np.moveaxis(np.asarray(x, dtype=np.float64), -3, -1)


def _chw(x):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))


def _edge_rgb():
    """Black, white, primaries, secondaries, greys, and values around both sRGB/Lab knees."""
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
    knees = np.array([0.04045, 0.04045 * 255 / 256, 1e-6, 1 / 255, 2 / 255, 0.0031308 * 12.92, 0.5])
    near_zero = np.stack([knees, knees[::-1], np.roll(knees, 1)], axis=1)
    greys = np.repeat(np.linspace(0, 1, 11)[:, None], 3, axis=1)
    return np.concatenate([corners, near_zero, greys])[None]  # (1, N, 3)


def _random_lab(rng, n, ab_range):
    return np.stack(
        [rng.uniform(0, 100, n), rng.uniform(-ab_range, ab_range, n), rng.uniform(-ab_range, ab_range, n)],
        axis=-1,
    )[None]


def test_rgb_to_lab_matches_skimage_on_random_and_edge_colours():
    rng = np.random.default_rng(1)
    rgb = np.concatenate([rng.random((1, 5000, 3)), _edge_rgb()], axis=1)
    got = lab.srgb_to_lab(_chw(rgb).float())
    assert got.dtype == torch.float32
    assert np.abs(_hwc(got) - color.rgb2lab(rgb)).max() <= TOL_LAB


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(2)
    lab_in = np.concatenate([_random_lab(rng, 5000, 60), _random_lab(rng, 5000, 200)], axis=1)
    lab_in[0, :6] = [[0, 0, 0], [100, 0, 0], [50, 150, -150], [50, -150, 150], [1, 90, 90], [99, -90, -90]]
    with pytest.warns(UserWarning):  # skimage warns about the negative Z it clips, as we do silently
        ref = color.lab2rgb(lab_in)
    got = _hwc(lab.lab_to_srgb(_chw(lab_in).float()))
    assert np.abs(got - ref).max() <= 1e-4
    # and back to Lab within the oracle tolerance where the colour was representable
    back = color.rgb2lab(got)
    inside = np.abs(ref - _hwc(lab.lab_to_srgb(_chw(lab_in).float(), clip=False))).max(-1) < 1e-6
    assert inside.sum() > 1000
    assert np.abs(back - lab_in)[inside].max() <= TOL_LAB


def test_unclipped_lab_to_rgb_is_invertible_outside_the_gamut():
    rng = np.random.default_rng(3)
    lab_in = _random_lab(rng, 4000, 150)
    lab_in[..., 2] = np.minimum(lab_in[..., 2], 200 * (lab_in[..., 0] + 16) / 116)  # keep Z >= 0
    rgb = lab.lab_to_srgb(_chw(lab_in).float(), clip=False)
    assert rgb.min() < -0.1 and rgb.max() > 1.1  # the test really exercises out-of-gamut colours
    assert np.abs(_hwc(lab.srgb_to_lab(rgb)) - lab_in).max() <= TOL_LAB


def test_float64_stays_float64_and_matches_skimage_tightly():
    rgb = np.random.default_rng(4).random((1, 300, 3))
    got = lab.srgb_to_lab(_chw(rgb))
    assert got.dtype == torch.float64
    assert np.abs(_hwc(got) - color.rgb2lab(rgb)).max() < 1e-9
    assert np.abs(_hwc(lab.lab_to_srgb(got)) - rgb).max() < 1e-9


def test_any_input_dtype_and_batch_dims():
    u8 = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    as_float = lab.srgb_to_lab(u8.float() / 255)
    assert torch.allclose(lab.srgb_to_lab(u8), as_float)
    assert torch.allclose(lab.srgb_to_lab((u8.float() / 255).half()), as_float, atol=0.2)
    assert torch.allclose(lab.srgb_to_lab(u8.float() / 255)[1], lab.srgb_to_lab(u8[1].float() / 255))


@pytest.mark.parametrize(
    "call",
    [
        lambda: lab.srgb_to_lab(torch.zeros(4, 4, 3)),
        lambda: lab.srgb_to_lab(torch.zeros(3, 4)),
        lambda: lab.lab_to_srgb(torch.zeros(2, 4, 4)),
        lambda: lab.lab_to_srgb_keep_l(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4)),
        lambda: lab.lab_to_srgb_keep_l(torch.zeros(1, 4, 4), torch.zeros(3, 4, 4)),
    ],
)
def test_wrong_shapes_raise_value_error(call):
    with pytest.raises(ValueError, match="channels first"):
        call()


def _keep_l_case(device):
    g = torch.Generator().manual_seed(5)
    L = torch.rand(1, 1, 128, 128, generator=g) * 100
    ab = (torch.rand(1, 2, 128, 128, generator=g) - 0.5) * 600  # mostly far outside sRGB
    L[0, 0, :4] = torch.tensor([0.0, 100.0, 0.01, 99.99])[:, None]  # extreme rows
    return L.to(device), ab.to(device)


def _check_keep_l(device):
    L, ab = _keep_l_case(device)
    rgb = lab.lab_to_srgb_keep_l(L, ab)
    assert rgb.shape == (1, 3, 128, 128) and rgb.device.type == device
    assert rgb.min() >= 0 and rgb.max() <= 1
    out = lab.srgb_to_lab(rgb)
    assert (out[:, :1] - L).abs().max() <= 1e-3
    # Chroma is reduced, hue kept: the output ab points the way the requested ab did.
    chroma = out[:, 1:].norm(dim=1)
    assert (chroma <= ab.norm(dim=1) + 1e-3).all()
    strong = chroma > 5
    cos = (out[:, 1:] * ab).sum(1) / (chroma * ab.norm(dim=1))
    assert strong.sum() > 1000 and cos[strong].min() > 0.999
    # 8-bit output still carries the requested lightness within half a unit.
    rgb8 = np.floor(rgb[0].cpu().numpy() * 255 + 0.5).astype(np.uint8)
    L8 = color.rgb2lab(np.moveaxis(rgb8, 0, -1))[..., 0]
    assert np.abs(L8 - L[0, 0].cpu().numpy()).max() <= 0.5


def test_keep_l_keeps_lightness_for_wildly_out_of_gamut_ab():
    _check_keep_l("cpu")


def test_keep_l_leaves_in_gamut_colours_alone():
    rgb = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(6))
    lab_in = lab.srgb_to_lab(rgb)
    assert torch.allclose(lab.lab_to_srgb_keep_l(lab_in[:1], lab_in[1:]), rgb, atol=1e-5)


def test_network_normalisation_round_trips():
    ab = torch.tensor([-110.0, 0.0, 55.0])
    assert torch.equal(lab.normalize_ab(ab), torch.tensor([-1.0, 0.0, 0.5]))
    assert torch.allclose(lab.denormalize_ab(lab.normalize_ab(ab)), ab)
    assert torch.equal(lab.normalize_l(torch.tensor([0.0, 50.0, 100.0])), torch.tensor([-0.5, 0.0, 0.5]))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rgb = torch.rand(2, 3, 64, 64)
    assert torch.allclose(lab.srgb_to_lab(rgb.cuda()).cpu(), lab.srgb_to_lab(rgb), atol=1e-3)
    lab_in = lab.srgb_to_lab(rgb)
    assert torch.allclose(lab.lab_to_srgb(lab_in.cuda()).cpu(), lab.lab_to_srgb(lab_in), atol=1e-5)
    _check_keep_l("cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_lightness_is_srgb_to_labs_l_to_the_last_rounding(dtype):
    """The engines read only L from the photo: `lightness` must give srgb_to_lab's L (the one-row mix
    may round its last bit differently from the three-row one)."""
    rgb = torch.rand(2, 3, 17, 23, dtype=torch.float64)
    rgb[0, :, 0, :4] = torch.tensor([0.0, 0.04045, 1.0, 0.5])[None]  # black, the curve's knee, white, grey
    rgb = (rgb * 255).round().to(dtype) if dtype == torch.uint8 else rgb.to(dtype)
    L = lab.lightness(rgb)
    assert L.shape == (2, 1, 17, 23)
    full = lab.srgb_to_lab(rgb)[:, :1]
    assert L.dtype == full.dtype
    torch.testing.assert_close(L, full, atol=1e-10 if dtype == torch.float64 else 2e-5, rtol=0)
    with pytest.raises(ValueError, match="channels first"):
        lab.lightness(torch.rand(17, 23, 3))
