"""Editor pixels (numpy, any supported depth and layout) <-> the engines' tensors.

Engines only ever see float32 tensors: the photo's Lab lightness (`lightness`), or its (3, H, W)
RGB in 0..1 (`Decoded.rgb`, made only when asked for); everything about the caller's format
(depth, grey or colour, alpha) is remembered in `Decoded` so `encode_lab`/`encode` can hand back
the same format.  Alpha is kept as the caller's own array and re-attached unchanged:
colorization must never touch transparency.  On the CPU the two ends run as one native pass
each, straight from and into the caller's array (at 12 MP the PyTorch chain of a dozen
full-size passes took seconds and hundreds of MB); on CUDA as one Triton kernel each, the pixels
crossing to and from the GPU in their own width; elsewhere, and for float64, PyTorch does it.
"""
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import torch

from tinct.native import kernels

from . import lab

_INT_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Decoded:
    planes: np.ndarray  # (H, W, channels), the caller's pixels (a view: never written)
    alpha: np.ndarray | None  # (H, W), the input's dtype and values
    dtype: np.dtype
    channels: int  # 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
    device: torch.device

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.planes.shape[0], self.planes.shape[1]

    @cached_property
    def rgb(self) -> torch.Tensor:
        """(3, H, W) float32 in 0..1 on the device (grey repeated)."""
        colour = self.planes[..., : 3 if self.channels >= 3 else 1]
        return to_unit(colour, self.device).permute(2, 0, 1).expand(3, -1, -1).contiguous()


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
    """Validate an editor image and remember its format; its colour reaches `device` when asked for."""
    channels = _validate(image)
    planes = image.reshape(image.shape[0], image.shape[1], channels)
    alpha = planes[..., channels - 1].copy() if channels in (2, 4) else None
    dev = torch.device("cpu") if device is None else torch.device(device)
    return Decoded(planes=planes, alpha=alpha, dtype=image.dtype, channels=channels, device=dev)


def lightness(decoded: Decoded) -> torch.Tensor:
    """The photo's Lab lightness L (1, H, W), float32 on its device (lab.lightness of its RGB)."""
    planes = decoded.planes
    if planes.dtype in kernels.DEPTHS and kernels.triton_pixels(decoded.device):  # the pixels travel as they are
        y_row, table, _ = _constants_on(decoded.device, planes.dtype)
        L = torch.empty(decoded.size, device=decoded.device)
        return kernels.lightness(L, kernels.to_device(planes, decoded.device), table, y_row)[None]
    if decoded.device.type == "cpu" and planes.dtype in kernels.DEPTHS:
        planes = np.ascontiguousarray(planes)  # a strided view (a broadcast grey) costs one copy, not the slow path
        L = torch.empty(decoded.size)
        y_row, table, _ = _constants_on(decoded.device, planes.dtype)
        if kernels.cpu_pixels(planes, L, y_row, *([] if table is None else [table])):
            return kernels.lightness(L, planes, table, y_row)[None]
    return lab.lightness(decoded.rgb)


def encode_lab(L: torch.Tensor, ab: torch.Tensor, decoded: Decoded) -> np.ndarray:
    """L (1, H, W) and ab (2, H, W) -> numpy in the decoded image's format: `encode` of
    lab.lab_to_srgb_keep_l(L, ab) (its lightness is exactly L), in one native pass on the CPU or CUDA."""
    h, w = decoded.size
    if decoded.dtype in kernels.DEPTHS and L.shape == (1, h, w) and ab.shape == (2, h, w):
        if kernels.triton_pixels(L.device) and kernels.fused(L, ab):  # on the device, back in the caller's width
            _, _, params = _constants_on(L.device, decoded.dtype)
            planes = torch.empty((h, w, 3 if decoded.alpha is None else 4), dtype=kernels.TRAVELS_AS[decoded.dtype],
                                 device=L.device)
            alpha = None if decoded.alpha is None else kernels.to_device(decoded.alpha, L.device)
            return kernels.from_device(kernels.encode(planes, L[0], ab, params, alpha), decoded.dtype)
        _, _, params = _constants_on(L.device, decoded.dtype)
        out = np.empty((h, w, 3 if decoded.alpha is None else 4), decoded.dtype)
        if kernels.cpu_pixels(out, L, ab, params):
            return kernels.encode(out, L[0], ab, params, decoded.alpha)
    return encode(lab.lab_to_srgb_keep_l(L, ab), decoded)


@cache
def _constants_on(device: torch.device, dtype: np.dtype) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """lab.native_constants() and the decoding table of integer `dtype` (y_row, table, params), on
    `device` (copied there once for the Triton kernels; the same tensors on the CPU)."""
    y_row, params = lab.native_constants()
    table = lab.linear_table(_INT_MAX[dtype] + 1).to(device) if dtype in _INT_MAX else None
    return y_row.to(device), table, params.to(device)


def encode(rgb: torch.Tensor, decoded: Decoded) -> np.ndarray:
    """(3, H, W) colour in 0..1 -> numpy in the decoded image's dtype, alpha re-attached.

    Grey inputs come back as RGB (grey+alpha as RGBA): the result has colour. Integer outputs
    round half up, value * max + 0.5 floored, so decode -> encode is lossless.
    """
    h, w = decoded.size
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
