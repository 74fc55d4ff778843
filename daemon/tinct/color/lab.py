"""sRGB <-> CIE Lab (D65, 2° observer) in PyTorch, channel-first, on any device.

Written once for the whole project so that every engine, the daemon and the measurements agree on
what "lightness" and "colour" mean. The constants are scikit-image's (sRGB matrix, D65 white,
7.787 / 0.008856 knee), so its `rgb2lab`/`lab2rgb` serve as the test oracle. Maths runs in float32
(what the GPU is fast at); float64 input stays float64 so measurements can match the reference
protocol bit for bit.
"""
import math
from functools import cache

import torch

L_CENTER = 50.0
L_SCALE = 100.0
AB_SCALE = 110.0

_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE = (0.95047, 1.0, 1.08883)
_BISECTION_STEPS = 16  # chroma to 2**-16 of the request: < 0.005 in a,b, far below visible


def normalize_l(L: torch.Tensor) -> torch.Tensor:
    """Lightness 0..100 -> network input centred on 0."""
    return (L - L_CENTER) / L_SCALE


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """Lab a,b -> network scale (roughly -1..1 for sRGB colours)."""
    return ab / AB_SCALE


def denormalize_ab(x: torch.Tensor) -> torch.Tensor:
    """Network output -> Lab a,b."""
    return x * AB_SCALE


@cache
def _constants(device, dtype):
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)
    white = torch.tensor(_WHITE, dtype=torch.float64)
    # White folded into the matrices: one matmul per direction, inverse computed in float64.
    xyz_from_rgb = m / white[:, None]
    rgb_from_xyz = torch.linalg.inv(m) * white[None, :]
    return xyz_from_rgb.to(device, dtype), rgb_from_xyz.to(device, dtype)


def linear_table(levels: int) -> torch.Tensor:
    """The linear value of every integer code 0..levels-1 (256 or 65536), float32 on the CPU:
    how the native kernels decode integer pixels (the same arithmetic as `_srgb_to_linear`)."""
    return _linear_tables(levels)


@cache
def _linear_tables(levels):
    return _srgb_to_linear(torch.arange(levels, dtype=torch.float32) / (levels - 1)).contiguous()


@cache
def native_constants() -> tuple[torch.Tensor, torch.Tensor]:
    """For the native kernels, float32 on the CPU: Y's row of the RGB -> XYZ/white matrix (3,), and
    XYZ/white -> RGB (9) followed by where the sRGB curve rounds to each 8-bit code: the linear
    values where codes 1..255 begin, then +inf (256), and the code at each linear value k / 4096
    (4097; a bucket that narrow holds at most one start, even on the curve's steep dark end)."""
    xyz_from_rgb, rgb_from_xyz = _constants(torch.device("cpu"), torch.float32)
    starts = _srgb_to_linear((torch.arange(255, dtype=torch.float32) + 0.5) / 255)
    codes = torch.searchsorted(starts, torch.arange(4097, dtype=torch.float32) / 4096, right=True)
    ends = torch.tensor([math.inf])
    return xyz_from_rgb[1].contiguous(), torch.cat([rgb_from_xyz.reshape(9), starts, ends, codes.float()])


def _float(x):
    """Float32 working copy, float64 kept; integer images are read as 0..max like skimage does."""
    if x.dtype == torch.float64:
        return x
    if not (x.is_floating_point() or x.dtype == torch.bool):
        return x.to(torch.float32) / torch.iinfo(x.dtype).max
    return x.to(torch.float32)


def _check(x, channels, name):
    if x.dim() < 3 or x.shape[-3] != channels:
        raise ValueError(
            f"{name} must have shape (..., {channels}, H, W), channels first; got {tuple(x.shape)}"
        )


def _mix(matrix, x):
    return torch.einsum("ij,...jhw->...ihw", matrix, x)


def _srgb_to_linear(rgb):
    # clamp_min keeps the unused branch of `where` finite (no NaN from a negative power).
    curve = ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > 0.04045, curve, rgb / 12.92)


def _linear_to_srgb(lin):
    curve = 1.055 * lin.clamp_min(0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(lin > 0.0031308, curve, lin * 12.92)


def _lab_to_linear(L, a, b, clamp_z):
    """Linear RGB of Lab; clamp_z mirrors skimage (negative Z is physically impossible)."""
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = fy - b / 200.0
    if clamp_z:
        fz = fz.clamp_min(0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    t = torch.where(f > 0.2068966, f.clamp_min(0.2068966) ** 3, (f - 16.0 / 116.0) / 7.787)
    return _mix(_constants(L.device, L.dtype)[1], t)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """rgb (..., 3, H, W) in 0..1 -> Lab (L 0..100, a,b unbounded)."""
    _check(rgb, 3, "rgb")
    rgb = _float(rgb)
    t = _mix(_constants(rgb.device, rgb.dtype)[0], _srgb_to_linear(rgb))
    f = torch.where(t > 0.008856, t.clamp_min(0.008856) ** (1 / 3), 7.787 * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """rgb (..., 3, H, W) in 0..1 -> L (..., 1, H, W): srgb_to_lab's L without a and b, which the
    engines never read from the photo (only Y is mixed and only it takes a cube root)."""
    _check(rgb, 3, "rgb")
    rgb = _float(rgb)
    y = _mix(_constants(rgb.device, rgb.dtype)[0][1:2], _srgb_to_linear(rgb))
    f = torch.where(y > 0.008856, y.clamp_min(0.008856) ** (1 / 3), 7.787 * y + 16.0 / 116.0)
    return 116.0 * f - 16.0


def lab_to_srgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Lab (..., 3, H, W) -> sRGB; out-of-gamut colours are clipped per channel (shifting L),
    or left outside 0..1 with clip=False."""
    _check(lab, 3, "lab")
    L, a, b = _float(lab).unbind(dim=-3)
    rgb = _linear_to_srgb(_lab_to_linear(L, a, b, clamp_z=True))
    return rgb.clamp(0.0, 1.0) if clip else rgb


def _in_gamut(lin):
    return ((lin >= 0.0) & (lin <= 1.0)).all(dim=-3)


def lab_to_srgb_keep_l(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L (..., 1, H, W), ab (..., 2, H, W) -> sRGB in 0..1 whose lightness is exactly L.

    Clipping an out-of-gamut colour per channel changes its lightness; instead its ab is scaled
    towards grey (same hue, less chroma) until it fits, so every engine keeps the photo's L.
    The scale is found by bisection, only on the offending pixels. L is clamped to 0..100, the
    lightness range sRGB can show.
    """
    _check(L, 1, "L")
    _check(ab, 2, "ab")
    L = _float(L).clamp(0.0, 100.0)
    ab = _float(ab).to(L.dtype)
    l0, a, b = torch.broadcast_tensors(L[..., 0, :, :], ab[..., 0, :, :], ab[..., 1, :, :])
    lin = _lab_to_linear(l0, a, b, clamp_z=False)
    out = ~_in_gamut(lin)
    if out.any():
        # Offending pixels as a (N, 1, 1) batch of 1x1 images, so the same helpers apply.
        ol, oa, ob = (t[out][:, None, None] for t in (l0, a, b))
        lo = torch.zeros_like(ol)
        hi = torch.ones_like(ol)
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            fits = _in_gamut(_lab_to_linear(ol, mid * oa, mid * ob, clamp_z=False))
            lo = torch.where(fits, mid, lo)
            hi = torch.where(fits, hi, mid)
        scale = torch.ones_like(l0)
        scale[out] = lo[:, 0, 0]
        lin = _lab_to_linear(l0, scale * a, scale * b, clamp_z=False)
    # The clamp only trims float rounding (and the 1e-4 mismatch of skimage's white at L=100).
    return _linear_to_srgb(lin.clamp(0.0, 1.0))
