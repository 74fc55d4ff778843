"""Tinct: interactive photo colorization (optimization and learned engines)."""

__version__ = "0.1.0"

from .api import ModelNotInstalled, colorize  # noqa: E402
from .learned import suggest_colors  # noqa: E402

__all__ = ["colorize", "suggest_colors", "ModelNotInstalled", "__version__"]
