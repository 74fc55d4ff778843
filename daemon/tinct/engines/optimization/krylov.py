"""Preconditioned Krylov solvers for a batch of right-hand sides sharing one operator.

The a and b colour channels are solved together: tensors are (C, H, W) and every
scalar (step lengths, residual norms) is per channel.  Inner products are
accumulated in float64 because at millions of pixels float32 sums lose the
digits that decide convergence.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from tinct.native import kernels
from tinct.native.kernels import MAX_VECTORS, fused


class Operator(Protocol):
    """An operator or preconditioner: its answer for x, written into `out` when one is given (a
    vector GCR no longer needs: at 12 MP a fresh one is 96 MB of pages for the kernel to map and
    zero, a fifth of the solve's time on two cores)."""

    def __call__(self, x: torch.Tensor, /, out: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass
class Result:
    x: torch.Tensor
    iterations: int
    residual: float  # worst channel's ||b - Ax|| / ||b||
    converged: bool
    error: float = math.nan  # gcr with error_tol: the last max |M^-1 r|, the error estimate


def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-channel inner product, shape (C, 1, 1), float64."""
    if fused(u, v) and u.shape == v.shape:
        return kernels.dot(torch.empty(u.shape[:-2] + (1, 1), dtype=torch.float64, device=u.device), u, v)
    return (u * v).sum(dim=(-2, -1), dtype=torch.float64, keepdim=True)


def dots(u: torch.Tensor, vs: list[torch.Tensor]) -> torch.Tensor:
    """dot(v, u) for every v in vs at once, shape (len(vs), C, 1, 1), float64."""
    if len(vs) <= MAX_VECTORS and fused(u, *vs) and all(v.shape == u.shape for v in vs):
        out = torch.empty((len(vs),) + u.shape[:-2] + (1, 1), dtype=torch.float64, device=u.device)
        return kernels.dots(out, u, vs)
    return torch.stack([dot(v, u) for v in vs])


def subtract(u: torch.Tensor, vs: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """u -= sum_i coef[i] vs[i] in place (coef as from `dots`), in one pass where the C kernels run."""
    coef = coef.to(u.dtype).contiguous()
    if len(vs) <= MAX_VECTORS and fused(u, *vs) and all(v.shape == u.shape for v in vs):
        return kernels.combine(u, vs, coef)
    for c, v in zip(coef, vs):
        u.addcmul_(v, c, value=-1)
    return u


def _div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den is 0 (a channel that already converged exactly)."""
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, torch.zeros_like(num), num / safe)


def _scale(v: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """v / norm in place, per channel (norm (C, 1, 1)), with 0 where norm is 0."""
    return v.mul_(_div(torch.ones_like(norm), norm).to(v.dtype))


def _relres(r: torch.Tensor, bnorm: torch.Tensor) -> torch.Tensor:
    return _div(dot(r, r).sqrt(), bnorm)


def pcg(apply: Operator, b: torch.Tensor, x: torch.Tensor, precond: Operator, tol: float,
        max_iter: int, callback: Callable[[int, float], None] | None = None) -> Result:
    """Conjugate gradients for a symmetric positive-definite operator and preconditioner."""
    bnorm = dot(b, b).sqrt()
    r = b - apply(x)
    z = precond(r)
    p = z.clone()
    rz = dot(r, z)
    it = 0
    res = _relres(r, bnorm)
    while it < max_iter and float(res.max()) > tol:
        ap = apply(p)
        alpha = _div(rz, dot(p, ap)).float()
        x.add_(alpha * p)
        r.sub_(alpha * ap)
        z = precond(r)
        rz_new = dot(r, z)
        beta = _div(rz_new, rz).float()
        p = z + beta * p
        rz = rz_new
        it += 1
        res = _relres(r, bnorm)
        if callback:
            callback(it, float(res.max()))
    return Result(x, it, float(res.max()), float(res.max()) <= tol)


def gcr(apply: Operator, b: torch.Tensor, x: torch.Tensor, precond: Operator, tol: float, max_iter: int,
        restart: int = 20, callback: Callable[[int, float], None] | None = None,
        error_tol: float | None = None) -> Result:
    """Restarted GCR (Eisenstat, Elman & Schultz 1983), the conjugate residual method for any operator.

    Each step goes along z = M^-1 r and minimises the residual over all the
    directions kept (so, like GMRES, the residual never grows), and M may
    change from call to call (a K-cycle does), as it may in flexible GMRES.
    GCR is chosen over that because z is at hand every step: it is the
    correction M would still make, the error as far as M can tell.  On a nearly
    singular system a small residual can hide a large error, so with
    `error_tol` it also waits until z is below `error_tol` at every pixel.  `callback(it, distance)`
    then gets the larger of the residual and tol * error / error_tol: how far the solve is from
    stopping, in residual units (started near its answer, it may be within tol by the residual at
    once and still take steps for the error).
    """
    bnorm = dot(b, b).sqrt()
    r = b - apply(x)
    res = float(_div(dot(r, r).sqrt(), bnorm).max())
    error = math.nan
    zs: list[torch.Tensor] = []
    ws: list[torch.Tensor] = []
    spare: list[torch.Tensor] = []  # dropped directions, whose memory the next ones reuse
    it = 0
    while True:
        if error_tol is None and (res <= tol or it >= max_iter):
            return Result(x, it, res, res <= tol)
        z = precond(r, out=spare.pop() if spare else None)
        if error_tol is not None:
            # max |z| without a |z| copy, as max(max z, -min z): the inf-norm over two dims took
            # ten times as long (45 ms against 5 at 12 MP on two cores, every step)
            error = float(torch.maximum(z.amax(), z.amin().neg()))  # one read-back on CUDA
            if callback and it:
                callback(it, max(res, tol * error / error_tol))
            done = res <= tol and error <= error_tol
            if done or it >= max_iter:
                return Result(x, it, res, done, error)
        if len(zs) == restart:  # drop the directions, and the drift of the updated residual
            spare, zs, ws = zs + ws, [], []
            r = apply(x, out=r).neg_().add_(b)  # b - A x, in r's memory
        w = apply(z, out=spare.pop() if spare else None)
        norm2 = dot(w, w)
        for _ in range(2 if ws else 0):  # classical Gram-Schmidt, twice if a pass cancelled most of w
            beta = dots(w, ws)
            subtract(w, ws, beta)
            subtract(z, zs, beta)
            before, norm2 = norm2, dot(w, w)
            if bool((norm2 > 0.25 * before).all()):
                break
        norm = norm2.sqrt()
        _scale(w, norm)
        _scale(z, norm)
        alpha = dot(w, r).float()
        x.addcmul_(z, alpha)
        r.addcmul_(w, alpha, value=-1)
        zs.append(z)
        ws.append(w)
        it += 1
        res = float(_div(dot(r, r).sqrt(), bnorm).max())
        if callback and error_tol is None:
            callback(it, res)
