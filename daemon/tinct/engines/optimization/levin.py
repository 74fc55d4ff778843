"""Levin, Lischinski & Weiss (2004), "Colorization using Optimization", solved our way.

Neighbouring pixels of similar lightness should have similar colour.  Each
pixel's colour is asked to be the weighted mean of its 3x3 neighbours' (the
authors' rows of I - W, W row-normalised), with weights from the lightness
differences scaled by the local variance (the rule of the authors' code).  The
user's strokes fix colours (alpha 1) or pull towards them (0 < alpha < 1).

W is not symmetric: a pixel's weights are normalised over its own window and
scaled by its own variance, so an edge pixel can follow its neighbour while the
neighbour ignores it.  Those one-way couplings are what keep colour from
leaking across edges, so `final` solves the authors' system itself.  Its
symmetric counterpart, the graph Laplacian of (W + W^T)/2, is SPD once a
stroke pins it down: CG with a multigrid preconditioner solves it in a few
iterations, which is the `preview` quality.  It is not the authors' answer:
where a region is walled in by one-way couplings (a thin dark strip whose
pixels ignore their bright neighbours while those follow the strip), the
symmetric form ties it to its surroundings, and a preconditioner built from it
mistakes how weakly such a region leaks by orders of magnitude, so Krylov
methods on the authors' system crawl there (the residual shrinks while the
region's colour drifts).  `final` therefore builds its multigrid from the
authors' operator itself (see tinct.engines.optimization.multigrid: transfers from its own rows,
coarse operators kept M-matrices, a K-cycle) and runs GCR on it, from
full multigrid's nested answer.  Its stopping rule looks at the error, not only the residual: the
walled-in regions' colour costs almost no residual.  `live` solves the same system loosely on a
proxy of at most 0.5 MP and brings the colour back along the photo's lightness (see proxy).

Hard constraints are eliminated: a fixed pixel's row becomes the identity and
its column moves to the right-hand side, which keeps both forms' structure
(and the symmetric one symmetric).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinct.engines import QUALITIES
from tinct.native import kernels
from tinct.native.kernels import fused

from . import graphs, krylov, proxy
from .multigrid import COARSEST, Multigrid, Sweeps, fit
from .stencil import OFFSETS, Stencil, opposite, pad1, shifted

MIN_VARIANCE = 2e-6     # the authors' floor on the window variance
WEIGHT_FLOOR = 1e-6     # float32 exp underflows to 0 and would cut hint-free regions off
FIXED = 1.0 - 1e-6      # hint weight from which a pixel's colour is fixed outright
TOL = {"final": 1e-3, "preview": 1e-4, "live": 1e-2}  # relative residual
# `final` also wants no pixel's colour to move by more than this (ab units) in a further step.
# That estimate (M^-1 r) runs 3-5 times below the true error on megapixel photos (11 on a 4 MP
# photo with grain), so 1 keeps the worst 0.1 % of pixels within a few ab units of the authors'
# answer (benchmarks/levin.py).
ERROR_TOL = {"final": 1.0}
# `live` solves its proxy loosely: the nested start and a V-cycle step or two (`final` replaces it).
MAX_ITER = {"final": 40, "preview": 200, "live": 2}
# GCR keeps two (2, H, W) float32 vectors per step until it restarts (16 bytes a pixel each step:
# 770 MB at 12 MP for 4 steps).  Restarting every 4 steps took the same or fewer steps as 8 on
# kodim01, kodim15 and mcm05 at 1 and 4 MP, within 0.015 dB of its answer (8 had been within 0.001
# dB of 20), and brings a 12 MP `final` under 2.5 GB (issue 15).
RESTART = 4
DOMINANT = 0.5  # a data term this strong on every free pixel (the learned engine's automatic prior is 1)
LIVE_DENSE_MAX = 512  # `live` coarsens further than `final`, to skip most of the dense inverse's cost
STRIP = 16  # an image with a side this short is a strip, solved in float64 (see solve_ab)


def affinities(lightness: torch.Tensor, edge_sensitivity: float = 1.0) -> torch.Tensor:
    """Row-normalised weights W (8, H, W) of each pixel's 3x3 neighbours.

    `lightness` is (H, W) in 0..1.  As in the authors' getColorExact.m: the
    Gaussian's width is 0.6 x the window variance, widened so the most similar
    neighbour keeps at least weight 0.01, and never below 2e-6.  A higher
    `edge_sensitivity` narrows it, so colour stops at fainter edges.
    """
    y = lightness
    h, w = y.shape
    if fused(y):
        params = torch.tensor([0.6 / edge_sensitivity, MIN_VARIANCE, WEIGHT_FLOOR])
        return kernels.affinities(torch.empty((8, h, w), device=y.device), y, params)
    yp = pad1(y)
    valid = pad1(torch.ones_like(y))
    nb = torch.stack([shifted(yp, dy, dx, h, w) for dy, dx in OFFSETS])
    ok = torch.stack([shifted(valid, dy, dx, h, w) for dy, dx in OFFSETS]) > 0
    count = ok.sum(0) + 1
    mean = (y + (nb * ok).sum(0)) / count
    var = ((y - mean) ** 2 + (((nb - mean) ** 2) * ok).sum(0)) / count
    diff2 = (nb - y) ** 2
    nearest = torch.where(ok, diff2, torch.full_like(diff2, math.inf)).amin(0)
    sigma = torch.maximum(0.6 * var / edge_sensitivity, nearest / math.log(100.0)).clamp_min(MIN_VARIANCE)
    weights = torch.exp(-diff2 / sigma).clamp_min(WEIGHT_FLOOR) * ok
    return weights / weights.sum(0).clamp_min(WEIGHT_FLOOR)  # a 1x1 image's pixel has no neighbours


def transpose(c: torch.Tensor) -> torch.Tensor:
    """Couplings W^T: entry k at r is W's opposite entry at r + offset k."""
    h, w = c.shape[-2:]
    cp = pad1(c)
    return torch.stack([shifted(cp[opposite(k)], dy, dx, h, w) for k, (dy, dx) in enumerate(OFFSETS)])


def _free_couplings(c: torch.Tensor, fixed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Couplings from free rows to free columns only (fixed pixels are eliminated), at `shape`:
    rows and columns beyond the photo's are decoupled."""
    h, w = fixed.shape
    free = F.pad((~fixed).to(c.dtype), (0, shape[1] - w, 0, shape[0] - h))
    fp = pad1(free)
    out = torch.stack([shifted(fp, dy, dx, *shape) for dy, dx in OFFSETS]).mul_(free)
    out[:, :h, :w].mul_(c)
    return out


def _diagonal(diag: torch.Tensor, fixed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """`diag` on free pixels, 1 on fixed ones and on the rows beyond the photo's (identity rows)."""
    d = torch.where(fixed, torch.ones_like(diag), diag)
    return F.pad(d, (0, shape[1] - d.shape[1], 0, shape[0] - d.shape[0]), value=1.0)


def _rhs(c: torch.Tensor, target: torch.Tensor, kappa: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Data term plus the fixed neighbours' known colours; the colour itself at fixed pixels."""
    known = (target * fixed).contiguous()
    # b - (d x - sum_k c_k x_k) with x the fixed pixels' colours (0 on free pixels), b = kappa t and
    # d = kappa: on a free pixel kappa t + sum_k c_k known_k, in one stencil pass
    data = Stencil(kappa, c).residual(known, (kappa * target).contiguous())
    return torch.where(fixed, target, data)


def authors_system(weights: torch.Tensor, target: torch.Tensor, kappa: torch.Tensor, fixed: torch.Tensor,
                   shape: tuple[int, int] | None = None) -> tuple[Stencil, torch.Tensor]:
    """The authors' system A x = b (the `final` quality).

    Free pixel r:  (1 + kappa_r) x_r - sum_s W_rs x_s = kappa_r t_r
    Fixed pixel r: x_r = t_r, eliminated from its neighbours' rows.
    A `shape` larger than the photo's grows the system by decoupled identity rows, as
    Stencil.pad_to_odd does, without a copy of it.
    """
    size = (fixed.shape[0], fixed.shape[1]) if shape is None else shape
    a = Stencil(_diagonal(1.0 + kappa, fixed, size), _free_couplings(weights, fixed, size))
    return a, fit(_rhs(weights, target, kappa, fixed), size)


def symmetric_system(weights: torch.Tensor, target: torch.Tensor, kappa: torch.Tensor, fixed: torch.Tensor,
                     shape: tuple[int, int] | None = None) -> tuple[Stencil, torch.Tensor]:
    """Its symmetric counterpart S x = b (the `preview` quality), S = (W + W^T)/2:

    Free pixel r:  (kappa_r + sum_s S_rs) x_r - sum_s S_rs x_s = kappa_r t_r
    Fixed pixel r: x_r = t_r, eliminated from its neighbours' rows.
    `shape` as in authors_system.
    """
    size = (fixed.shape[0], fixed.shape[1]) if shape is None else shape
    sym = 0.5 * (weights + transpose(weights))
    s = Stencil(_diagonal(kappa + sym.sum(0), fixed, size), _free_couplings(sym, fixed, size))
    return s, fit(_rhs(sym, target, kappa, fixed), size)


def solve_ab(lightness: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor,
             prior_ab: torch.Tensor | None = None, prior_weight: float | torch.Tensor | None = None,
             quality: str = "final", edge_sensitivity: float = 1.0, tol: float | None = None,
             max_iter: int | None = None, callback: Callable[[int, float], None] | None = None
             ) -> tuple[torch.Tensor, dict]:
    """Colour (2, H, W) for lightness L (1, H, W) in 0..100 from strokes and an optional prior.

    `hint_weight` (1, H, W) in 0..1 is the stroke's alpha: 1 fixes the colour,
    less pulls towards it.  `prior_ab` with `prior_weight` (a number or a map) is
    a soft data term, e.g. the learned network's colours.  With neither strokes
    nor prior the answer is grey (ab = 0).
    Returns (ab, info) where info has iterations, residual, converged and
    seconds (and for `final` the error estimate in ab units).
    """
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, not {quality!r}")
    start = time.perf_counter()
    if quality == "live" and proxy.factor(lightness.shape[-2:]) > 1 and min(lightness.shape[-2:]) > 4 * STRIP:
        ab, info = _live(lightness, hint_ab, hint_weight, prior_ab, prior_weight, edge_sensitivity, tol, max_iter,
                         callback)
        info["seconds"] = time.perf_counter() - start
        return ab, info
    # A strip is a chain of pixels up to millions long whose far end is tied to a stroke only ~1/n^2
    # strongly: float32's rounding of each row of W (~1e-7) outweighs that, and the rounded system's
    # answer can swing far outside the strokes' colours, so strips are solved in float64.
    dtype = torch.float64 if min(lightness.shape[-2:]) <= STRIP else torch.float32
    light = lightness.reshape(lightness.shape[-2:]).to(dtype) / 100.0
    alpha = hint_weight.reshape(light.shape).to(dtype).clamp(0.0, 1.0)
    fixed = alpha >= FIXED
    kappa = torch.where(fixed, torch.zeros_like(alpha), alpha / (1.0 - alpha).clamp_min(1e-6))
    target = hint_ab.to(dtype) * (alpha > 0)
    if prior_ab is not None and prior_weight is not None:
        kp = (prior_weight.reshape(light.shape).to(dtype) if torch.is_tensor(prior_weight)
              else torch.full_like(kappa, float(prior_weight)))
        total = kappa + kp
        target = torch.where(fixed, target, (kappa * target + kp * prior_ab.to(dtype)) / total.clamp_min(1e-12))
        kappa = total
        del kp, total
    info = {"quality": quality, "iterations": 0, "residual": 0.0}
    if not bool(fixed.any()) and not bool((kappa > 0).any()):
        info["seconds"] = time.perf_counter() - start
        return torch.zeros_like(target, dtype=torch.float32), info

    # every free pixel pulled at least this hard: sweeps alone converge fast (see multigrid.Sweeps)
    dominant = quality != "preview" and bool((kappa >= DOMINANT).logical_or_(fixed).all())
    weights = affinities(light, edge_sensitivity)
    system = symmetric_system if quality == "preview" else authors_system
    h, w = light.shape
    # the multigrid coarsens odd sizes: the system is built at one, so it needs no copy of its own
    op, b = system(weights, target, kappa, fixed, (h | 1, w | 1) if min(h, w) > COARSEST else (h, w))
    del weights, light, alpha, target, kappa, fixed  # the solve keeps only its system: memory (issue 15)
    tol = TOL[quality] if tol is None else tol
    max_iter = MAX_ITER[quality] if max_iter is None else max_iter
    if quality == "preview":
        mg = Multigrid(op)
        out = krylov.pcg(op.apply, b, torch.zeros_like(b), graphs.preconditioner(mg, b), tol, max_iter, callback)
    else:
        mg = (Sweeps(op) if dominant else Multigrid(op, lump=True, kcycle=True) if quality == "final"
              else Multigrid(op, lump=True, dense_max=LIVE_DENSE_MAX))
        out = krylov.gcr(op.apply, b, mg.nested(b), graphs.preconditioner(mg, b), tol, max_iter,
                         restart=RESTART, callback=callback, error_tol=ERROR_TOL.get(quality))
        info["error"] = out.error
    info.update(levels=mg.levels, iterations=out.iterations, residual=out.residual, converged=out.converged)
    info["seconds"] = time.perf_counter() - start
    return out.x[..., :h, :w].float().contiguous(), info


def _live(lightness, hint_ab, hint_weight, prior_ab, prior_weight, edge_sensitivity, tol, max_iter, callback):
    """`live` on a large photo: the same problem shrunk (tinct.engines.optimization.proxy), solved
    there, and its colour brought back to full size along the photo's own lightness; pixels
    that strokes fix get their colour exactly again."""
    f = proxy.factor(lightness.shape[-2:])
    light = lightness.reshape((1,) + lightness.shape[-2:])
    alpha = hint_weight.reshape(light.shape)
    small = proxy.shrink(light, f)
    small_ab, small_alpha = proxy.shrink_hints(hint_ab, alpha, f)
    if prior_ab is not None and prior_weight is not None:
        prior_ab = proxy.shrink(prior_ab, f)
        if torch.is_tensor(prior_weight):
            prior_weight = proxy.shrink(prior_weight.reshape(light.shape), f)
    ab, info = solve_ab(small, small_ab, small_alpha, prior_ab, prior_weight, "live", edge_sensitivity, tol,
                        max_iter, callback)
    info["proxy"] = tuple(small.shape[-2:])
    ab = proxy.upsample(light[0], small[0], ab, f)
    return torch.where(alpha >= FIXED, hint_ab.to(ab.dtype), ab), info
