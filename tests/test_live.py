"""The `live` quality: a proxy solve brought back to full size along the photo's own lightness.

Close to `final` on real photos, strokes exact at full resolution, and colour edges where the
full-resolution lightness edges are, not on the proxy's blocks.  (Its speed is measured in
benchmarks/levin.py, not here.)
"""
import numpy as np
import pytest
import torch
from PIL import Image

import tinct
from tinct import api
from tinct.engines import QUALITIES
from tinct.engines.optimization import levin, proxy
from tinct.training import measure


def photo_inputs(name_index: int, size: tuple[int, int], hints: int = 60):
    name, full = list(measure.eval_images(size=None))[name_index]
    rgb = np.asarray(Image.fromarray(full).resize(size, Image.Resampling.LANCZOS))
    grey = measure.gray_of(rgb)
    layer = measure.hints_of(rgb, hints, np.random.default_rng(name_index))
    return name, rgb, grey, layer


def to_rgb(L, ab):
    from tinct.color import lab
    return (lab.lab_to_srgb_keep_l(L, ab).clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()


def test_live_is_a_quality_everywhere():
    assert "live" in QUALITIES
    grey = np.full((40, 60), 128, np.uint8)
    hints = np.zeros((40, 60, 4), np.uint8)
    hints[5:9, 5:9] = (200, 60, 40, 255)
    out = tinct.colorize(grey, hints, quality="live")
    assert out.shape == (40, 60, 3) and int(out[..., 0].max()) > int(out[..., 2].max())


@pytest.mark.parametrize("index, size, pixels", [(0, (384, 256), 12_000), (30, (500, 500), 30_000)])
def test_live_is_close_to_final_and_keeps_strokes_exact(monkeypatch, index, size, pixels):
    """Measured (LIVE_PIXELS shrunk so the proxy is 3-4x smaller per side, as at 12 MP):
    33-37 dB between live and final here, 37.7-38.8 dB on 1 MP Kodak photos with 100 strokes."""
    monkeypatch.setattr(proxy, "LIVE_PIXELS", pixels)
    _, rgb, grey, layer = photo_inputs(index, size)
    _, L, hint_ab, hint_w = api.prepare(grey, layer)
    live, info = levin.solve_ab(L, hint_ab, hint_w, quality="live")
    assert info["proxy"][0] * info["proxy"][1] <= pixels < live.shape[-1] * live.shape[-2]
    final, _ = levin.solve_ab(L, hint_ab, hint_w, quality="final")
    live_rgb, final_rgb = to_rgb(L, live), to_rgb(L, final)
    assert measure.psnr(live_rgb, final_rgb) > 30.0
    # and it is as close to the photo as final, within a dB (here it is often closer: it is smoother)
    live_db, final_db = measure.psnr(live_rgb, rgb), measure.psnr(final_rgb, rgb)
    assert live_db > final_db - 1.0
    fixed = hint_w[0] >= levin.FIXED
    assert fixed.any()
    assert torch.equal(live[:, fixed], hint_ab[:, fixed])


def test_colour_edges_follow_full_resolution_lightness(monkeypatch):
    """A lightness edge between proxy blocks (column 101 of 200, proxy factor 4) with a different
    stroke either side: live puts the colour change on the very column the lightness changes,
    where the proxy's colour plainly upsampled smears it over several pixels."""
    monkeypatch.setattr(proxy, "LIVE_PIXELS", 200 * 200 // 16)
    h = w = 200
    edge = 101
    L = torch.full((1, h, w), 35.0)
    L[..., edge:] = 70.0
    L += torch.randn(L.shape, generator=torch.Generator().manual_seed(0)) * 0.3  # a little grain
    ab = torch.zeros(2, h, w)
    weight = torch.zeros(1, h, w)
    left, right = torch.tensor([40.0, 30.0]), torch.tensor([-20.0, -45.0])
    ab[:, 90:110, 20:30], weight[:, 90:110, 20:30] = left[:, None, None], 1.0
    ab[:, 90:110, 170:180], weight[:, 90:110, 170:180] = right[:, None, None], 1.0
    live, info = levin.solve_ab(L, ab, weight, quality="live")
    assert info["proxy"] == (50, 50)
    a = live[0]
    assert (a[:, :edge] - left[0]).abs().max() < 3.0
    assert (a[:, edge:] - right[0]).abs().max() < 3.0
    # the same proxy colour upsampled without the lightness: blocky / blurred across the edge
    small = proxy.shrink(L, 4)
    small_ab, small_w = proxy.shrink_hints(ab, weight, 4)
    coarse, _ = levin.solve_ab(small, small_ab, small_w, quality="live")
    plain = torch.nn.functional.interpolate(coarse[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    assert (plain[0, :, edge - 2:edge + 2] - left[0]).abs().max() > 10.0


def test_live_with_a_prior_map(monkeypatch):
    """The learned engine's prior (a map of weights) is shrunk with the photo."""
    monkeypatch.setattr(proxy, "LIVE_PIXELS", 2_000)
    L = torch.linspace(20, 80, 120).repeat(1, 90, 1)
    prior = torch.stack([torch.full((90, 120), 25.0), torch.full((90, 120), -10.0)])
    out, info = levin.solve_ab(L, torch.zeros(2, 90, 120), torch.zeros(1, 90, 120), prior_ab=prior,
                               prior_weight=torch.ones(1, 90, 120), quality="live")
    assert info["proxy"][0] < 90
    torch.testing.assert_close(out, prior, atol=1.0, rtol=0)  # a loose solve: 0.6 at most here


def test_c_upsampling_matches_pytorch(monkeypatch):
    """The C loop and the plain-PyTorch path (CUDA, or no C build) give the same colours."""
    g = torch.Generator().manual_seed(1)
    for shape, f in (((37, 50), 4), ((64, 30), 3), ((9, 9), 5)):
        guide = torch.rand(shape, generator=g) * 100
        small = proxy.shrink(guide[None], f)[0]
        value = torch.randn((2,) + small.shape, generator=g) * 30
        fast = proxy.upsample(guide, small, value, f)
        monkeypatch.setattr(proxy.kernels, "cpu_fused", lambda *t: False)
        plain = proxy.upsample(guide, small, value, f)
        monkeypatch.undo()
        torch.testing.assert_close(fast, plain, atol=1e-3, rtol=1e-4)
