"""The project's measuring protocol (shared/bench/README.md): grey input, simulated hints, scores.

Every quality figure in the project comes from these functions so that they are comparable with
each other and with the published ideepcolor sweep. The Lab maths is `tinct.color.lab` in float64,
which reproduces the reference `hintsim.py` exactly (same seed -> same hints layer).
"""
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tinct.color import imagefile, lab


def _lab64(rgb_u8):
    """(H, W, 3) uint8 -> (3, H, W) float64 Lab tensor."""
    return lab.srgb_to_lab(torch.from_numpy(np.ascontiguousarray(np.moveaxis(rgb_u8, -1, -3))).double() / 255)


def _to_u8(rgb):
    """(..., 3, H, W) tensor in 0..1 -> (..., H, W, 3) uint8, rounding half up."""
    return (np.moveaxis(rgb.numpy(), -3, -1) * 255 + 0.5).astype(np.uint8)


def gray_of(rgb_u8: np.ndarray) -> np.ndarray:
    """The grey input: the photo's Lab lightness with a = b = 0, as 8-bit RGB."""
    grey = _lab64(rgb_u8)
    grey[1:] = 0
    return _to_u8(lab.lab_to_srgb(grey))


def hints_of(rgb_u8: np.ndarray, n: int, rng: np.random.Generator, patch: int = 6) -> np.ndarray:
    """n simulated user hints as an RGBA uint8 layer the size of the photo.

    Square patch x patch strokes, centres from a Gaussian on the image centre with
    sigma = (side - patch + 1) / 4, clipped inside; each carries its patch's mean ab at the
    photo's own lightness. Later strokes paint over earlier ones, as a user's would.
    """
    h, w, _ = rgb_u8.shape
    layer = np.zeros((h, w, 4), np.uint8)
    if n == 0:
        return layer
    corners = []
    for _ in range(n):  # draw order y, x per hint: the reference's, so seeds give the same layer
        y = int(np.clip(rng.normal((h - patch + 1) / 2, (h - patch + 1) / 4), 0, h - patch))
        x = int(np.clip(rng.normal((w - patch + 1) / 2, (w - patch + 1) / 4), 0, w - patch))
        corners.append((y, x))
    photo = _lab64(rgb_u8)
    patches = torch.stack([photo[:, y : y + patch, x : x + patch] for y, x in corners])
    patches[:, 1:] = patches[:, 1:].mean(dim=(2, 3), keepdim=True)
    strokes = _to_u8(lab.lab_to_srgb(patches))
    for (y, x), stroke in zip(corners, strokes):
        layer[y : y + patch, x : x + patch, :3] = stroke
        layer[y : y + patch, x : x + patch, 3] = 255
    return layer


def psnr(a_u8: np.ndarray, b_u8: np.ndarray) -> float:
    """PSNR in dB between two 8-bit images (MSE floored at 1e-10, as the reference does)."""
    mse = np.mean((a_u8.astype(np.float64) - b_u8.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def colorfulness(rgb_u8: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness: PSNR rewards grey, this does not."""
    r, g, b = (rgb_u8[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _default_eval_dir():
    env = os.environ.get("TINCT_EVAL_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data" / "eval"


def eval_images(root: str | os.PathLike[str] | None = None,
                size: int | None = 256) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (set/name, rgb uint8) for every root/*/*.png, resized to size x size with Lanczos
    (aspect not kept, as in the reference sweep); size=None keeps the original for speed runs.

    root defaults to $TINCT_EVAL_DIR, else the shared/data/eval beside this checkout.
    """
    root = Path(root) if root is not None else _default_eval_dir()
    paths = sorted(root.glob("*/*.png"))
    if not paths:
        raise ValueError(f"no evaluation photos found as {root}/*/*.png; set TINCT_EVAL_DIR")
    for path in paths:
        image = imagefile.read(path)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{path}: evaluation photos must be 8-bit RGB, got {image.dtype} {image.shape}")
        if size is not None:
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
        yield f"{path.parent.name}/{path.stem}", image
