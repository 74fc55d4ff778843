"""Preconditioned Krylov solvers for a batch of right-hand sides sharing one operator.

The a and b colour channels are solved together: tensors are (C, H, W) and every
scalar (step lengths, residual norms) is per channel.  Inner products are
accumulated in float64 because at millions of pixels float32 sums lose the
digits that decide convergence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Result:
    x: torch.Tensor
    iterations: int
    residual: float  # worst channel's ||b - Ax|| / ||b||
    converged: bool


def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-channel inner product, shape (C, 1, 1), float64."""
    return (u * v).sum(dim=(-2, -1), dtype=torch.float64, keepdim=True)


def _div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den is 0 (a channel that already converged exactly)."""
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, torch.zeros_like(num), num / safe)


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


def bicgstab(apply: Operator, b: torch.Tensor, x: torch.Tensor, precond: Operator, tol: float,
             max_iter: int, callback: Callable[[int, float], None] | None = None) -> Result:
    """Right-preconditioned BiCGStab (van der Vorst 1992) for a non-symmetric operator.

    The residual is recomputed from scratch when the shadow vector loses
    orthogonality (rho -> 0), the usual restart that keeps it from breaking down.
    """
    bnorm = dot(b, b).sqrt()
    r = b - apply(x)
    shadow = r.clone()
    rho = alpha = omega = torch.ones_like(bnorm)
    v = torch.zeros_like(b)
    p = torch.zeros_like(b)
    it = 0
    res = _relres(r, bnorm)
    while it < max_iter and float(res.max()) > tol:
        rho_new = dot(shadow, r)
        if bool((rho_new.abs() < 1e-30 * dot(r, r).clamp_min(1e-300)).any()):
            r = b - apply(x)
            shadow, p, v = r.clone(), torch.zeros_like(b), torch.zeros_like(b)
            rho = alpha = omega = torch.ones_like(bnorm)
            rho_new = dot(shadow, r)
        beta = (_div(rho_new, rho) * _div(alpha, omega)).float()
        p = r + beta * (p - omega.float() * v)
        y = precond(p)
        v = apply(y)
        alpha = _div(rho_new, dot(shadow, v))
        x.add_(alpha.float() * y)
        s = r - alpha.float() * v
        it += 1
        res = _relres(s, bnorm)
        if float(res.max()) <= tol:
            r = s
            if callback:
                callback(it, float(res.max()))
            break
        z = precond(s)
        t = apply(z)
        omega = _div(dot(t, s), dot(t, t))
        x.add_(omega.float() * z)
        r = s - omega.float() * t
        rho = rho_new
        res = _relres(r, bnorm)
        if callback:
            callback(it, float(res.max()))
    return Result(x, it, float(res.max()), float(res.max()) <= tol)


def gmres(apply: Operator, b: torch.Tensor, x: torch.Tensor, precond: Operator, tol: float,
          max_iter: int, restart: int = 20, callback: Callable[[int, float], None] | None = None) -> Result:
    """Right-preconditioned restarted GMRES: the residual never grows, whatever the spectrum.

    Keeps `restart` + 1 basis vectors; the correction M^-1 V y is formed with one
    extra preconditioner call per cycle instead of storing M^-1 V as well.
    """
    bnorm = dot(b, b).sqrt()
    nc = b.shape[0]
    it = 0
    while True:
        r = b - apply(x)
        beta = dot(r, r).sqrt()
        res = _div(beta, bnorm)
        if float(res.max()) <= tol or it >= max_iter:
            return Result(x, it, float(res.max()), float(res.max()) <= tol)
        basis = [_div(r, beta.float())]
        hess = torch.zeros(nc, restart + 1, restart, dtype=torch.float64)
        e1 = torch.zeros(nc, restart + 1, 1, dtype=torch.float64)
        e1[:, 0, 0] = beta.view(nc).cpu()
        for j in range(restart):
            w = apply(precond(basis[j]))
            for i in range(j + 1):  # modified Gram-Schmidt
                hij = dot(w, basis[i])
                hess[:, i, j] = hij.view(nc).cpu()
                w = w - hij.float() * basis[i]
            hn = dot(w, w).sqrt()
            hess[:, j + 1, j] = hn.view(nc).cpu()
            basis.append(_div(w, hn.float()))
            h, g = hess[:, :j + 2, :j + 1], e1[:, :j + 2]
            y = torch.linalg.lstsq(h, g).solution
            est = float(((g - h @ y).norm(dim=(1, 2)) / bnorm.view(nc).cpu().clamp_min(1e-300)).max())
            it += 1
            if callback:
                callback(it, est)
            if est <= tol or it >= max_iter:
                break
        coef = y.to(device=b.device, dtype=b.dtype)
        x = x + precond(sum(coef[:, i].view(nc, 1, 1) * v for i, v in enumerate(basis[:coef.shape[1]])))
