"""`tinct.colorize` and `tinct.suggest_colors`: the entry points the daemon, the CLI and the benchmarks share.

Every engine only predicts Lab a,b from lightness and hints; the pipeline around
it (decoding the caller's pixels, taking L from the photo, putting L back exactly
with an in-gamut colour, re-attaching alpha) is written once, here.  Engines are
reached only through their registry, tinct.engines.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import numpy as np
import torch

from .color import hints as hintlayer
from .color import pixels
from .engines import ENGINES, ModelNotInstalled, default_device, get_engine, transfer

__all__ = ["colorize", "suggest_colors", "prepare", "ENGINES", "ModelNotInstalled", "default_device", "get_engine"]


def prepare(image: np.ndarray, hints: np.ndarray | None, device: torch.device | str | None = None
            ) -> tuple[pixels.Decoded, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode the photo and its hints layer: (decoded, L (1,H,W), hint_ab (2,H,W), hint_weight (1,H,W))."""
    dev = default_device(device)
    decoded = pixels.decode(image, dev)
    L = pixels.lightness(decoded)
    if hints is None:
        hint_ab = torch.zeros((2,) + L.shape[1:], device=dev)
        hint_weight = torch.zeros_like(L)
    else:
        hintlayer.check_size(hints, image.shape)
        hint_ab, hint_weight = hintlayer.from_layer(hints, dev)
    return decoded, L, hint_ab, hint_weight


@overload
def colorize(image: np.ndarray, hints: np.ndarray | None = None, engine: str = "optimization",
             device: torch.device | str | None = None, reference: np.ndarray | None = None, swatches: Sequence = (),
             palette: Sequence | np.ndarray | None = None, *, variations: None = None, seed: int = 0,
             **options: Any) -> np.ndarray: ...
@overload
def colorize(image: np.ndarray, hints: np.ndarray | None = None, engine: str = "optimization",
             device: torch.device | str | None = None, reference: np.ndarray | None = None, swatches: Sequence = (),
             palette: Sequence | np.ndarray | None = None, *, variations: int, seed: int = 0,
             **options: Any) -> list[np.ndarray]: ...
def colorize(image: np.ndarray, hints: np.ndarray | None = None, engine: str = "optimization",
             device: torch.device | str | None = None, reference: np.ndarray | None = None, swatches: Sequence = (),
             palette: Sequence | np.ndarray | None = None, *, variations: int | None = None, seed: int = 0,
             **options: Any) -> np.ndarray | list[np.ndarray]:
    """Colorize `image` (numpy, uint8/uint16/float 0..1; grey, grey+alpha, RGB or RGBA).

    `hints` is an RGBA layer of the same size whose painted pixels (alpha > 0)
    give colours.  Returns the same dtype and layout with the input's Lab
    lightness and alpha, except that grey becomes RGB (colour needs three
    channels).  Options go to the engine: `quality` ("final" or "preview"),
    `edge_sensitivity` for optimization; `vibrancy` for learned.

    `reference` is a colour photo (RGB or RGBA, any size) whose colours are transferred
    (tinct.engines.reference); `swatches` pairs of rectangles ((x0, y0, x1, y1) in the
    reference, (x0, y0, x1, y1) in the photo) restrict where each part takes colour from;
    `palette` sRGB colours (K, 3) 0..255 steer the learned engine (default with a reference:
    the reference's histogram).  The user's hints win where they are painted.

    `variations` N (1..8, learned engine): a list of N colorizations instead of one, the first the
    ordinary answer, the others drawn from the network's colour distribution region by region
    (tinct.engines.learned.variations); the same `seed` gives the same ones.
    """
    eng = get_engine(engine)
    decoded, L, hint_ab, hint_weight = prepare(image, hints, device)
    guidance = transfer()
    steer = None if palette is None else guidance.palette_of(palette, L.device)
    if variations is not None:
        return colorize_variations(eng, decoded, L, hint_ab, hint_weight, variations, seed,
                                   reference is not None or bool(swatches), steer, options)
    with torch.no_grad():
        if reference is not None:
            ref = guidance.load_reference(reference, L.device)
            pairs = [guidance.swatch_of(s) for s in swatches]
            ab = guidance.predict_ab(eng, L, hint_ab, hint_weight, ref, pairs, steer, **options)
        elif swatches:
            raise ValueError("swatches pair rectangles of a reference with the photo's; give a reference too")
        elif steer is not None:
            if "palette" not in eng.OPTIONS:
                raise ValueError("a palette steers the learned engine's colours; use engine='learned'")
            ab = eng.predict_ab(L, hint_ab, hint_weight, palette=steer, **options)
        else:
            ab = eng.predict_ab(L, hint_ab, hint_weight, **options)
        return pixels.encode_lab(L, ab, decoded)


def colorize_variations(eng: Any, decoded: pixels.Decoded, L: torch.Tensor, hint_ab: torch.Tensor,
                        hint_weight: torch.Tensor, count: int, seed: int, guided: bool,
                        steer: tuple[torch.Tensor, torch.Tensor] | None, options: dict) -> list[np.ndarray]:
    """colorize's `variations` (`guided`: a reference or swatches were given, which they do not take):
    each one encoded as soon as it is solved, so only the results are kept."""
    if not hasattr(eng, "predict_variations"):
        raise ValueError("variations are drawn from the learned engine's colour distribution; use engine='learned'")
    if guided:
        raise ValueError("variations are not drawn with a colour reference (nor its swatches); colorize with the "
                         "reference alone, or ask for variations without it")
    extra = {} if steer is None else {"palette": steer}
    with torch.no_grad():
        return [pixels.encode_lab(L, ab, decoded)
                for ab in eng.predict_variations(L, hint_ab, hint_weight, count, seed, **extra, **options)]


def suggest_colors(image: np.ndarray, hints: np.ndarray | None, x: int, y: int, k: int = 8,
                   device: torch.device | str | None = None) -> list[tuple[int, int, int]]:
    """The k most likely colours at (x, y) of `image` given `hints`, for the plugins' palette."""
    engine = get_engine("learned")
    _, L, hint_ab, hint_weight = prepare(image, hints, device)
    if not (0 <= x < L.shape[-1] and 0 <= y < L.shape[-2]):
        raise ValueError(f"the point ({x}, {y}) is outside the {L.shape[-1]}x{L.shape[-2]} image")
    return engine.suggest(L, hint_ab, hint_weight, x, y, k)
