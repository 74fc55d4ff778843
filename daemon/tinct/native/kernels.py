"""The one doorway to native code: the fused C loops (`_kernels.c`) on the CPU, Triton on CUDA.

The C extension (built by setup.py as an optional extension) takes five raw addresses, C, H, W,
a flag and a thread count (see the comments above each ENTRY in `_kernels.c`); the Triton kernels
(`triton_kernels`, imported the first time a CUDA tensor comes here, never on the CPU path) take
tensors.  Nothing else in Tinct spells either out: the functions here take tensors by name, check
their shapes, and hand them to the C loops or the Triton kernels by the tensors' device.  Where
neither can run (no C build, no Triton, float64, another layout), `fused` says no and the callers
run their plain PyTorch paths instead.

Every function writes into a tensor the caller made (`out`, or `x`/`u` in place) and returns it.
The callers check `fused(...)` first: these functions assume float32 (float64 for the
inner-product outputs), contiguous memory and one device, as `fused` promises.

`CPU_BACKEND = "triton"` sends CPU tensors to the Triton kernels too: with TRITON_INTERPRET=1 set
before Triton is imported, that runs them in Triton's interpreter, how tests/test_triton.py checks
them (and whole solves through them) on machines without a GPU.
"""
from __future__ import annotations

import warnings
from types import ModuleType
from typing import overload

import numpy as np
import torch

try:  # fused C loops for the CPU; plain PyTorch without them
    from . import _kernels
except ImportError:  # pragma: no cover - depends on the build
    _kernels = None

AVAILABLE = _kernels is not None
MAX_VECTORS = 64  # the most stored vectors `dots` and `combine` take in one pass (MAX_VECS in _kernels.c)
CPU_BACKEND = "c"  # or "triton" (interpreted; see above)
_triton: ModuleType | None = None
_triton_error: str | None = None


def triton_kernels() -> ModuleType | None:
    """The Triton kernels module, imported on first use; None where Triton does not import."""
    global _triton, _triton_error
    if _triton is None and _triton_error is None:
        try:
            from . import triton_kernels as module
        except ImportError as exc:
            _triton_error = str(exc)
        else:
            _triton = module
    return _triton


def triton_error() -> str | None:
    """Why the Triton kernels did not import (None if they did or were never asked for)."""
    return _triton_error


def _on_triton(t: torch.Tensor) -> bool:
    return t.device.type == "cuda" or CPU_BACKEND == "triton"


def fused(*tensors: torch.Tensor) -> bool:
    """Whether native kernels can take these tensors: float32, contiguous, one device, and either
    CPU with the C extension built or CUDA with Triton importable."""
    if not tensors or any(t.dtype != torch.float32 or not t.is_contiguous() or t.device != tensors[0].device
                          for t in tensors):
        return False
    if _on_triton(tensors[0]):
        return triton_kernels() is not None
    return _kernels is not None and tensors[0].device.type == "cpu"


def _tk() -> ModuleType:
    assert _triton is not None  # fused() said yes, so it imported
    return _triton


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
    if _on_triton(x):
        _tk().residual(out, x, d, c, b, nc)
        return out
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
    if _on_triton(x):
        _tk().gauss_seidel(x, b, d, c, reverse, nc)
        return x
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
    if _on_triton(out):
        _tk().prolong(out, coarse, weights, accumulate, nc)
        return out
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
    if _on_triton(fine):
        _tk().restrict(out, fine, weights, nc)
        return out
    assert _kernels is not None  # the callers checked fused()
    _kernels.restrict(out.data_ptr(), fine.data_ptr(), weights.data_ptr(), 0, 0, nc, h, w, 0, _threads())
    return out


def restrict_residual(out: torch.Tensor, x: torch.Tensor, b: torch.Tensor, d: torch.Tensor, c: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """out = P^T (b - A x) in one pass that never stores the residual (the same bits as `residual`
    then `restrict` on the CPU)."""
    h, w = d.shape
    _check(tuple(c.shape) == (8, h, w), f"couplings are {tuple(c.shape)}, not (8, {h}, {w})")
    _coarse_of(weights, h, w)
    nc = _grid(x, h, w, "x")
    _check(b.shape == x.shape and out.shape == x.shape[:-2] + weights.shape[-2:], "x, b and out differ in shape")
    if _on_triton(x):
        _tk().restrict(out, x, weights, nc, stencil=(d, c, b))
        return out
    assert _kernels is not None  # the callers checked fused()
    _kernels.restrict_residual(out.data_ptr(), x.data_ptr(), b.data_ptr(), d.data_ptr(), c.data_ptr(),
                               weights.data_ptr(), nc, h, w, _threads())
    return out


def dot(out: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """out (C, 1, 1) float64 = per-channel inner products of u and v (C, H, W)."""
    h, w = u.shape[-2:]
    nc = _grid(u, h, w, "u")
    _check(v.shape == u.shape, "u and v differ in shape")
    _check(out.dtype == torch.float64 and out.numel() == nc, "out must hold one float64 per channel")
    if _on_triton(u):
        _tk().dots(out, u, [v], nc)
        return out
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
    if _on_triton(lightness):
        scale, min_var, floor_ = params.tolist()
        _tk().affinities(out, lightness, scale, min_var, floor_)
        return out
    assert _kernels is not None  # the callers checked fused()
    _kernels.affinities(out.data_ptr(), lightness.data_ptr(), params.data_ptr(), 0, 0, 1, h, w, 0, _threads())
    return out


def _vectors(vs: list[torch.Tensor], like: torch.Tensor) -> None:
    _check(len(vs) <= MAX_VECTORS, f"{len(vs)} vectors, at most {MAX_VECTORS}")
    _check(all(v.shape == like.shape for v in vs), "the vectors differ in shape")


def _addresses(vs: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([v.data_ptr() for v in vs], dtype=torch.int64)


def dots(out: torch.Tensor, u: torch.Tensor, vs: list[torch.Tensor]) -> torch.Tensor:
    """out (len(vs), C, 1, 1) float64 = dot(v, u) for every v in vs, in one pass."""
    h, w = u.shape[-2:]
    nc = _grid(u, h, w, "u")
    _vectors(vs, u)
    _check(out.dtype == torch.float64 and out.numel() == len(vs) * nc, "out must hold len(vs) x C float64")
    if _on_triton(u):
        _tk().dots(out, u, vs, nc)
        return out
    addresses = _addresses(vs)  # kept alive while the kernel reads it
    assert _kernels is not None  # the callers checked fused()
    _kernels.dots(out.data_ptr(), addresses.data_ptr(), u.data_ptr(), len(vs), 0, nc, h, w, 0, _threads())
    return out


def combine(u: torch.Tensor, vs: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """u -= sum_i coef[i] vs[i] in place; coef (len(vs), C, ...) float32, contiguous."""
    h, w = u.shape[-2:]
    nc = _grid(u, h, w, "u")
    _vectors(vs, u)
    _check(coef.dtype == torch.float32 and coef.is_contiguous() and coef.numel() == len(vs) * nc,
           "coef must be len(vs) x C contiguous float32")
    if _on_triton(u):
        _tk().combine(u, vs, coef, nc)
        return u
    addresses = _addresses(vs)  # kept alive while the kernel reads it
    assert _kernels is not None  # the callers checked fused()
    _kernels.combine(u.data_ptr(), addresses.data_ptr(), coef.data_ptr(), len(vs), 0, nc, h, w, 0, _threads())
    return u


def cpu_fused(*tensors: torch.Tensor) -> bool:
    """Whether the C extension itself can take these tensors (CPU float32, contiguous), for the
    kernels that have no Triton twin (`upsample`)."""
    return _kernels is not None and all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def upsample(out: torch.Tensor, small: torch.Tensor, guide: torch.Tensor, guide_small: torch.Tensor,
             factor: int, range_scale: float) -> torch.Tensor:
    """out (C, H, W) = small (C, ceil(H/f), ceil(W/f)) upsampled by `factor`, each fine pixel's 2x2
    nearest proxy pixels weighted bilinearly and by exp(-(guide - guide_small)^2 * range_scale)
    (joint bilateral upsampling).  CPU only: callers check `cpu_fused`."""
    h, w = guide.shape
    hs, ws = -(-h // factor), -(-w // factor)
    nc = _grid(out, h, w, "out")
    _check(tuple(small.shape) == (nc, hs, ws), f"small is {tuple(small.shape)}, not ({nc}, {hs}, {ws})")
    _check(tuple(guide_small.shape) == (hs, ws), f"guide_small is {tuple(guide_small.shape)}, not ({hs}, {ws})")
    params = torch.tensor([range_scale], dtype=torch.float32)  # kept alive while the kernel reads it
    assert _kernels is not None  # the callers checked cpu_fused()
    _kernels.upsample(out.data_ptr(), small.data_ptr(), guide.data_ptr(), guide_small.data_ptr(), params.data_ptr(),
                      nc, h, w, factor, _threads())
    return out


def dense(out: torch.Tensor, b: torch.Tensor, transposed: torch.Tensor) -> torch.Tensor:
    """out (C, N) = b (C, N) @ transposed (N, N): `b @ matrix.T` with every sum in index order, so
    the same bits at any thread count.  CPU only (`cpu_fused`); elsewhere the caller multiplies."""
    n = transposed.shape[0]
    _check(transposed.shape == (n, n), f"the matrix is {tuple(transposed.shape)}, not square")
    _check(b.dim() == 2 and b.shape[1] == n and out.shape == b.shape, f"b and out must be (C, {n})")
    assert _kernels is not None  # the callers checked cpu_fused()
    _kernels.dense(out.data_ptr(), transposed.data_ptr(), b.data_ptr(), 0, 0, b.shape[0], n, 1, 0, _threads())
    return out

DEPTHS = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.float32): 2}  # what lightness/encode take
# The same depths as tensors for the Triton kernels: 16-bit pixels travel as int16 with the same bits (torch
# has no uint16 before 2.3, and only a storage-only one since).
TRAVELS_AS = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.int16, np.dtype(np.float32): torch.float32}
TENSOR_DEPTHS = {TRAVELS_AS[dtype]: depth for dtype, depth in DEPTHS.items()}
_BITS_OF = {np.dtype(np.uint16): np.dtype(np.int16)}


def cpu_pixels(image: np.ndarray, *tensors: torch.Tensor) -> bool:
    """Whether `lightness`/`encode` can take the caller's pixels (a C-contiguous array of a depth
    in DEPTHS) with these tensors (`cpu_fused`)."""
    return image.dtype in DEPTHS and image.flags.c_contiguous and cpu_fused(*tensors)


def triton_pixels(device: torch.device) -> bool:
    """Whether `lightness`/`encode` run as Triton kernels on `device` (CUDA, or the interpreter with
    CPU_BACKEND = "triton"), taking pixels moved there by `to_device`."""
    return (device.type == "cuda" or CPU_BACKEND == "triton") and triton_kernels() is not None


def to_device(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """The caller's pixels (a depth in DEPTHS) on `device` in their own width, one copy of 1, 2 or 4
    bytes a sample: a tensor of dtype TRAVELS_AS[image.dtype]."""
    image = np.ascontiguousarray(image)
    with warnings.catch_warnings():  # a read-only array (Pillow's) is only read, here as by the copy
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(image.view(_BITS_OF.get(image.dtype, image.dtype))).to(device)


def from_device(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """A tensor `to_device` made (or `encode` wrote) back as the caller's `dtype`."""
    return t.cpu().numpy().view(dtype)


def lightness(out: torch.Tensor, image: np.ndarray | torch.Tensor, table: torch.Tensor | None,
              y_row: torch.Tensor) -> torch.Tensor:
    """out (H, W) = Lab lightness of the caller's pixels `image` (H, W, C), C = 1, 2 (grey, alpha
    ignored) or 3, 4; integer pixels are decoded by `table` (linear value of each code), float32
    ones by the sRGB curve; y_row (3,) float32 mixes Y from linear RGB.  On the CPU (`cpu_pixels`)
    image is the caller's array; for Triton (`triton_pixels`) it is `to_device`'s tensor, and out,
    table and y_row are on its device too."""
    h, w = out.shape
    _check(image.shape[:2] == (h, w) and image.ndim == 3, f"image is {tuple(image.shape)}, not ({h}, {w}, C)")
    _check(1 <= image.shape[2] <= 4, f"image has {image.shape[2]} channels")
    depth = TENSOR_DEPTHS[image.dtype] if isinstance(image, torch.Tensor) else DEPTHS[image.dtype]
    _check((table is None) == (depth == DEPTHS[np.dtype(np.float32)]), "integer pixels need their table")
    _check(table is None or table.numel() == 1 << (8 * image.itemsize), "the table has one entry per code")
    _check(y_row.numel() == 3, "y_row has three weights")
    if isinstance(image, torch.Tensor):
        _check(_on_triton(out) and fused(out, y_row, *([] if table is None else [table]))
               and image.is_contiguous() and image.device == out.device,
               "tensor pixels go to the Triton kernels: contiguous, on one device with out, table and y_row")
        _tk().lightness(out, image, table, y_row, image.shape[2], depth)
        return out
    assert _kernels is not None  # the callers checked cpu_pixels()
    _kernels.lightness(out.data_ptr(), image.ctypes.data, 0 if table is None else table.data_ptr(), y_row.data_ptr(),
                       0, image.shape[2], h, w, depth, _threads())
    return out


@overload
def encode(out: np.ndarray, L: torch.Tensor, ab: torch.Tensor, params: torch.Tensor,
           alpha: np.ndarray | None) -> np.ndarray: ...
@overload
def encode(out: torch.Tensor, L: torch.Tensor, ab: torch.Tensor, params: torch.Tensor,
           alpha: torch.Tensor | None) -> torch.Tensor: ...
def encode(out: np.ndarray | torch.Tensor, L: torch.Tensor, ab: torch.Tensor, params: torch.Tensor,
           alpha: np.ndarray | torch.Tensor | None) -> np.ndarray | torch.Tensor:
    """out (H, W, 3 or 4) in the caller's depth = sRGB of L (H, W) and ab (2, H, W) with L kept
    (chroma scaled into the gamut, as lab.lab_to_srgb_keep_l), rounded half up to integers;
    the fourth channel copies alpha (H, W, same depth).  params float32: XYZ/white -> RGB (3 x 3),
    the linear values at which 8-bit codes 1..255 begin, +inf, and the code at each linear value
    k / 4096 (k = 0..4096; lab.native_constants).  On the CPU (`cpu_pixels`)
    out and alpha are the caller's arrays; for Triton (`triton_pixels`) tensors of a dtype in
    TENSOR_DEPTHS on L's device (`to_device`; `from_device` brings out back)."""
    h, w = L.shape
    _check(out.shape[:2] == (h, w) and out.shape[2] in (3, 4), f"out is {tuple(out.shape)}, not ({h}, {w}, 3 or 4)")
    _check(tuple(ab.shape) == (2, h, w), f"ab is {tuple(ab.shape)}, not (2, {h}, {w})")
    _check(params.numel() == 9 + 256 + 4097, "params: a 3 x 3 matrix, 256 code starts, 4097 codes")
    _check((alpha is not None) == (out.shape[2] == 4), "a fourth channel needs its alpha")
    if alpha is not None:
        contiguous = alpha.is_contiguous() if isinstance(alpha, torch.Tensor) else alpha.flags.c_contiguous
        _check(alpha.shape == (h, w) and alpha.dtype == out.dtype and contiguous,
               "alpha must be (H, W), contiguous, in out's depth")
    if isinstance(out, torch.Tensor):
        _check(_on_triton(L) and fused(L, ab, params) and out.is_contiguous() and out.device == L.device
               and (alpha is None or isinstance(alpha, torch.Tensor) and alpha.device == L.device),
               "tensor pixels go to the Triton kernels: contiguous, on one device with L, ab, params and alpha")
        _tk().encode(out, L, ab, params, alpha, TENSOR_DEPTHS[out.dtype])
        return out
    if isinstance(alpha, torch.Tensor):
        raise ValueError("tinct kernels: the caller's array takes alpha as an array too")
    assert _kernels is not None  # the callers checked cpu_pixels()
    _kernels.encode(out.ctypes.data, L.data_ptr(), ab.data_ptr(), params.data_ptr(),
                    0 if alpha is None else alpha.ctypes.data, out.shape[2], h, w, DEPTHS[out.dtype], _threads())
    return out
