"""A painted hints layer -> the (ab, weight) constraints the engines consume.

The user paints with any colour on an RGBA layer; only the colour's chroma (Lab a,b) is a hint,
its lightness is ignored because the photo's lightness is kept. Alpha says how sure the stroke
is, so it becomes the hint's weight.
"""
import numpy as np
import torch
import torch.nn.functional as F

from . import lab, pixels


def check_size(hints: np.ndarray, image_shape: tuple[int, ...]) -> None:
    """Refuse a hints layer whose pixels do not line up with the photo's."""
    (hh, hw), (ih, iw) = hints.shape[:2], tuple(image_shape[:2])
    if (hh, hw) != (ih, iw):
        raise ValueError(
            f"hints layer is {hw}x{hh} but the photo is {iw}x{ih}; paint the hints on a layer the size of the photo"
        )


def from_layer(layer: np.ndarray, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RGBA layer (H, W, 4), uint8/uint16/float -> ab (2, H, W) and weight (1, H, W) in 0..1.

    Pixels with alpha 0 carry no hint: weight 0 and ab 0.  Only the painted pixels are converted
    (strokes cover a small part of a 12 MP layer).
    """
    shape = getattr(layer, "shape", None)
    if shape is None or len(shape) != 3 or shape[2] != 4:
        raise ValueError(f"hints layer must be an RGBA array of shape (H, W, 4), got shape {shape}")
    d = pixels.decode(layer, device=device)
    assert d.alpha is not None  # four channels: decode kept the fourth as alpha
    weight = pixels.to_unit(d.alpha, d.device)[None]
    h, w = d.size
    ab = torch.zeros((2, h * w), device=d.device)
    painted = np.flatnonzero(d.alpha)
    if painted.size:
        rgb = pixels.to_unit(d.planes.reshape(-1, 4)[painted, :3], d.device)  # (N, 3)
        ab[:, torch.from_numpy(painted).to(d.device)] = lab.srgb_to_lab(rgb.T[:, :, None])[1:, :, 0]
    return ab.view(2, h, w), weight


def downsample(ab: torch.Tensor, weight: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize hints to a working resolution (h, w) by area averaging.

    Weight is area-averaged and ab is the weight-weighted mean, so a 1-px stroke shrunk 8x keeps
    its exact colour with weight ~1/8 instead of vanishing as point sampling would make it.
    """
    w = F.adaptive_avg_pool2d(weight, size)
    abw = F.adaptive_avg_pool2d(ab * weight, size)
    return torch.where(w > 0, abw / w.clamp_min(torch.finfo(w.dtype).tiny), 0.0), w
