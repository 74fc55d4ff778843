"""The engines and their registry.

Every engine predicts Lab a,b from lightness and hints (`predict_ab`); `tinct.api` wraps one
pipeline around whichever is asked for.  Engines are found here by name and imported on
first use, so the optimization engine never pays for loading the network, and this module
itself imports no torch: the wire protocol reads `QUALITIES` from it.

- `optimization/`: Levin et al. 2004 solved with multigrid-preconditioned Krylov methods
  (`levin`, `multigrid`, `krylov`, `stencil`, and `kernels`, the doorway to the C loops).
- `learned/`: the hint network (`net`) run small and brought to full size edge-aware (`engine`).
- `reference`: colour from a reference photo or a palette (Welsh et al. 2002) for either engine.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # this module imports no torch: the wire protocol reads QUALITIES from it
    import torch

# The solver's qualities, shared by every engine: `live` answers in about a second at any size (a
# proxy solved and brought back edge-aware), `preview` solves the symmetric form, `final` the authors'.
QUALITIES = ("final", "preview", "live")

# name -> "module:attribute" of a zero-argument factory, imported on first use.
ENGINES = {
    "optimization": "tinct.engines.optimization.engine:OptimizationEngine",
    "learned": "tinct.engines.learned.engine:LearnedEngine",
}
_loaded: dict[str, Any] = {}  # engines are duck-typed: predict_ab, suggest, ...


class ModelNotInstalled(ValueError):
    """The learned engine's weights are missing or unreadable."""


def engine_class(name: str) -> type:
    """The factory of the engine called `name` (its class: DEFAULT_QUALITY, OPTIONS, ...), imported now."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    module, attr = ENGINES[name].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelNotInstalled(
            f"the {name} engine is not installed in this copy of Tinct ({exc}); "
            "use engine='optimization'") from exc


def get_engine(name: str) -> Any:
    """The engine called `name`, created once and kept warm."""
    if name not in _loaded:
        _loaded[name] = engine_class(name)()
    return _loaded[name]


def transfer() -> ModuleType:
    """tinct.engines.reference (colour from a reference photo or a palette, for any engine), imported on first use."""
    return importlib.import_module("tinct.engines.reference")


def default_device(device: torch.device | str | None = None) -> torch.device:
    """The torch.device to run on: CUDA when there is one, unless `device` says otherwise."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return dev
