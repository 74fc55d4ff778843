"""`tinct.colorize` and `tinct.suggest_colors`: the entry points the daemon, the CLI and the benchmarks share.

Every engine only predicts Lab a,b from lightness and hints; the pipeline around
it (decoding the caller's pixels, taking L from the photo, putting L back exactly
with an in-gamut colour, re-attaching alpha) is written once, here.  Engines are
reached only through their registry, tinct.engines.
"""
from __future__ import annotations

import numpy as np
import torch

from .color import hints as hintlayer
from .color import lab, pixels
from .engines import ENGINES, ModelNotInstalled, default_device, get_engine

__all__ = ["colorize", "suggest_colors", "prepare", "ENGINES", "ModelNotInstalled", "default_device", "get_engine"]


def prepare(image: np.ndarray, hints: np.ndarray | None, device=None):
    """Decode the photo and its hints layer: (decoded, L (1,H,W), hint_ab (2,H,W), hint_weight (1,H,W))."""
    dev = default_device(device)
    decoded = pixels.decode(image, dev)
    L = lab.srgb_to_lab(decoded.rgb)[:1]
    if hints is None:
        hint_ab = torch.zeros((2,) + L.shape[1:], device=dev)
        hint_weight = torch.zeros_like(L)
    else:
        hintlayer.check_size(hints, image.shape)
        hint_ab, hint_weight = hintlayer.from_layer(hints, dev)
    return decoded, L, hint_ab, hint_weight


def colorize(image: np.ndarray, hints: np.ndarray | None = None, engine: str = "optimization",
             device=None, **options) -> np.ndarray:
    """Colorize `image` (numpy, uint8/uint16/float 0..1; grey, grey+alpha, RGB or RGBA).

    `hints` is an RGBA layer of the same size whose painted pixels (alpha > 0)
    give colours.  Returns the same dtype and layout with the input's Lab
    lightness and alpha, except that grey becomes RGB (colour needs three
    channels).  Options go to the engine: `quality` ("final" or "preview"),
    `edge_sensitivity` for optimization; `vibrancy` for learned.
    """
    eng = get_engine(engine)
    decoded, L, hint_ab, hint_weight = prepare(image, hints, device)
    with torch.no_grad():
        ab = eng.predict_ab(L, hint_ab, hint_weight, **options)
        rgb = lab.lab_to_srgb_keep_l(L, ab)
    return pixels.encode(rgb, decoded)


def suggest_colors(image: np.ndarray, hints: np.ndarray | None, x: int, y: int, k: int = 8, device=None):
    """The k most likely colours at (x, y) of `image` given `hints`, for the plugins' palette."""
    engine = get_engine("learned")
    _, L, hint_ab, hint_weight = prepare(image, hints, device)
    if not (0 <= x < L.shape[-1] and 0 <= y < L.shape[-2]):
        raise ValueError(f"the point ({x}, {y}) is outside the {L.shape[-1]}x{L.shape[-2]} image")
    return engine.suggest(L, hint_ab, hint_weight, x, y, k)
