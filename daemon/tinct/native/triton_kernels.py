"""The solver's hot loops as Triton kernels, for CUDA tensors (the C loops of `_kernels.c` are the CPU's).

Only `kernels` imports this module, and only when a CUDA tensor (or, in the tests, a CPU tensor under
TRITON_INTERPRET=1) reaches it: the CPU path never imports Triton.  Each kernel computes what its C
twin computes, in the same order of operations, so under the interpreter the results agree bit for
bit except where noted (`affinities`: exp; `dot`/`dots`: float64 sums in another order).  Compiled
for a GPU they differ by rounding only (fused multiply-adds, the GPU's fast division).

Layout as in `_kernels.c`: x, b (C, H, W), d (H, W), c (8, H, W) in the order of stencil.OFFSETS,
interpolation weights (8, Hc, Wc); all float32, contiguous, one device.  Offsets are int32, which
bounds an image to 2**31 / 9 pixels (238 MP) with the nine Galerkin probes.

Bytes per pixel (`BYTES`, in each docstring): DRAM traffic per fine pixel of one launch over the
whole image for C channels, counting every 32-byte sector a kernel touches once (neighbour reads
and a second channel's couplings come from L1/L2).  Coarse-grid arrays count at a quarter.
"""
# pyright: reportArgumentType=false, reportCallIssue=false, reportGeneralTypeIssues=false, reportOperatorIssue=false
# (Triton code is Python in syntax only: a launch passes plain values for tl.constexpr parameters and
# launch options such as num_warps, tl.range / tl.static_range loops exist only when compiled, and a
# block's reduction compares as a scalar)
from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# Stencil tile: 8 rows x 64 columns (256-byte rows) on 8 warps, two pixels a thread (80 registers; 4 warps
# need 140); the restriction's coarse tile 4 x 32 on 4 warps, a coarse point a thread.  The interpreter runs
# a launch's programs one after another at a fixed cost per operation, so it gets taller tiles (same masks).
BH, BW = (32 if os.environ.get("TRITON_INTERPRET") == "1" else 8), 64
WARPS = 8
RH, RW, RWARPS = BH // 2, BW // 2, 4
BLOCK = 1024          # reductions and combinations: contiguous pixels per program
PER_LAUNCH = 8        # vectors per inner-product or combination pass
INV_LOG100 = float(torch.tensor(1.0) / torch.log(torch.tensor(100.0)))  # 1.0f / logf(100.0f), as the C code


@triton.jit
def _coupled(x, c, r, i, j, h, w, n, inside):
    """sum_k c[k, r] x[r + OFFSETS[k]] over one tile, neighbours outside the image read as 0, in the C
    kernels' order: the rows above and below, then left and right."""
    up, down, left, right = i > 0, i < h - 1, j > 0, j < w - 1
    m0, m1, m2 = inside & up & left, inside & up, inside & up & right
    m3, m4 = inside & left, inside & right
    m5, m6, m7 = inside & down & left, inside & down, inside & down & right
    acc = tl.load(c + r, mask=m0, other=0.0) * tl.load(x + r - w - 1, mask=m0, other=0.0)
    acc += tl.load(c + n + r, mask=m1, other=0.0) * tl.load(x + r - w, mask=m1, other=0.0)
    acc += tl.load(c + 2 * n + r, mask=m2, other=0.0) * tl.load(x + r - w + 1, mask=m2, other=0.0)
    acc += tl.load(c + 5 * n + r, mask=m5, other=0.0) * tl.load(x + r + w - 1, mask=m5, other=0.0)
    acc += tl.load(c + 6 * n + r, mask=m6, other=0.0) * tl.load(x + r + w, mask=m6, other=0.0)
    acc += tl.load(c + 7 * n + r, mask=m7, other=0.0) * tl.load(x + r + w + 1, mask=m7, other=0.0)
    acc += tl.load(c + 3 * n + r, mask=m3, other=0.0) * tl.load(x + r - 1, mask=m3, other=0.0)
    acc += tl.load(c + 4 * n + r, mask=m4, other=0.0) * tl.load(x + r + 1, mask=m4, other=0.0)
    return acc


@triton.jit
def _residual_at(x, b, d, c, i, j, h, w, n, HAS_B: tl.constexpr):
    """b - A x (or A x) at the tile (i, j) of one channel (x, b already offset to it); 0 outside."""
    inside = (i >= 0) & (i < h) & (j >= 0) & (j < w)
    r = i * w + j
    ax = tl.load(d + r, mask=inside, other=0.0) * tl.load(x + r, mask=inside, other=0.0) \
        - _coupled(x, c, r, i, j, h, w, n, inside)
    if HAS_B:
        return tl.load(b + r, mask=inside, other=0.0) - ax
    return ax


@triton.jit
def residual_kernel(out, x, b, d, c, nc, h, w, HAS_B: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """out = b - A x (or A x).  BYTES = 36 + 12 C with b (36 + 8 C without): c 32, d 4, x/b/out 4 C each."""
    i = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
    j = tl.program_id(0) * BW + tl.arange(0, BW)[None, :]
    n = h * w
    for ch in range(nc):
        y = _residual_at(x + ch * n, b + ch * n, d, c, i, j, h, w, n, HAS_B)
        tl.store(out + ch * n + i * w + j, y, mask=(i < h) & (j < w))


@triton.jit
def gauss_seidel_kernel(x, b, d, c, nc, h, w, ci, cj, BH: tl.constexpr, BW: tl.constexpr):
    """x = (b + sum_k c_k x_k) / d on the colour (ci, cj) = (row % 2, col % 2); four launches a sweep.

    BYTES per sweep = 72 + 32 C, an upper bound: a colour's pixels are every other one of every
    other row, so a launch fetches every sector of half the rows of c, d, b and x's writes
    (18 + 4 C) and of all rows of x (its neighbours, 4 C); four launches, none of it assumed to
    stay in L2 between them (it does on small grids).
    """
    i = ci + 2 * (tl.program_id(1) * BH + tl.arange(0, BH)[:, None])
    j = cj + 2 * (tl.program_id(0) * BW + tl.arange(0, BW)[None, :])
    n = h * w
    inside = (i < h) & (j < w)
    r = i * w + j
    dd = tl.load(d + r, mask=inside, other=1.0)
    for ch in range(nc):
        xc = x + ch * n
        acc = _coupled(xc, c, r, i, j, h, w, n, inside)
        tl.store(xc + r, (tl.load(b + ch * n + r, mask=inside, other=0.0) + acc) / dd, mask=inside)


@triton.jit
def _interpolated(xc, wt, i, j, wc, m, inside):
    """(P xc) at the fine tile (i, j) of an odd-sized grid: the black-box interpolation's 1, 2 or 4 terms."""
    ei, ej = (i % 2) == 0, (j % 2) == 0
    q = (i // 2) * wc + j // 2
    here = tl.load(xc + q, mask=inside, other=0.0)
    east = tl.load(xc + q + 1, mask=inside & ~ej, other=0.0)
    south = tl.load(xc + q + wc, mask=inside & ~ei, other=0.0)
    corner = tl.load(xc + q + wc + 1, mask=inside & ~ei & ~ej, other=0.0)
    row = tl.load(wt + q, mask=inside & ei & ~ej, other=0.0) * here \
        + tl.load(wt + m + q, mask=inside & ei & ~ej, other=0.0) * east
    col = tl.load(wt + 2 * m + q, mask=inside & ~ei & ej, other=0.0) * here \
        + tl.load(wt + 3 * m + q, mask=inside & ~ei & ej, other=0.0) * south
    centre = inside & ~ei & ~ej
    mid = tl.load(wt + 4 * m + q, mask=centre, other=0.0) * here \
        + tl.load(wt + 5 * m + q, mask=centre, other=0.0) * east \
        + tl.load(wt + 6 * m + q, mask=centre, other=0.0) * south \
        + tl.load(wt + 7 * m + q, mask=centre, other=0.0) * corner
    return tl.where(ei & ej, here, tl.where(ei, row, tl.where(ej, col, mid)))


@triton.jit
def prolong_kernel(out, xc, wt, nc, h, w, ADD: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """out = P xc (or out += P xc).  BYTES = 8 + 5 C (+ 4 C with ADD): weights 32 and xc 4 C on the
    quarter-size grid, out 4 C."""
    i = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
    j = tl.program_id(0) * BW + tl.arange(0, BW)[None, :]
    hc, wc = (h + 1) // 2, (w + 1) // 2
    n, m = h * w, hc * wc
    inside = (i < h) & (j < w)
    for ch in range(nc):
        v = _interpolated(xc + ch * m, wt, i, j, wc, m, inside)
        dst = out + ch * n + i * w + j
        if ADD:
            v = tl.load(dst, mask=inside, other=0.0) + v
        tl.store(dst, v, mask=inside)


@triton.jit
def _gathered(f, wt, ci, cj, h, w, wc, m, inside, b, d, c, FUSED: tl.constexpr, HAS_B: tl.constexpr):
    """(P^T f) at the coarse tile (ci, cj): its fine pixel and the eight around it, each with the weight
    it interpolates this coarse point with, in the C loop's order (centre, E, W, S, N, SE, SW, NE, NW:
    tap t uses weight plane t - 1).  FUSED: f is the residual b - A x (x = f), made on the fly.  A loop,
    not unrolled, so one tap's loads are live at a time (unrolled, the fused form spills)."""
    n = h * w
    i, j = 2 * ci, 2 * cj
    acc = tl.zeros(ci.shape, tl.float32) + tl.zeros(cj.shape, tl.float32)
    for tap in tl.range(0, 9, loop_unroll_factor=1):
        t = tl.full((), tap, tl.int32)  # a tensor in the interpreter too
        dy = ((t == 3) | (t == 5) | (t == 6)).to(tl.int32) - ((t == 4) | (t == 7) | (t == 8)).to(tl.int32)
        dx = ((t == 1) | (t == 5) | (t == 7)).to(tl.int32) - ((t == 2) | (t == 6) | (t == 8)).to(tl.int32)
        fi, fj = i + dy, j + dx
        there = inside & (fi >= 0) & (fi < h) & (fj >= 0) & (fj < w)
        if FUSED:
            v = _residual_at(f, b, d, c, fi, fj, h, w, n, HAS_B)
        else:
            v = tl.load(f + fi * w + fj, mask=there, other=0.0)
        q = (ci + tl.minimum(dy, 0)) * wc + cj + tl.minimum(dx, 0)
        weight = tl.load(wt + tl.maximum(t - 1, 0) * m + q, mask=there, other=0.0)
        acc += tl.where(t == 0, 1.0, weight) * v
    return acc


@triton.jit
def restrict_kernel(out, f, wt, b, d, c, nc, h, w, FUSED: tl.constexpr, HAS_B: tl.constexpr,
                    BH: tl.constexpr, BW: tl.constexpr):
    """out = P^T f, or with FUSED out = P^T (b - A f): the residual is never stored.

    BYTES = 8 + 5 C (f 4 C; weights 32 and out 4 C on the quarter grid); FUSED: 44 + 9 C with b
    (c 32, d 4, f and b 4 C each, weights and out as before) where residual + restrict cost
    44 + 17 C: the residual's store and reload (8 C) saved, at ~2.25x the residual's arithmetic.
    """
    ci = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
    cj = tl.program_id(0) * BW + tl.arange(0, BW)[None, :]
    hc, wc = (h + 1) // 2, (w + 1) // 2
    n, m = h * w, hc * wc
    inside = (ci < hc) & (cj < wc)
    for ch in range(nc):
        v = _gathered(f + ch * n, wt, ci, cj, h, w, wc, m, inside, b + ch * n, d, c, FUSED, HAS_B)
        tl.store(out + ch * m + ci * wc + cj, v, mask=inside)


@triton.jit
def _pick(k: tl.constexpr, v0, v1, v2, v3, v4, v5, v6, v7):
    """The k-th of eight pointers, chosen when the kernel is compiled."""
    if k == 0:
        return v0
    elif k == 1:
        return v1
    elif k == 2:
        return v2
    elif k == 3:
        return v3
    elif k == 4:
        return v4
    elif k == 5:
        return v5
    elif k == 6:
        return v6
    else:
        return v7


@triton.jit
def dots_kernel(partial, u, v0, v1, v2, v3, v4, v5, v6, v7, nc, n, COUNT: tl.constexpr, BLOCK: tl.constexpr):
    """partial[k, ch, block] = sum of v_k u over one block of channel ch in float64, for COUNT <= 8 vectors
    in one pass over u.  The vectors come as arguments, not as a table of addresses in memory, so a
    launch copies nothing from the host and a CUDA graph can hold it.  BYTES = 4 C (COUNT + 1)."""
    blk, ch = tl.program_id(0), tl.program_id(1)
    p = ch * n + blk * BLOCK + tl.arange(0, BLOCK)
    inside = blk * BLOCK + tl.arange(0, BLOCK) < n
    a = tl.load(u + p, mask=inside, other=0.0).to(tl.float64)
    for k in tl.static_range(COUNT):
        v = tl.load(_pick(k, v0, v1, v2, v3, v4, v5, v6, v7) + p, mask=inside, other=0.0)
        tl.store(partial + (k * nc + ch) * tl.num_programs(0) + blk, tl.sum(a * v.to(tl.float64), axis=0))


@triton.jit
def combine_kernel(u, coef, v0, v1, v2, v3, v4, v5, v6, v7, nc, n, COUNT: tl.constexpr, BLOCK: tl.constexpr):
    """u -= sum_k coef[k, ch] v_k for COUNT <= 8 vectors (float32, in order k = 0, 1, ...).
    BYTES = 4 C (COUNT + 2)."""
    blk, ch = tl.program_id(0), tl.program_id(1)
    p = ch * n + blk * BLOCK + tl.arange(0, BLOCK)
    inside = blk * BLOCK + tl.arange(0, BLOCK) < n
    acc = tl.zeros((BLOCK,), tl.float32)
    for k in tl.static_range(COUNT):
        acc += tl.load(coef + k * nc + ch) * tl.load(_pick(k, v0, v1, v2, v3, v4, v5, v6, v7) + p, mask=inside,
                                                     other=0.0)
    tl.store(u + p, tl.load(u + p, mask=inside, other=0.0) - acc, mask=inside)


@triton.jit
def affinities_kernel(wt, y, h, w, scale, min_var, floor_, inv_log100, BH: tl.constexpr, BW: tl.constexpr):
    """The Levin weights (8, H, W) of the lightness (H, W), as the C loop.  BYTES = 36: y 4, wt 32."""
    i = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
    j = tl.program_id(0) * BW + tl.arange(0, BW)[None, :]
    n = h * w
    inside = (i < h) & (j < w)
    r = i * w + j
    yc = tl.load(y + r, mask=inside, other=0.0)
    up, down, left, right = i > 0, i < h - 1, j > 0, j < w - 1
    ok0, ok1, ok2, ok3 = inside & up & left, inside & up, inside & up & right, inside & left
    ok4, ok5, ok6, ok7 = inside & right, inside & down & left, inside & down, inside & down & right
    y0 = tl.load(y + r - w - 1, mask=ok0, other=0.0)
    y1 = tl.load(y + r - w, mask=ok1, other=0.0)
    y2 = tl.load(y + r - w + 1, mask=ok2, other=0.0)
    y3 = tl.load(y + r - 1, mask=ok3, other=0.0)
    y4 = tl.load(y + r + 1, mask=ok4, other=0.0)
    y5 = tl.load(y + r + w - 1, mask=ok5, other=0.0)
    y6 = tl.load(y + r + w, mask=ok6, other=0.0)
    y7 = tl.load(y + r + w + 1, mask=ok7, other=0.0)
    count = 1 + ok0.to(tl.int32) + ok1.to(tl.int32) + ok2.to(tl.int32) + ok3.to(tl.int32) \
        + ok4.to(tl.int32) + ok5.to(tl.int32) + ok6.to(tl.int32) + ok7.to(tl.int32)
    mean = (yc + y0 + y1 + y2 + y3 + y4 + y5 + y6 + y7) / count.to(tl.float32)
    var = (yc - mean) * (yc - mean)
    var += tl.where(ok0, (y0 - mean) * (y0 - mean), 0.0)
    var += tl.where(ok1, (y1 - mean) * (y1 - mean), 0.0)
    var += tl.where(ok2, (y2 - mean) * (y2 - mean), 0.0)
    var += tl.where(ok3, (y3 - mean) * (y3 - mean), 0.0)
    var += tl.where(ok4, (y4 - mean) * (y4 - mean), 0.0)
    var += tl.where(ok5, (y5 - mean) * (y5 - mean), 0.0)
    var += tl.where(ok6, (y6 - mean) * (y6 - mean), 0.0)
    var += tl.where(ok7, (y7 - mean) * (y7 - mean), 0.0)
    var = var / count.to(tl.float32)
    d0, d1, d2, d3 = (y0 - yc) * (y0 - yc), (y1 - yc) * (y1 - yc), (y2 - yc) * (y2 - yc), (y3 - yc) * (y3 - yc)
    d4, d5, d6, d7 = (y4 - yc) * (y4 - yc), (y5 - yc) * (y5 - yc), (y6 - yc) * (y6 - yc), (y7 - yc) * (y7 - yc)
    big = float("inf")
    nearest = tl.minimum(tl.minimum(tl.minimum(tl.where(ok0, d0, big), tl.where(ok1, d1, big)),
                                    tl.minimum(tl.where(ok2, d2, big), tl.where(ok3, d3, big))),
                         tl.minimum(tl.minimum(tl.where(ok4, d4, big), tl.where(ok5, d5, big)),
                                    tl.minimum(tl.where(ok6, d6, big), tl.where(ok7, d7, big))))
    sigma = scale * var
    sigma = tl.where(nearest * inv_log100 > sigma, nearest * inv_log100, sigma)
    sigma = tl.where(sigma < min_var, min_var, sigma)
    e0 = tl.where(ok0, tl.maximum(tl.exp(-d0 / sigma), floor_), 0.0)
    e1 = tl.where(ok1, tl.maximum(tl.exp(-d1 / sigma), floor_), 0.0)
    e2 = tl.where(ok2, tl.maximum(tl.exp(-d2 / sigma), floor_), 0.0)
    e3 = tl.where(ok3, tl.maximum(tl.exp(-d3 / sigma), floor_), 0.0)
    e4 = tl.where(ok4, tl.maximum(tl.exp(-d4 / sigma), floor_), 0.0)
    e5 = tl.where(ok5, tl.maximum(tl.exp(-d5 / sigma), floor_), 0.0)
    e6 = tl.where(ok6, tl.maximum(tl.exp(-d6 / sigma), floor_), 0.0)
    e7 = tl.where(ok7, tl.maximum(tl.exp(-d7 / sigma), floor_), 0.0)
    total = e0 + e1 + e2 + e3 + e4 + e5 + e6 + e7
    tl.store(wt + r, e0 / total, mask=inside)
    tl.store(wt + n + r, e1 / total, mask=inside)
    tl.store(wt + 2 * n + r, e2 / total, mask=inside)
    tl.store(wt + 3 * n + r, e3 / total, mask=inside)
    tl.store(wt + 4 * n + r, e4 / total, mask=inside)
    tl.store(wt + 5 * n + r, e5 / total, mask=inside)
    tl.store(wt + 6 * n + r, e6 / total, mask=inside)
    tl.store(wt + 7 * n + r, e7 / total, mask=inside)



# The two ends of every job (`_kernels.c`'s lightness and encode), one pass each over contiguous pixels.
# Compiled without fused multiply-adds (PIXEL_OPTIONS), so apart from cbrtf and powf every operation rounds
# as the C loop's does: 8-bit codes come out the same bits as on the CPU.  cbrtf and powf are exp2(y log2 x)
# here (Triton's interpreter has no libdevice): a few ulps from the C library's, hence the tolerances on L,
# on 16-bit codes (one code) and on float32 output.
PIXEL_BLOCK = 512
PIXEL_OPTIONS = {"num_warps": 4, "enable_fp_fusion": False}
U8, U16, F32 = 0, 1, 2  # depths, as `_kernels.c`; 16-bit pixels travel as int16 with the same bits


@triton.jit
def _pow(x, y):
    """x ** y for x > 0."""
    return tl.exp2(y * tl.log2(x))


@triton.jit
def _decoded(src, k, table, mask, DEPTH: tl.constexpr):
    """The linear value of sample k: a table entry for integer codes, the sRGB curve for float32."""
    v = tl.load(src + k, mask=mask, other=0)
    if DEPTH == 0:
        return tl.load(table + v.to(tl.int32), mask=mask, other=0.0)
    elif DEPTH == 1:
        return tl.load(table + (v.to(tl.int32) & 0xFFFF), mask=mask, other=0.0)
    else:
        curve = _pow(tl.math.div_rn(tl.maximum(v, 0.04045) + 0.055, 1.055), 2.4)
        return tl.where(v > 0.04045, curve, tl.math.div_rn(v, 12.92))


@triton.jit(do_not_specialize=["nc"])  # nc = 1 would become a constant, and `nc >= 3` a Python bool
def lightness_kernel(out, src, table, y_row, nc, n, DEPTH: tl.constexpr, BLOCK: tl.constexpr):
    """out (H, W) = Lab L of src (H, W, C), C = 1, 2 (grey; alpha ignored) or 3, 4 (RGB).
    BYTES = 4 + C x the sample's bytes (the decoding table stays in cache)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    colour = i < (nc >= 3).to(tl.int32) * n  # a block, not inside & a scalar (the interpreter's loads refuse those)
    k = i * nc
    w0, w1, w2 = tl.load(y_row), tl.load(y_row + 1), tl.load(y_row + 2)
    first = _decoded(src, k, table, inside, DEPTH)
    second, third = _decoded(src, k + 1, table, colour, DEPTH), _decoded(src, k + 2, table, colour, DEPTH)
    mixed = w0 * first + w1 * second + w2 * third
    y = tl.where(colour, mixed, (w0 + w1 + w2) * first)
    f = tl.where(y > 0.008856, _pow(tl.maximum(y, 0.008856), 1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
    tl.store(out + i, 116.0 * f - 16.0, mask=inside)


@triton.jit
def _cube_or_linear(f):
    # C compares with the double 0.2068966, just below this float32: f > that double is f >= this float
    return tl.where(f >= 0.2068966, f * f * f, (f - 16.0 / 116.0) * (1.0 / 7.787))


@triton.jit
def _lab_linear(light, a, b, m):
    """Linear RGB of (light, a, b) with m = XYZ/white -> RGB, and whether it lies inside 0..1."""
    fy = (light + 16.0) * (1.0 / 116.0)
    t0 = _cube_or_linear(a * (1.0 / 500.0) + fy)
    t1 = _cube_or_linear(fy)
    t2 = _cube_or_linear(fy - b * (1.0 / 200.0))
    r = tl.load(m) * t0 + tl.load(m + 1) * t1 + tl.load(m + 2) * t2
    g = tl.load(m + 3) * t0 + tl.load(m + 4) * t1 + tl.load(m + 5) * t2
    bl = tl.load(m + 6) * t0 + tl.load(m + 7) * t1 + tl.load(m + 8) * t2
    return r, g, bl, (r >= 0.0) & (r <= 1.0) & (g >= 0.0) & (g <= 1.0) & (bl >= 0.0) & (bl <= 1.0)


@triton.jit
def _store_code(dst, v, steps, mask, DEPTH: tl.constexpr):
    """One channel of linear value v, clamped, in the output's depth: 8-bit codes by the search of the
    curve's 255 rounding points (steps), 16-bit rounded half up, float32 as is."""
    v = tl.where(v < 0.0, 0.0, tl.where(v > 1.0, 1.0, v))
    if DEPTH == 0:
        code = tl.zeros(v.shape, tl.int32)
        for bit in tl.static_range(8):
            step = 128 >> bit
            code += tl.where(v >= tl.load(steps + code + (step - 1), mask=mask, other=2.0), step, 0)
        tl.store(dst, code.to(tl.uint8), mask=mask)
    else:
        e = tl.where(v > 0.0031308, 1.055 * _pow(tl.maximum(v, 0.0031308), 1.0 / 2.4) - 0.055, v * 12.92)
        e = tl.where(e < 0.0, 0.0, tl.where(e > 1.0, 1.0, e))
        if DEPTH == 1:
            tl.store(dst, tl.floor(e * 65535.0 + 0.5).to(tl.int32).to(tl.int16), mask=mask)
        else:
            tl.store(dst, e, mask=mask)


@triton.jit(do_not_specialize=["nc"])
def encode_kernel(out, L, ab, consts, alpha, nc, n, DEPTH: tl.constexpr, BLOCK: tl.constexpr):
    """out (H, W, C) = sRGB of L (H, W) and ab (2, H, W) with L kept, C = 3, or 4 with alpha (H, W)
    copied; consts: XYZ/white -> RGB (9), then the 255 linear values where 8-bit codes begin.  A block
    with an out-of-gamut pixel bisects its chroma (16 steps, all its pixels, the in-gamut ones' results
    discarded).  BYTES = 12 + 3 x the sample's bytes (+ 2 x with alpha)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    light = tl.load(L + i, mask=inside, other=0.0)
    light = tl.where(light < 0.0, 0.0, tl.where(light > 100.0, 100.0, light))
    a = tl.load(ab + i, mask=inside, other=0.0)
    b = tl.load(ab + n + i, mask=inside, other=0.0)
    r, g, bl, fits = _lab_linear(light, a, b, consts)
    outside = inside & ~fits
    if tl.max(outside.to(tl.int32), axis=0) > 0:
        lo = tl.zeros((BLOCK,), tl.float32)
        hi = lo + 1.0
        for _ in range(16):
            mid = (lo + hi) * 0.5
            _r, _g, _b, ok = _lab_linear(light, mid * a, mid * b, consts)
            lo = tl.where(ok, mid, lo)
            hi = tl.where(ok, hi, mid)
        sr, sg, sb, _ok = _lab_linear(light, lo * a, lo * b, consts)
        r, g, bl = tl.where(outside, sr, r), tl.where(outside, sg, g), tl.where(outside, sb, bl)
    k = i * nc
    _store_code(out + k, r, consts + 9, inside, DEPTH)
    _store_code(out + k + 1, g, consts + 9, inside, DEPTH)
    _store_code(out + k + 2, bl, consts + 9, inside, DEPTH)
    with_alpha = i < (nc == 4).to(tl.int32) * n
    tl.store(out + k + 3, tl.load(alpha + i, mask=with_alpha), mask=with_alpha)

def _tiles(h: int, w: int, col_step: int = 1, row_step: int = 1) -> tuple[int, int]:
    return triton.cdiv(triton.cdiv(w, col_step), BW), triton.cdiv(triton.cdiv(h, row_step), BH)


def residual(out: torch.Tensor, x: torch.Tensor, d: torch.Tensor, c: torch.Tensor, b: torch.Tensor | None,
             nc: int) -> None:
    h, w = d.shape
    residual_kernel[_tiles(h, w)](out, x, x if b is None else b, d, c, nc, h, w, HAS_B=b is not None, BH=BH, BW=BW,
                                  num_warps=WARPS)


def gauss_seidel(x: torch.Tensor, b: torch.Tensor, d: torch.Tensor, c: torch.Tensor, reverse: bool, nc: int) -> None:
    h, w = d.shape
    colours = ((0, 0), (0, 1), (1, 0), (1, 1))
    for ci, cj in (reversed(colours) if reverse else colours):
        gauss_seidel_kernel[_tiles(h - ci, w - cj, 2, 2)](x, b, d, c, nc, h, w, ci, cj, BH=BH, BW=BW,
                                                           num_warps=WARPS)


def prolong(out: torch.Tensor, coarse: torch.Tensor, weights: torch.Tensor, accumulate: bool, nc: int) -> None:
    h, w = out.shape[-2:]
    prolong_kernel[_tiles(h, w)](out, coarse, weights, nc, h, w, ADD=accumulate, BH=BH, BW=BW, num_warps=WARPS)


def restrict(out: torch.Tensor, fine: torch.Tensor, weights: torch.Tensor, nc: int,
             stencil: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None) -> None:
    """out = P^T fine, or with stencil = (d, c, b): out = P^T (b - A fine) in one pass."""
    h, w = fine.shape[-2:]
    d, c, b = stencil if stencil is not None else (fine, fine, None)
    restrict_kernel[triton.cdiv((w + 1) // 2, RW), triton.cdiv((h + 1) // 2, RH)](
        out, fine, weights, fine if b is None else b, d, c, nc, h, w,
        FUSED=stencil is not None, HAS_B=b is not None, BH=RH, BW=RW, num_warps=RWARPS)


def _chunks(vs: list[torch.Tensor], u: torch.Tensor):
    """(first index, the vectors' eight pointer arguments (u where unused), count) per launch."""
    for first in range(0, len(vs), PER_LAUNCH):
        chunk = vs[first:first + PER_LAUNCH]
        yield first, chunk + [u] * (PER_LAUNCH - len(chunk)), len(chunk)


def dots(out: torch.Tensor, u: torch.Tensor, vs: list[torch.Tensor], nc: int) -> None:
    """out (len(vs), C) = the inner products, eight vectors a pass over u."""
    n = u.numel() // nc
    blocks = triton.cdiv(n, BLOCK)
    partial = torch.empty((len(vs), nc, blocks), dtype=torch.float64, device=u.device)
    for first, pointers, count in _chunks(vs, u):
        dots_kernel[(blocks, nc)](partial[first:], u, *pointers, nc, n, COUNT=count, BLOCK=BLOCK)
    torch.sum(partial, dim=2, out=out.view(len(vs), nc))


def combine(u: torch.Tensor, vs: list[torch.Tensor], coef: torch.Tensor, nc: int) -> None:
    """u -= sum_k coef[k] vs[k], eight vectors a pass over u (the C loop sums all of them first, so past
    eight the two round differently)."""
    n = u.numel() // nc
    for first, pointers, count in _chunks(vs, u):
        combine_kernel[(triton.cdiv(n, BLOCK), nc)](u, coef[first:], *pointers, nc, n, COUNT=count, BLOCK=BLOCK)


def affinities(out: torch.Tensor, lightness: torch.Tensor, scale: float, min_var: float, floor_: float) -> None:
    h, w = lightness.shape
    affinities_kernel[_tiles(h, w)](out, lightness, h, w, scale, min_var, floor_, INV_LOG100, BH=BH, BW=BW,
                                    num_warps=WARPS)



def lightness(out: torch.Tensor, src: torch.Tensor, table: torch.Tensor | None, y_row: torch.Tensor, nc: int,
              depth: int) -> None:
    n = out.numel()
    lightness_kernel[(triton.cdiv(n, PIXEL_BLOCK),)](out, src, y_row if table is None else table, y_row, nc, n,
                                                     DEPTH=depth, BLOCK=PIXEL_BLOCK, **PIXEL_OPTIONS)


def encode(out: torch.Tensor, L: torch.Tensor, ab: torch.Tensor, consts: torch.Tensor, alpha: torch.Tensor | None,
           depth: int) -> None:
    n = L.numel()
    encode_kernel[(triton.cdiv(n, PIXEL_BLOCK),)](out, L, ab, consts, out if alpha is None else alpha,
                                                  out.shape[-1], n, DEPTH=depth, BLOCK=PIXEL_BLOCK, **PIXEL_OPTIONS)

class Spec(NamedTuple):
    """A kernel as benchmarks/kernels.py compiles it ahead of time, with its DRAM bytes per fine pixel
    (`fixed` + `per_channel` x C, as in its docstring)."""
    fn: Callable
    signature: dict[str, str]
    constexprs: dict[str, int | bool]
    fixed: float
    per_channel: float
    warps: int = 4
    fp_fusion: bool = True


_P, _I, _F = "*fp32", "i32", "fp32"
_STENCIL = dict(out=_P, x=_P, b=_P, d=_P, c=_P, nc=_I, h=_I, w=_I)
_VECTORS = {f"v{k}": _P for k in range(PER_LAUNCH)}
_DOTS = {"partial": "*fp64", "u": _P, **_VECTORS, "nc": _I, "n": _I}
_PROLONG = dict(out=_P, xc=_P, wt=_P, nc=_I, h=_I, w=_I)
_TRANSFER = dict(out=_P, f=_P, wt=_P, b=_P, d=_P, c=_P, nc=_I, h=_I, w=_I)
_TILE, _RTILE = {"BH": BH, "BW": BW}, {"BH": RH, "BW": RW}
KERNELS: dict[str, Spec] = {
    "residual": Spec(residual_kernel, _STENCIL, {"HAS_B": True, **_TILE}, 36, 12, WARPS),
    "apply": Spec(residual_kernel, _STENCIL, {"HAS_B": False, **_TILE}, 36, 8, WARPS),
    "gauss_seidel (sweep: 4 launches)": Spec(
        gauss_seidel_kernel, dict(x=_P, b=_P, d=_P, c=_P, nc=_I, h=_I, w=_I, ci=_I, cj=_I), _TILE, 72, 32, WARPS),
    "prolong": Spec(prolong_kernel, _PROLONG, {"ADD": False, **_TILE}, 8, 5, WARPS),
    "prolong_add": Spec(prolong_kernel, _PROLONG, {"ADD": True, **_TILE}, 8, 9, WARPS),
    "restrict": Spec(restrict_kernel, _TRANSFER, {"FUSED": False, "HAS_B": False, **_RTILE}, 8, 5),
    "restrict_residual": Spec(restrict_kernel, _TRANSFER, {"FUSED": True, "HAS_B": True, **_RTILE}, 44, 9),
    "dot (dots, 1 vector)": Spec(dots_kernel, _DOTS, {"COUNT": 1, "BLOCK": BLOCK}, 0, 8),
    "dots (8 vectors)": Spec(dots_kernel, _DOTS, {"COUNT": 8, "BLOCK": BLOCK}, 0, 4 * 9),
    "combine (8 vectors)": Spec(combine_kernel, {"u": _P, "coef": _P, **_VECTORS, "nc": _I, "n": _I},
                                {"COUNT": 8, "BLOCK": BLOCK}, 0, 4 * 10),
    "affinities": Spec(affinities_kernel, dict(wt=_P, y=_P, h=_I, w=_I, scale=_F, min_var=_F, floor_=_F,
                                               inv_log100=_F), _TILE, 36, 0, WARPS),
}

def _pixel_kernels() -> dict[str, Spec]:
    """The pixel kernels, one build per depth; their bytes are an RGB photo's (C = 3 samples a pixel,
    not the solver's C)."""
    specs = {}
    for name, (depth, kind, size) in {"uint8": (U8, "*u8", 1), "uint16": (U16, "*i16", 2),
                                      "float32": (F32, _P, 4)}.items():
        constexprs = {"DEPTH": depth, "BLOCK": PIXEL_BLOCK}
        specs[f"lightness ({name} RGB)"] = Spec(
            lightness_kernel, dict(out=_P, src=kind, table=_P, y_row=_P, nc=_I, n=_I), constexprs, 4 + 3 * size,
            0, fp_fusion=False)
        specs[f"encode ({name} RGB)"] = Spec(
            encode_kernel, dict(out=kind, L=_P, ab=_P, consts=_P, alpha=kind, nc=_I, n=_I), constexprs, 12 + 3 * size,
            0, fp_fusion=False)
    return specs


KERNELS.update(_pixel_kernels())
