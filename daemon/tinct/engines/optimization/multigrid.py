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

For the non-symmetric Levin operator the transfers come from its own rows, so a
pixel is interpolated from the neighbours it follows, not from those that follow
it: a region walled in by one-way couplings then keeps its own coarse unknowns
and the coarse grids see how weakly it really leaks.  The Galerkin product of a
non-symmetric M-matrix is not an M-matrix, though (negative diagonals appear
and Gauss-Seidel diverges), so its positive off-diagonal entries are lumped
onto the diagonal, which keeps row sums and so the region constants.  Coarse
problems of such a nearly singular operator need more than one cycle: the
K-cycle (Notay) runs two steps of a minimal-residual iteration on every coarse
level (a plain V-cycle with these operators needs about twice the Krylov
iterations on 1 MP photos).

Grids are coarsened 2:1 on vertex-centred odd sizes: coarse point (I, J) sits on
fine pixel (2I, 2J).  Coarsening stops once a side is COARSEST pixels or fewer,
so the coarsest grid of a strip (or of a very elongated photo) can still be
long; it is solved exactly all the same, by block cyclic reduction along its
long side (`StripSolver`), because no smoother carries colour along it.
"""
from __future__ import annotations

import torch

from tinct.native import kernels
from tinct.native.kernels import fused

from .krylov import dot, dots
from .stencil import OFFSETS, Stencil

# Index of each offset in OFFSETS, by (dy, dx).
K = {off: k for k, off in enumerate(OFFSETS)}
COARSEST = 9  # stop coarsening when a side is this small
DENSE_MAX = 2048  # stop coarsening once this few points remain: the coarsest grid is solved exactly
K_ENOUGH = 0.25  # a K-cycle's second step is skipped once the first cut the residual this much
# On CUDA a level below this many points takes one cycle, not the K-cycle's two steps.  Level k of a
# K-cycle is visited 2^k times a step, and on a GPU a small level's kernels cost their few
# microseconds of launch whatever they move: at 12 MP on an H200 the deep levels' 22,000 Gauss-Seidel
# launches were a third of the GPU's time.  Measured there (final, 1/4/12/50 MP): every level 0.195 /
# 0.483 / 0.771 / 1.475 s, levels of 1 M points and more 0.063 / 0.081 / 0.188 / 0.460 s, the same
# or fewer GCR steps, answers within 0.36 ab units.  The CPU's cost follows the bytes, so there
# every level keeps the K-cycle.
KCYCLE_MIN_CUDA = 1_048_576


class Prolongation:
    """Black-box interpolation from the coarse grid to an odd-sized fine grid.

    The eight weight planes live in one (8, Hc, Wc) tensor (the layout of the C
    kernels), each indexed by the coarse point north-west of the fine pixel it
    serves, in the order of `planes()`.
    """

    def __init__(self, st: Stencil):
        d, c = st.d, st.c
        tiny = torch.finfo(d.dtype).tiny
        self.fine_shape = st.shape
        hc, wc = (st.shape[0] + 1) // 2, (st.shape[1] + 1) // 2
        self.weights = d.new_zeros(8, hc, wc)
        ew, ee, vn, vs, cnw, cne, csw, cse = self.planes()

        def ratio(num, den):
            return torch.where(den > tiny, num / den.clamp_min(tiny), torch.zeros_like(num))

        # Pixels on coarse rows between two coarse points: collapse the stencil vertically.
        e = (slice(0, None, 2), slice(1, None, 2))
        west = c[K[-1, -1]][e] + c[K[0, -1]][e] + c[K[1, -1]][e]
        east = c[K[-1, 1]][e] + c[K[0, 1]][e] + c[K[1, 1]][e]
        den = d[e] - c[K[-1, 0]][e] - c[K[1, 0]][e]
        ew.copy_(ratio(west, den))
        ee.copy_(ratio(east, den))
        # Pixels on coarse columns: collapse horizontally.
        v = (slice(1, None, 2), slice(0, None, 2))
        north = c[K[-1, -1]][v] + c[K[-1, 0]][v] + c[K[-1, 1]][v]
        south = c[K[1, -1]][v] + c[K[1, 0]][v] + c[K[1, 1]][v]
        den = d[v] - c[K[0, -1]][v] - c[K[0, 1]][v]
        vn.copy_(ratio(north, den))
        vs.copy_(ratio(south, den))
        # Cell centres: the full stencil, with edge neighbours already interpolated.
        m = (slice(1, None, 2), slice(1, None, 2))
        cm = {off: c[K[off]][m] for off in OFFSETS}
        dm = d[m]
        ew_n, ee_n = ew[:-1], ee[:-1]   # edge pixel above the centre
        ew_s, ee_s = ew[1:], ee[1:]     # below
        vn_w, vs_w = vn[:, :-1], vs[:, :-1]  # vertical pixel left of the centre
        vn_e, vs_e = vn[:, 1:], vs[:, 1:]    # right
        cnw.copy_(ratio(cm[-1, -1] + cm[-1, 0] * ew_n + cm[0, -1] * vn_w, dm))
        cne.copy_(ratio(cm[-1, 1] + cm[-1, 0] * ee_n + cm[0, 1] * vn_e, dm))
        csw.copy_(ratio(cm[1, -1] + cm[1, 0] * ew_s + cm[0, -1] * vs_w, dm))
        cse.copy_(ratio(cm[1, 1] + cm[1, 0] * ee_s + cm[0, 1] * vs_e, dm))

    def planes(self) -> tuple[torch.Tensor, ...]:
        """Views of the weights: E pixels (Hc, Wc-1), V pixels (Hc-1, Wc), centres (Hc-1, Wc-1)."""
        wt = self.weights
        return (wt[0, :, :-1], wt[1, :, :-1], wt[2, :-1, :], wt[3, :-1, :],
                wt[4, :-1, :-1], wt[5, :-1, :-1], wt[6, :-1, :-1], wt[7, :-1, :-1])

    def prolong(self, xc: torch.Tensor, into: torch.Tensor | None = None, out: torch.Tensor | None = None
                ) -> torch.Tensor:
        """P xc (written into `out` if given), or `into` += P xc."""
        h, w = self.fine_shape
        target = into if into is not None else out
        if fused(xc, self.weights) and (target is None or fused(target)):
            if target is None:
                target = xc.new_empty(xc.shape[:-2] + (h, w))
            return kernels.prolong(target, xc, self.weights, accumulate=into is not None)
        ew, ee, vn, vs, cnw, cne, csw, cse = self.planes()
        x = xc.new_zeros(xc.shape[:-2] + (h, w))
        x[..., 0::2, 0::2] = xc
        x[..., 0::2, 1::2] = ew * xc[..., :, :-1] + ee * xc[..., :, 1:]
        x[..., 1::2, 0::2] = vn * xc[..., :-1, :] + vs * xc[..., 1:, :]
        x[..., 1::2, 1::2] = (cnw * xc[..., :-1, :-1] + cne * xc[..., :-1, 1:]
                              + csw * xc[..., 1:, :-1] + cse * xc[..., 1:, 1:])
        if into is None:
            return x if out is None else out.copy_(x)
        into += x
        return into

    def restrict(self, r: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """P^T r (written into `out` if given): every fine pixel hands its value back with its
        interpolation weights."""
        if fused(r, self.weights) and (out is None or fused(out)):
            out = r.new_empty(r.shape[:-2] + self.weights.shape[-2:]) if out is None else out
            return kernels.restrict(out, r, self.weights)
        ew, ee, vn, vs, cnw, cne, csw, cse = self.planes()
        rc = r[..., 0::2, 0::2].clone()
        re, rv, rm = r[..., 0::2, 1::2], r[..., 1::2, 0::2], r[..., 1::2, 1::2]
        rc[..., :, :-1] += ew * re
        rc[..., :, 1:] += ee * re
        rc[..., :-1, :] += vn * rv
        rc[..., 1:, :] += vs * rv
        rc[..., :-1, :-1] += cnw * rm
        rc[..., :-1, 1:] += cne * rm
        rc[..., 1:, :-1] += csw * rm
        rc[..., 1:, 1:] += cse * rm
        return rc if out is None else out.copy_(rc)


def galerkin(a: Stencil, p: Prolongation) -> Stencil:
    """P^T A P as a coarse 9-point stencil, by probing with nine coloured vectors.

    Coarse points of equal (I % 3, J % 3) are three apart, so one probe reveals
    each of their columns without overlap.
    """
    hc, wc = (a.shape[0] + 1) // 2, (a.shape[1] + 1) // 2
    dev, dt = a.d.device, a.d.dtype
    ii = torch.arange(hc, device=dev).view(-1, 1) % 3
    jj = torch.arange(wc, device=dev).view(1, -1) % 3
    probes = torch.stack([((ii == pi) & (jj == pj)).to(dt) for pi in range(3) for pj in range(3)])
    # three probes at a time (nine fine-grid images at once would be the set-up's peak memory), in
    # the same two fine-grid buffers: fresh ones are pages the kernel maps and zeroes every time
    cols = probes.new_empty(9, hc, wc)
    fine = applied = None
    for i in range(0, 9, 3):
        fine = p.prolong(probes[i:i + 3], out=fine)
        applied = a.apply(fine, out=applied)
        p.restrict(applied, out=cols[i:i + 3])

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


def lumped(a: Stencil) -> Stencil:
    """`a` with its positive off-diagonal entries moved onto the diagonal: an M-matrix again.

    Row sums stay, so constants (a region's colour) cost what they cost in `a`;
    a row left with a negative sum gets a zero one, so every row is weakly
    diagonally dominant and Gauss-Seidel converges on every level.
    """
    c = a.c.clamp_min(0)
    d = a.d - (a.c - c).sum(0)  # A's positive entries are negative couplings
    return Stencil(torch.maximum(d, c.sum(0)), c)


class StripSolver:
    """The exact solve of a grid with a short side (a strip), by block cyclic reduction.

    The lines across the strip (columns of a wide grid, rows of a tall one) are
    the blocks: a 3x3 stencil couples each line only to the lines either side,
    so the matrix is block tridiagonal.  Every other line is eliminated at once
    (Buzbee, Golub & Nielson 1970), log2(n) vectorised steps for n lines of h
    pixels, O(n h^3) to factor and O(n h^2) a solve.  The Schur complements of
    an M-matrix are M-matrices, so the blocks need no pivoting.  It runs in
    float64: a strip thousands of pixels long is too ill-conditioned for float32.
    """

    def __init__(self, a: Stencil):
        self.tall = a.shape[0] > a.shape[1]
        a = a.swap_axes() if self.tall else a
        d, c = a.d.double(), a.c.double()

        def lines(dx):  # (n, h, h): how each line couples to the line dx away (dx = 0: itself)
            m = d.new_zeros(d.shape[1], d.shape[0], d.shape[0])
            m.diagonal(0, 1, 2).copy_(d.T if dx == 0 else -c[K[0, dx]].T)
            m.diagonal(-1, 1, 2).copy_(-c[K[-1, dx]].T[:, 1:])
            m.diagonal(1, 1, 2).copy_(-c[K[1, dx]].T[:, :-1])
            return m

        diag, lower, upper = lines(0), lines(-1), lines(1)
        self.steps = []
        while diag.shape[0] > 1:
            # Odd lines: x_o = inv b_o - left x_{o-1} - right x_{o+1}, substituted into the even lines.
            inv = torch.linalg.inv(diag[1::2])
            left, right = inv @ lower[1::2], inv @ upper[1::2]
            lo, up = lower[0::2].contiguous(), upper[0::2].contiguous()  # copies: the odd lines are freed
            n = lo.shape[0]
            diag = diag[0::2] - lo @ _before(right, n) - up @ _after(left, n)
            lower, upper = -lo @ _before(left, n), -up @ _after(right, n)
            self.steps.append((inv, left, right, lo, up))
        self.last = torch.linalg.inv(diag[0])

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        """a^-1 b for b (..., H, W)."""
        rhs = b.transpose(-1, -2) if self.tall else b
        x = rhs.reshape((-1,) + rhs.shape[-2:]).double().permute(2, 1, 0)  # (n lines, h, channels)
        ys = []
        for inv, _, _, lo, up in self.steps:
            y = inv @ x[1::2]
            n = lo.shape[0]
            x = x[0::2] - lo @ _before(y, n) - up @ _after(y, n)
            ys.append(y)
        x = self.last @ x
        for (_, left, right, _, _), y in zip(reversed(self.steps), reversed(ys)):
            full = x.new_empty((x.shape[0] + y.shape[0],) + x.shape[1:])
            full[0::2] = x
            full[1::2] = y - left @ x[:y.shape[0]] - right @ _after(x[1:], y.shape[0])
            x = full
        x = x.permute(2, 1, 0).reshape(rhs.shape).to(b.dtype)
        return (x.transpose(-1, -2) if self.tall else x).contiguous()


class DenseSolver:
    """The exact solve of a small grid by its dense inverse, applied in index order on the CPU
    (kernels.dense: the same bits at any thread count), by a matrix product elsewhere."""

    def __init__(self, a: Stencil):
        self.transposed = torch.linalg.inv(a.to_dense()).T.contiguous().to(a.d.dtype).to(a.d.device)

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        """a^-1 b for b (..., H, W)."""
        flat = b.reshape((-1, b.shape[-2] * b.shape[-1])).contiguous()
        if kernels.cpu_fused(flat, self.transposed):
            return kernels.dense(torch.empty_like(flat), flat, self.transposed).reshape(b.shape)
        return (flat @ self.transposed).reshape(b.shape)


def _before(t: torch.Tensor, n: int) -> torch.Tensor:
    """n lines, line m being t[m - 1] and line 0 zero: the odd line before each even one."""
    return torch.cat([t.new_zeros((1,) + t.shape[1:]), t])[:n]


def _after(t: torch.Tensor, n: int) -> torch.Tensor:
    """`t` made n lines long with zero lines: the last line may have none after it."""
    return torch.cat([t, t.new_zeros((n - t.shape[0],) + t.shape[1:])])


def fit(x: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Zero-pad or crop the last two dimensions to `shape` (odd-size padding between levels)."""
    h, w = shape
    if tuple(x.shape[-2:]) == (h, w):
        return x
    x = x[..., :h, :w]
    return torch.nn.functional.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


class Multigrid:
    """A multigrid cycle for `a`, used as a preconditioner: `__call__(r)` approximates a^-1 r.

    The V-cycle of a symmetric `a` is a symmetric operator (forward
    Gauss-Seidel before the coarse correction, backward after), as CG's
    preconditioner must be.  A non-symmetric M-matrix needs `lump` (see
    `lumped`).  `kcycle` runs the K-cycle, which varies from call to call, so
    it needs a flexible Krylov method (krylov.gcr).  `dense_max` (default DENSE_MAX) is the most
    points the coarsest grid may keep: its dense inverse is the set-up's largest fixed cost
    (about 0.2 s at 2048), but coarser grids lose thin walled-in regions.
    """

    def __init__(self, a: Stencil, lump: bool = False, kcycle: bool = False, smooth: int = 1,
                 dense_max: int | None = None):
        self.shape = a.shape
        self.smooth = smooth
        self.kcycle = kcycle
        self.ops: list[Stencil] = []
        self.transfers: list[Prolongation] = []
        self._scratch: dict[tuple[int, str], torch.Tensor] = {}
        strip = min(a.shape) <= COARSEST
        if not strip:
            a = a.pad_to_odd()
        dense_max = DENSE_MAX if dense_max is None else dense_max
        while a.shape[0] * a.shape[1] > dense_max and min(a.shape) > COARSEST:
            p = Prolongation(a)
            self.ops.append(a)
            self.transfers.append(p)
            a = galerkin(a, p)
            a = (lumped(a) if lump else a).pad_to_odd()
        self.ops.append(a)
        # The bottom is solved exactly: a dense inverse when small, a strip (or the long
        # coarsest grid of a very elongated image) by block cyclic reduction.
        if strip or a.shape[0] * a.shape[1] > dense_max:
            self.coarse_solve = StripSolver(a)
        else:
            self.coarse_solve = DenseSolver(a)

    @property
    def levels(self) -> int:
        return len(self.ops)

    def scratch(self, level: int, name: str, like: torch.Tensor, shape: torch.Size | None = None) -> torch.Tensor:
        """A vector of the coarse level `level` kept from call to call, of `like`'s kind and shape
        (or `shape`).

        The cycles below the finest level would otherwise take a dozen fresh vectors a Krylov
        step, which the kernel maps and zeroes page by page (at 12 MP a million page faults, a
        fifth of the solve on two cores).  The recursion uses each name at most once per level at
        a time, so the vectors need no more bookkeeping than their names.
        """
        shape = like.shape if shape is None else shape
        t = self._scratch.get((level, name))
        if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
            t = self._scratch[level, name] = like.new_empty(shape)
        return t

    def kcycle_min(self, b: torch.Tensor) -> int:
        """The fewest points a level needs to take the K-cycle's two steps (see KCYCLE_MIN_CUDA)."""
        return KCYCLE_MIN_CUDA if b.is_cuda else 0

    def __call__(self, r: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """One cycle from zero for r, into `out` if given and r needs no padding."""
        h, w = self.shape
        b = fit(r, self.ops[0].shape)
        into = out if out is not None and b is r and out.shape == r.shape and out.dtype == r.dtype else None
        x = self._cycle(0, b, into)
        if out is not None and into is None:
            return out.copy_(x[..., :h, :w])
        return x[..., :h, :w].contiguous()

    def nested(self, b: torch.Tensor) -> torch.Tensor:
        """Full multigrid's first answer to a x = b (nested iteration): b restricted to every
        level, the coarsest grid solved exactly, and each level's answer prolongated to the next
        finer one and corrected by one cycle there.  It costs about one cycle and starts a Krylov
        method near the answer instead of at zero."""
        h, w = self.shape
        rhs = [fit(b, self.ops[0].shape).contiguous()]
        for level, p in enumerate(self.transfers):
            rhs.append(fit(p.restrict(rhs[-1]), self.ops[level + 1].shape).contiguous())
        x = self.coarse_solve(rhs[-1])
        for level in reversed(range(len(self.transfers))):
            p = self.transfers[level]
            x = p.prolong(fit(x, p.weights.shape[-2:]).contiguous())
            x += self._cycle(level, self.ops[level].residual(x, rhs[level]))
        return x[..., :h, :w].contiguous()

    def _coarse(self, level: int, b: torch.Tensor) -> torch.Tensor:
        """Solve level `level` approximately: one cycle, or (K-cycle) two minimal-residual steps."""
        a = self.ops[level]
        if level == len(self.ops) - 1:
            return self._cycle(level, b)
        z1 = self._cycle(level, b, self.scratch(level, "z1", b))
        if not self.kcycle or a.shape[0] * a.shape[1] < self.kcycle_min(b):
            return z1
        w1 = a.apply(z1, out=self.scratch(level, "w1", b))
        w1b, w1w1 = dots(w1, [b, w1])
        w1w1 = w1w1.clamp_min(1e-300)
        alpha = w1b / w1w1
        left = 1 - w1b * alpha / dot(b, b).clamp_min(1e-300)  # ||b - alpha w1||^2 / ||b||^2
        enough = left.max() <= K_ENOUGH ** 2
        if not b.is_cuda and bool(enough):  # on CUDA no reading back (graphs.py): both steps, the second
            return z1.mul_(alpha.float())   # then weighted 0 below
        r1 = torch.addcmul(b, w1, alpha.float(), value=-1, out=self.scratch(level, "r1", b))
        z2 = self._cycle(level, r1, self.scratch(level, "z2", b))
        w2 = a.apply(z2, out=self.scratch(level, "w2", b))
        w2w1, w2r1, w2w2 = dots(w2, [w1, r1, w2])
        # Minimal residual over z1, z2: w2 made orthogonal to w1 (w1 . r1 = 0), never formed.
        beta = w2w1 / w1w1
        rest = w2w2 - beta * w2w1
        gamma = torch.where(rest > 1e-12 * w2w2, w2r1 / rest.clamp_min(1e-300), torch.zeros_like(rest))
        if b.is_cuda:
            gamma = torch.where(enough, torch.zeros_like(gamma), gamma)
        return z1.mul_((alpha - gamma * beta).float()).addcmul_(z2, gamma.float())

    def _cycle(self, level: int, b: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """One cycle from zero for b, in x (any contents) if given."""
        if level == len(self.ops) - 1:
            return self.coarse_solve(b) if x is None else x.copy_(self.coarse_solve(b))
        a = self.ops[level]
        x = torch.zeros_like(b) if x is None else x.zero_()
        for _ in range(self.smooth):
            a.gauss_seidel(x, b)
        p = self.transfers[level]
        rc = self.scratch(level + 1, "b", x, x.shape[:-2] + p.weights.shape[-2:])
        if fused(x, b, a.d, p.weights):  # one pass: the residual is never stored
            kernels.restrict_residual(rc, x, b, a.d, a.c, p.weights)
        else:
            p.restrict(a.residual(x, b), out=rc)
        xc = self._coarse(level + 1, fit(rc, self.ops[level + 1].shape).contiguous())
        p.prolong(fit(xc, rc.shape[-2:]).contiguous(), into=x)
        for _ in range(self.smooth):
            a.gauss_seidel(x, b, reverse=True)
        return x


class Sweeps:
    """A symmetric Gauss-Seidel sweep as the whole preconditioner, for an operator so diagonally
    dominant that colour never has to travel far: a data term on every pixel (the learned
    engine's prior) damps every error mode by its weight per sweep, so the multigrid's set-up
    would cost more than it saves.  Same interface as `Multigrid`."""

    levels = 1

    def __init__(self, a: Stencil):
        self.a = a

    def __call__(self, r: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.zeros_like(r) if out is None else out.zero_()
        self.a.gauss_seidel(x, r)
        return self.a.gauss_seidel(x, r, reverse=True)

    def nested(self, b: torch.Tensor) -> torch.Tensor:
        return self(b)
