"""`tinct.colorize`: the one entry point the daemon, the CLI and the benchmarks share.

Every engine only predicts Lab a,b from lightness and hints; the pipeline around
it (decoding the caller's pixels, taking L from the photo, putting L back exactly
with an in-gamut colour, re-attaching alpha) is written once, here.
"""
from __future__ import annotations

import importlib

import numpy as np
import torch

from . import hints as hintlayer
from . import lab, levin, pixels


class ModelNotInstalled(ValueError):
    """The learned engine's weights are missing or unreadable."""


class OptimizationEngine:
    """Levin et al. 2004: colour spreads from the strokes along similar lightness."""

    name = "optimization"
    OPTIONS = {"quality", "edge_sensitivity", "tol", "max_iter", "method", "callback"}

    def predict_ab(self, L, hint_ab, hint_weight, **options):
        unknown = set(options) - self.OPTIONS
        if unknown:
            raise ValueError(f"unknown option(s) for the optimization engine: {', '.join(sorted(unknown))}")
        ab, _ = levin.solve_ab(L, hint_ab, hint_weight, **options)
        return ab


# name -> "module:attribute" of a zero-argument factory, imported on first use so that the
# optimization engine never pays for loading the network.
ENGINES = {
    "optimization": "tinct.api:OptimizationEngine",
    "learned": "tinct.learned:LearnedEngine",
}
_loaded: dict[str, object] = {}


def get_engine(name: str):
    """The engine called `name`, created once and kept warm."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    if name not in _loaded:
        module, attr = ENGINES[name].split(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelNotInstalled(
                f"the {name} engine is not installed in this copy of Tinct ({exc}); "
                "use engine='optimization'") from exc
        _loaded[name] = factory()
    return _loaded[name]


def default_device(device=None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return dev


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
