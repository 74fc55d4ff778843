"""Tinct: interactive photo colorization (optimization and learned engines).

The package's layout is its design:

- `tinct.api`: `colorize` and `suggest_colors`, the public entry points;
- `tinct.color`: Lab, pixel layouts, hints layers, image files;
- `tinct.engines`: the registry, `optimization/` (Levin et al. solved by multigrid) and
  `learned/` (the hint network);
- `tinct.serve`: tinctd, its wire protocol and its security;
- `tinct.training`: data, training and evaluation of the learned engine;
- `tinct.tools`: the `tinct` command, `tinct doctor`, the editors' whereabouts.

Importing `tinct` is cheap: the public names load torch only when first used (PEP 562).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what __getattr__ hands out, for type checkers only
    from .api import colorize, suggest_colors
    from .engines import ModelNotInstalled

__version__ = "0.1.0"

__all__ = ["colorize", "suggest_colors", "ModelNotInstalled", "__version__"]


def __getattr__(name: str):
    if name in ("colorize", "suggest_colors"):
        from . import api

        return getattr(api, name)
    if name == "ModelNotInstalled":
        from .engines import ModelNotInstalled

        return ModelNotInstalled
    raise AttributeError(f"module 'tinct' has no attribute {name!r}")
