"""The optimization engine as the registry (tinct.engines) creates it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import levin

if TYPE_CHECKING:
    import torch


class OptimizationEngine:
    """Levin et al. 2004: colour spreads from the strokes along similar lightness."""

    name = "optimization"
    DEFAULT_QUALITY = "final"
    OPTIONS = {"quality", "edge_sensitivity", "tol", "max_iter", "callback"}

    def predict_ab(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor,
                   **options: Any) -> torch.Tensor:
        unknown = set(options) - self.OPTIONS
        if unknown:
            raise ValueError(f"unknown option(s) for the optimization engine: {', '.join(sorted(unknown))}")
        options.setdefault("quality", self.DEFAULT_QUALITY)
        ab, _ = levin.solve_ab(L, hint_ab, hint_weight, **options)
        return ab
