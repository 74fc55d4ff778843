"""The `live` quality's two halves: a proxy of the problem a few times smaller, and the way back.

Live answers while the user paints, so it solves on a proxy of about LIVE_PIXELS (every side
shrunk by one integer factor, pixels area-averaged) and brings the colour back to full size
by joint bilateral upsampling (Kopf et al. 2007): each full-size pixel takes the colour of its
nearest proxy pixels, weighted by distance and by how close their lightness is to its own.
Colour edges so land where the photo's own full-resolution lightness edges are, not on the
proxy's blocks.  (The fast guided filter, a linear fit of colour to lightness per window, was
tried first: a step in colour across an edge is no line, and it overshot by 10 ab units there.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tinct.native import kernels

LIVE_PIXELS = 500_000  # about this many pixels in the proxy (0.5 MP: a few hundred ms on two cores)
# How fast a proxy pixel's say falls with its lightness difference (L units) from the pixel being
# filled: exp(-dL^2 / (2 x 6^2)), so a neighbour across an edge of 20 L units counts 1/250.
RANGE_SCALE = 1 / (2 * 6.0 ** 2)


def factor(shape: tuple[int, ...] | torch.Size, pixels: int | None = None) -> int:
    """The smallest integer shrink factor that brings `shape` to at most `pixels` (1: no proxy)."""
    pixels = LIVE_PIXELS if pixels is None else pixels
    h, w = shape
    f = max(1, math.floor(math.sqrt(h * w / pixels)))
    while -(-h // f) * -(-w // f) > pixels:
        f += 1
    return f


def shrink(x: torch.Tensor, f: int) -> torch.Tensor:
    """Area average of (C, H, W) over f x f blocks; the blocks at the far edges may be partial."""
    return F.avg_pool2d(x[None], f, ceil_mode=True)[0]


def shrink_hints(hint_ab: torch.Tensor, hint_weight: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Strokes (ab (2, H, W), weight (1, H, W)) for the proxy: a block is as sure as its surest
    pixel (a thin stroke still fixes its blocks) and takes its strokes' weight-averaged colour."""
    weight = F.max_pool2d(hint_weight[None], f, ceil_mode=True)[0]
    mass = shrink(hint_weight, f)
    ab = shrink(hint_ab * hint_weight, f) / mass.clamp_min(torch.finfo(mass.dtype).tiny)
    return torch.where(mass > 0, ab, torch.zeros_like(ab)), weight


def _corners(n: int, f: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis of n fine pixels: the two nearest proxy pixels of each and the second's weight."""
    m = -(-n // f)
    pos = ((torch.arange(n, device=device, dtype=torch.float32) + 0.5) / f - 0.5).clamp_min(0)
    lo = pos.floor().long().clamp_max(m - 1)
    return lo, (lo + 1).clamp_max(m - 1), (pos - lo).clamp_max(1)


def upsample(guide: torch.Tensor, guide_small: torch.Tensor, value_small: torch.Tensor, f: int) -> torch.Tensor:
    """value (C, H, W) at full size from its proxy value_small (C, h, w), h = ceil(H / f): each
    pixel mixes its 2x2 nearest proxy pixels bilinearly and by how close their lightness
    (guide_small, the guide shrunk by `shrink`) is to its own (guide (H, W), 0..100)."""
    guide, guide_small, value_small = guide.contiguous(), guide_small.contiguous(), value_small.contiguous()
    out = value_small.new_empty(value_small.shape[:1] + guide.shape)
    if kernels.cpu_fused(out, value_small, guide, guide_small):
        return kernels.upsample(out, value_small, guide, guide_small, f, RANGE_SCALE)
    (y0, y1, ty), (x0, x1, tx) = (_corners(n, f, guide.device) for n in guide.shape)
    total = torch.zeros_like(guide)
    out.zero_()
    for rows, wy in ((y0, 1 - ty), (y1, ty)):
        for cols, wx in ((x0, 1 - tx), (x1, tx)):
            near = guide_small[rows][:, cols]
            wt = wy[:, None] * wx[None, :] * torch.exp(-(guide - near) ** 2 * RANGE_SCALE)
            out += wt * value_small[:, rows][:, :, cols]
            total += wt
    return out / total.clamp_min(1e-20)
