"""Geometric multigrid with operator-dependent (black-box) interpolation.

Colorization couples pixels strongly inside regions and barely across edges.
Bilinear transfers ignore that, so coarse grids blur colour across edges and
iteration counts grow with the image.  Dendy's black-box interpolation builds
the transfer from the stencil itself: a fine pixel takes its coarse neighbours'
values in proportion to how strongly it is coupled to them, so an edge stays an
edge on every level.  Coarse operators are Galerkin products P^T A P, obtained
by probing with nine coloured vectors (a 9-point stencil stays 9-point under
2:1 coarsening with these transfers), which works for symmetric and
non-symmetric operators alike.

Grids are coarsened 2:1 on vertex-centred odd sizes: coarse point (I, J) sits on
fine pixel (2I, 2J).
"""
from __future__ import annotations

import torch

from .stencil import OFFSETS, Stencil

# Index of each offset in OFFSETS, by (dy, dx).
K = {off: k for k, off in enumerate(OFFSETS)}
COARSEST = 9  # stop coarsening when a side is this small
DENSE_MAX = 2048  # largest coarsest grid solved exactly
BOTTOM_SWEEPS = 20  # Gauss-Seidel sweep pairs when it is larger


class Prolongation:
    """Black-box interpolation from the coarse grid to an odd-sized fine grid."""

    def __init__(self, st: Stencil):
        d, c = st.d, st.c
        tiny = torch.finfo(d.dtype).tiny

        def ratio(num, den):
            return torch.where(den > tiny, num / den.clamp_min(tiny), torch.zeros_like(num))

        # Pixels on coarse rows between two coarse points: collapse the stencil vertically.
        e = (slice(0, None, 2), slice(1, None, 2))
        west = c[K[-1, -1]][e] + c[K[0, -1]][e] + c[K[1, -1]][e]
        east = c[K[-1, 1]][e] + c[K[0, 1]][e] + c[K[1, 1]][e]
        den = d[e] - c[K[-1, 0]][e] - c[K[1, 0]][e]
        self.ew, self.ee = ratio(west, den), ratio(east, den)
        # Pixels on coarse columns: collapse horizontally.
        v = (slice(1, None, 2), slice(0, None, 2))
        north = c[K[-1, -1]][v] + c[K[-1, 0]][v] + c[K[-1, 1]][v]
        south = c[K[1, -1]][v] + c[K[1, 0]][v] + c[K[1, 1]][v]
        den = d[v] - c[K[0, -1]][v] - c[K[0, 1]][v]
        self.vn, self.vs = ratio(north, den), ratio(south, den)
        # Cell centres: the full stencil, with edge neighbours already interpolated.
        m = (slice(1, None, 2), slice(1, None, 2))
        cm = {off: c[K[off]][m] for off in OFFSETS}
        dm = d[m]
        ew_n, ee_n = self.ew[:-1], self.ee[:-1]   # edge pixel above the centre
        ew_s, ee_s = self.ew[1:], self.ee[1:]     # below
        vn_w, vs_w = self.vn[:, :-1], self.vs[:, :-1]  # vertical pixel left of the centre
        vn_e, vs_e = self.vn[:, 1:], self.vs[:, 1:]    # right
        self.cnw = ratio(cm[-1, -1] + cm[-1, 0] * ew_n + cm[0, -1] * vn_w, dm)
        self.cne = ratio(cm[-1, 1] + cm[-1, 0] * ee_n + cm[0, 1] * vn_e, dm)
        self.csw = ratio(cm[1, -1] + cm[1, 0] * ew_s + cm[0, -1] * vs_w, dm)
        self.cse = ratio(cm[1, 1] + cm[1, 0] * ee_s + cm[0, 1] * vs_e, dm)
        self.fine_shape = st.shape

    def prolong(self, xc: torch.Tensor) -> torch.Tensor:
        h, w = self.fine_shape
        x = xc.new_zeros(xc.shape[:-2] + (h, w))
        x[..., 0::2, 0::2] = xc
        x[..., 0::2, 1::2] = self.ew * xc[..., :, :-1] + self.ee * xc[..., :, 1:]
        x[..., 1::2, 0::2] = self.vn * xc[..., :-1, :] + self.vs * xc[..., 1:, :]
        x[..., 1::2, 1::2] = (self.cnw * xc[..., :-1, :-1] + self.cne * xc[..., :-1, 1:]
                              + self.csw * xc[..., 1:, :-1] + self.cse * xc[..., 1:, 1:])
        return x

    def restrict(self, r: torch.Tensor) -> torch.Tensor:
        """P^T r: every fine pixel hands its value back with its interpolation weights."""
        rc = r[..., 0::2, 0::2].clone()
        re, rv, rm = r[..., 0::2, 1::2], r[..., 1::2, 0::2], r[..., 1::2, 1::2]
        rc[..., :, :-1] += self.ew * re
        rc[..., :, 1:] += self.ee * re
        rc[..., :-1, :] += self.vn * rv
        rc[..., 1:, :] += self.vs * rv
        rc[..., :-1, :-1] += self.cnw * rm
        rc[..., :-1, 1:] += self.cne * rm
        rc[..., 1:, :-1] += self.csw * rm
        rc[..., 1:, 1:] += self.cse * rm
        return rc


def galerkin(a: Stencil, p: Prolongation, r: Prolongation | None = None) -> Stencil:
    """R A P (R = P^T unless given) as a coarse 9-point stencil, by probing with nine coloured vectors.

    Coarse points of equal (I % 3, J % 3) are three apart, so one probe reveals
    each of their columns without overlap.
    """
    hc, wc = (a.shape[0] + 1) // 2, (a.shape[1] + 1) // 2
    dev, dt = a.d.device, a.d.dtype
    ii = torch.arange(hc, device=dev).view(-1, 1) % 3
    jj = torch.arange(wc, device=dev).view(1, -1) % 3
    probes = torch.stack([((ii == pi) & (jj == pj)).to(dt) for pi in range(3) for pj in range(3)])
    cols = (r or p).restrict(a.apply(p.prolong(probes)))  # (9, hc, wc)

    def column_entry(dy, dx):
        # Entry (J, J + (dy, dx)) is the probe of J + (dy, dx)'s colour, read at J.
        colour = ((ii + dy) % 3) * 3 + (jj + dx) % 3
        return torch.gather(cols, 0, colour.expand(hc, wc).unsqueeze(0))[0]

    d = column_entry(0, 0)
    c = torch.stack([-column_entry(dy, dx) for dy, dx in OFFSETS])
    # Entries pointing outside the coarse grid read another probe's value: zero them.
    for k, (dy, dx) in enumerate(OFFSETS):
        if dy < 0:
            c[k, 0, :] = 0
        if dy > 0:
            c[k, -1, :] = 0
        if dx < 0:
            c[k, :, 0] = 0
        if dx > 0:
            c[k, :, -1] = 0
    return Stencil(d, c)


def fit(x: torch.Tensor, shape) -> torch.Tensor:
    """Zero-pad or crop the last two dimensions to `shape` (odd-size padding between levels)."""
    h, w = shape
    x = x[..., :h, :w]
    return torch.nn.functional.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


class VCycle:
    """A multigrid V-cycle for `a`, with transfers built from `interp` (usually a's symmetric part).

    Used as a preconditioner: `__call__(r)` returns an approximation of a^-1 r.
    With a symmetric `a` the cycle is symmetric (forward Gauss-Seidel before,
    backward after), so it can precondition CG.
    """

    def __init__(self, a: Stencil, interp: Stencil | None = None, smooth: int = 1, adjoint: bool = False):
        self.shape = a.shape
        self.smooth = smooth
        self.ops: list[Stencil] = []
        self.transfers: list[Prolongation] = []
        own = interp is None  # transfers from `a` itself on every level
        a = a.pad_to_odd()
        interp = a if own else interp.pad_to_odd()
        while min(a.shape) > COARSEST:
            p = Prolongation(interp)
            r = Prolongation(a.transpose()) if adjoint else p
            self.ops.append(a)
            self.transfers.append((p, r))
            a = galerkin(a, p, r).pad_to_odd()
            interp = a if own else galerkin(interp, p).pad_to_odd()
        self.ops.append(a)
        n = a.shape[0] * a.shape[1]
        # A dense inverse at the bottom, unless a very elongated image leaves it large.
        self.coarse_inverse = (torch.linalg.inv(a.to_dense()).to(a.d.dtype).to(a.d.device)
                               if n <= DENSE_MAX else None)

    @property
    def levels(self) -> int:
        return len(self.ops)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        h, w = self.shape
        return self._cycle(0, fit(r, self.ops[0].shape))[..., :h, :w].contiguous()

    def _cycle(self, level: int, b: torch.Tensor) -> torch.Tensor:
        a = self.ops[level]
        if level == len(self.ops) - 1:
            if self.coarse_inverse is not None:
                flat = b.reshape(b.shape[:-2] + (-1,))
                return (flat @ self.coarse_inverse.T).reshape(b.shape)
            x = torch.zeros_like(b)
            for _ in range(BOTTOM_SWEEPS):
                a.gauss_seidel(x, b)
                a.gauss_seidel(x, b, reverse=True)
            return x
        x = torch.zeros_like(b)
        for _ in range(self.smooth):
            a.gauss_seidel(x, b)
        p, r = self.transfers[level]
        rc = r.restrict(a.residual(x, b))
        xc = self._cycle(level + 1, fit(rc, self.ops[level + 1].shape))
        x += p.prolong(fit(xc, rc.shape[-2:]))
        for _ in range(self.smooth):
            a.gauss_seidel(x, b, reverse=True)
        return x
