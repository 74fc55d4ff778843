"""Variations (Deshpande et al. 2017, "Learning Diverse Image Colorization"): several plausible
colorizations of one photo, drawn from the network's own colour distribution.

A variation decodes the network's logits plus a Gumbel perturbation.  Most of it is one draw per
colour cell shared by every pixel (Gumbel-max: the sharpest cell is then a sample from the network's
distribution), so pixels whose distributions agree, a region, pick the same colour mode together,
without a segmentation; a weaker draw on a CELLS x CELLS grid, interpolated smoothly, lets distant
regions with similar distributions differ.  Nothing varies from pixel to pixel, and the Levin solve
then aligns each variation's colour edges with the photo's own.  The first variation is the
ordinary answer.  Constants chosen on validation photos (models/MODEL_CARD.md, Variations).
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

MAX_VARIATIONS = 8
DEFAULT_SEED = 0
LOCAL_SCALE = 0.3  # the grid draw's weight beside the shared one
CELLS = 3          # grid cells along the photo's long side


def check_count(count: object) -> int:
    """`count` as a number of variations, 1..MAX_VARIATIONS, or a ValueError saying what is allowed."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_VARIATIONS:
        raise ValueError(f"variations must be a whole number from 1 to {MAX_VARIATIONS}, not {count!r}"[:200])
    return int(count)


def generator(seed: int, L: torch.Tensor) -> torch.Generator:
    """A CPU generator for `seed` and this photo: the same seed gives the same variations of the same
    photo, and other photos other draws (one seed's draws shared by every photo would make its second
    variation, say, lean to the same hue on all of them).  The photo enters through its lightness on
    a sparse grid, rounded to whole units, so float noise in the conversion does not move it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1 << 63:
        raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, not {seed!r}"[:200])
    step = max(1, max(L.shape[-2:]) // 64)
    sample = L[..., ::step, ::step].round().to(torch.int16).cpu().numpy().tobytes()
    mixed = np.random.SeedSequence([int(seed), zlib.crc32(sample)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def gumbel(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).float()


def noise(logits_shape: torch.Size | tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """One variation's perturbation (Q, h, w) of logits (Q, h, w): a shared draw per colour cell plus
    LOCAL_SCALE x a smooth CELLS-grid draw; on the CPU (drawn there for every device alike)."""
    bins, h, w = logits_shape
    shared = gumbel((bins, 1, 1), gen)
    cy, cx = (max(2, round(CELLS * side / max(h, w))) for side in (h, w))
    grid = gumbel((1, bins, cy, cx), gen)
    smooth = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)[0]
    return shared + LOCAL_SCALE * smooth
