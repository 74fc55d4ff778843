"""Editor pixels (numpy, any supported depth and layout) <-> the engines' float RGB tensor.

Engines only ever see (3, H, W) float32 in 0..1; everything about the caller's format (depth,
grey or colour, alpha) is remembered in `Decoded` so `encode` can hand back the same format.
Alpha is kept as the caller's own array and re-attached unchanged: colorization must never
touch transparency.
"""
from dataclasses import dataclass

import numpy as np
import torch

_INT_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Decoded:
    rgb: torch.Tensor  # (3, H, W) float32 in 0..1
    alpha: np.ndarray | None  # (H, W), the input's dtype and values
    dtype: np.dtype
    channels: int  # 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA


def _validate(image):
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in _INT_MAX and image.dtype not in _FLOATS:
        raise ValueError(
            f"image dtype {image.dtype} is not supported; use uint8, uint16, float32 or float64 (0..1)"
        )
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got {image.ndim} dimensions {image.shape}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if not 1 <= channels <= 4:
        raise ValueError(f"image has {channels} channels; expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty ({image.shape[0]}x{image.shape[1]} pixels)")
    if image.dtype in _FLOATS:
        if not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
        lo, hi = image.min(), image.max()
        if lo < 0 or hi > 1:
            raise ValueError(f"float image values must lie in 0..1, found {lo:g}..{hi:g}")
    return channels


def to_unit(array: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Supported-dtype array -> float32 tensor in 0..1 of the same shape on `device`."""
    if array.dtype == np.uint8:  # moved as bytes, converted on the device
        # torch shares memory with the array, so it must be writable (Pillow's arrays are not).
        return torch.from_numpy(np.require(array, requirements=["C", "W"])).to(device).to(torch.float32) / 255
    t = torch.from_numpy(array.astype(np.float32)).to(device)
    return t / 65535 if array.dtype == np.uint16 else t


def decode(image: np.ndarray, device: torch.device | str | None = None) -> Decoded:
    """Validate an editor image and return its colour as a float32 (3, H, W) tensor on `device`."""
    channels = _validate(image)
    planes = image.reshape(image.shape[0], image.shape[1], channels)
    colour = planes[..., : 3 if channels >= 3 else 1]
    alpha = planes[..., channels - 1].copy() if channels in (2, 4) else None
    rgb = to_unit(colour, device).permute(2, 0, 1).expand(3, -1, -1).contiguous()
    return Decoded(rgb=rgb, alpha=alpha, dtype=image.dtype, channels=channels)


def encode(rgb: torch.Tensor, decoded: Decoded) -> np.ndarray:
    """(3, H, W) colour in 0..1 -> numpy in the decoded image's dtype, alpha re-attached.

    Grey inputs come back as RGB (grey+alpha as RGBA): the result has colour. Integer outputs
    round half up, value * max + 0.5 floored, so decode -> encode is lossless.
    """
    h, w = decoded.rgb.shape[1:]
    if rgb.shape != (3, h, w):
        raise ValueError(f"colour must have shape (3, {h}, {w}) to match the decoded image, got {tuple(rgb.shape)}")
    rgb = rgb.detach().to(torch.float32).clamp(0.0, 1.0).permute(1, 2, 0)
    if decoded.dtype in _INT_MAX:
        wide = torch.uint8 if decoded.dtype == np.uint8 else torch.int32  # torch lacks uint16 kernels
        ints = torch.floor(rgb * _INT_MAX[decoded.dtype] + 0.5).to(wide)
        out = ints.cpu().numpy().astype(decoded.dtype, copy=False)
    else:
        out = rgb.cpu().numpy().astype(decoded.dtype)
    if decoded.alpha is not None:
        out = np.concatenate([out, decoded.alpha[..., None]], axis=2)
    return out
