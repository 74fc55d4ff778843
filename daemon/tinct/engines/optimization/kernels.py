"""The one doorway to the fused C loops (`_kernels.c`, built by setup.py as an optional extension).

The extension's entry points all take five raw addresses, C, H, W, a flag and a thread count
(see the comments above each ENTRY in `_kernels.c`).  Nothing else in Tinct spells that out:
the functions here take tensors by name, check their shapes, and pass the addresses in the
order the C code reads them.  Where the extension was not built, `AVAILABLE` is False, `fused`
says no to every tensor, and the callers run their plain PyTorch paths instead.

Every function writes into a tensor the caller made (`out`, or `x`/`u` in place) and returns it.
The callers check `fused(...)` first: these functions assume CPU, float32 (float64 for the
inner-product outputs) and contiguous memory, as `fused` promises.
"""
from __future__ import annotations

import torch

try:  # fused C loops for the CPU; plain PyTorch without them
    from . import _kernels
except ImportError:  # pragma: no cover - depends on the build
    _kernels = None

AVAILABLE = _kernels is not None
MAX_VECTORS = 64  # the most stored vectors `dots` and `combine` take in one pass (MAX_VECS in _kernels.c)


def fused(*tensors: torch.Tensor) -> bool:
    """Whether the C kernels can take these tensors (CPU float32, contiguous)."""
    return _kernels is not None and all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"tinct kernels: {what}")


def _grid(x: torch.Tensor, h: int, w: int, name: str) -> int:
    """The channel count of x, which must be (..., h, w)."""
    _check(x.dim() >= 2 and tuple(x.shape[-2:]) == (h, w), f"{name} is {tuple(x.shape)}, not (..., {h}, {w})")
    return x.numel() // (h * w)


def _threads() -> int:
    return torch.get_num_threads()


def residual(out: torch.Tensor, x: torch.Tensor, d: torch.Tensor, c: torch.Tensor,
             b: torch.Tensor | None = None) -> torch.Tensor:
    """out = b - A x, or A x when b is None, for the stencil A = (d (H, W), c (8, H, W))."""
    h, w = d.shape
    _check(tuple(c.shape) == (8, h, w), f"couplings are {tuple(c.shape)}, not (8, {h}, {w})")
    nc = _grid(x, h, w, "x")
    _check(out.shape == x.shape and (b is None or b.shape == x.shape), "out, x and b differ in shape")
    assert _kernels is not None  # the callers checked fused()
    _kernels.residual(out.data_ptr(), x.data_ptr(), b.data_ptr() if b is not None else 0,
                      d.data_ptr(), c.data_ptr(), nc, h, w, 0, _threads())
    return out


def gauss_seidel(x: torch.Tensor, b: torch.Tensor, d: torch.Tensor, c: torch.Tensor,
                 reverse: bool = False) -> torch.Tensor:
    """One four-colour Gauss-Seidel sweep of A x = b, in place on x."""
    h, w = d.shape
    _check(tuple(c.shape) == (8, h, w), f"couplings are {tuple(c.shape)}, not (8, {h}, {w})")
    nc = _grid(x, h, w, "x")
    _check(b.shape == x.shape, "x and b differ in shape")
    assert _kernels is not None  # the callers checked fused()
    _kernels.gauss_seidel(x.data_ptr(), b.data_ptr(), d.data_ptr(), c.data_ptr(), 0,
                          nc, h, w, int(reverse), _threads())
    return x


def _coarse_of(weights: torch.Tensor, h: int, w: int) -> None:
    _check(tuple(weights.shape) == (8, (h + 1) // 2, (w + 1) // 2),
           f"interpolation weights are {tuple(weights.shape)}, not (8, {(h + 1) // 2}, {(w + 1) // 2})")


def prolong(out: torch.Tensor, coarse: torch.Tensor, weights: torch.Tensor, accumulate: bool = False) -> torch.Tensor:
    """out = P coarse (or out += P coarse with `accumulate`); out is the fine grid (..., H, W)."""
    h, w = out.shape[-2:]
    _coarse_of(weights, h, w)
    nc = _grid(out, h, w, "out")
    _check(coarse.shape == out.shape[:-2] + weights.shape[-2:], f"coarse is {tuple(coarse.shape)}")
    assert _kernels is not None  # the callers checked fused()
    _kernels.prolong(out.data_ptr(), coarse.data_ptr(), weights.data_ptr(), 0, 0, nc, h, w, int(accumulate),
                     _threads())
    return out


def restrict(out: torch.Tensor, fine: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out = P^T fine: every fine pixel hands its value back with its interpolation weights."""
    h, w = fine.shape[-2:]
    _coarse_of(weights, h, w)
    nc = _grid(fine, h, w, "fine")
    _check(out.shape == fine.shape[:-2] + weights.shape[-2:], f"out is {tuple(out.shape)}")
    assert _kernels is not None  # the callers checked fused()
    _kernels.restrict(out.data_ptr(), fine.data_ptr(), weights.data_ptr(), 0, 0, nc, h, w, 0, _threads())
    return out


def dot(out: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """out (C, 1, 1) float64 = per-channel inner products of u and v (C, H, W)."""
    h, w = u.shape[-2:]
    nc = _grid(u, h, w, "u")
    _check(v.shape == u.shape, "u and v differ in shape")
    _check(out.dtype == torch.float64 and out.numel() == nc, "out must hold one float64 per channel")
    assert _kernels is not None  # the callers checked fused()
    _kernels.dot(out.data_ptr(), u.data_ptr(), v.data_ptr(), 0, 0, nc, h, w, 0, _threads())
    return out


def affinities(out: torch.Tensor, lightness: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """out (8, H, W) = the Levin weights of lightness (H, W); params = (0.6/edge sensitivity, min variance,
    weight floor) as float32."""
    _check(lightness.dim() == 2, f"lightness is {tuple(lightness.shape)}, not (H, W)")
    h, w = lightness.shape
    _check(tuple(out.shape) == (8, h, w), f"out is {tuple(out.shape)}, not (8, {h}, {w})")
    _check(params.numel() == 3 and params.dtype == torch.float32, "params must be three float32")
    assert _kernels is not None  # the callers checked fused()
    _kernels.affinities(out.data_ptr(), lightness.data_ptr(), params.data_ptr(), 0, 0, 1, h, w, 0, _threads())
    return out


def _addresses(vs: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    _check(len(vs) <= MAX_VECTORS, f"{len(vs)} vectors, at most {MAX_VECTORS}")
    _check(all(v.shape == like.shape for v in vs), "the vectors differ in shape")
    return torch.tensor([v.data_ptr() for v in vs], dtype=torch.int64)


def dots(out: torch.Tensor, u: torch.Tensor, vs: list[torch.Tensor]) -> torch.Tensor:
    """out (len(vs), C, 1, 1) float64 = dot(v, u) for every v in vs, in one pass."""
    h, w = u.shape[-2:]
    nc = _grid(u, h, w, "u")
    addresses = _addresses(vs, u)  # kept alive while the kernel reads it
    _check(out.dtype == torch.float64 and out.numel() == len(vs) * nc, "out must hold len(vs) x C float64")
    assert _kernels is not None  # the callers checked fused()
    _kernels.dots(out.data_ptr(), addresses.data_ptr(), u.data_ptr(), len(vs), 0, nc, h, w, 0, _threads())
    return out


def combine(u: torch.Tensor, vs: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """u -= sum_i coef[i] vs[i] in place; coef (len(vs), C, ...) float32, contiguous."""
    h, w = u.shape[-2:]
    nc = _grid(u, h, w, "u")
    addresses = _addresses(vs, u)  # kept alive while the kernel reads it
    _check(coef.dtype == torch.float32 and coef.is_contiguous() and coef.numel() == len(vs) * nc,
           "coef must be len(vs) x C contiguous float32")
    assert _kernels is not None  # the callers checked fused()
    _kernels.combine(u.data_ptr(), addresses.data_ptr(), coef.data_ptr(), len(vs), 0, nc, h, w, 0, _threads())
    return u
