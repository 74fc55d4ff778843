"""Nine-point stencil operators on an image grid, applied matrix-free.

Every linear system in Tinct couples a pixel only with its 3x3 window, so the
matrix is never stored: a `Stencil` holds the diagonal `d` (H, W) and the eight
off-diagonal couplings `c` (8, H, W), meaning

    (A x)[r] = d[r] * x[r] - sum_k c[k, r] * x[r + OFFSETS[k]]

with couplings to pixels outside the image equal to zero.  `x` may carry a
leading batch of channels (C, H, W): the a and b channels share one operator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinct.native import kernels
from tinct.native.kernels import fused

# Neighbour offsets (dy, dx); OFFSETS[7 - k] is the opposite of OFFSETS[k].
OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def opposite(k: int) -> int:
    return 7 - k


def shifted(xp: torch.Tensor, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """View of a 1-padded tensor holding x[r + (dy, dx)] for every r of an h x w grid."""
    return xp[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def pad1(x: torch.Tensor) -> torch.Tensor:
    """Zero border of one pixel, so neighbours outside the image read as 0."""
    return F.pad(x, (1, 1, 1, 1))


@dataclass
class Stencil:
    d: torch.Tensor  # (H, W) diagonal
    c: torch.Tensor  # (8, H, W) couplings, A[r, r+off_k] = -c[k, r]

    def __post_init__(self):
        self.d, self.c = self.d.contiguous(), self.c.contiguous()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.d.shape)

    def apply(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """A x, into `out` if given (not x itself)."""
        if fused(x, self.d) and (out is None or fused(out)):
            return kernels.residual(torch.empty_like(x) if out is None else out, x, self.d, self.c)
        h, w = self.shape
        xp = pad1(x)
        y = self.d * x
        for k, (dy, dx) in enumerate(OFFSETS):
            y = y - self.c[k] * shifted(xp, dy, dx, h, w)
        return y if out is None else out.copy_(y)

    def residual(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if fused(x, b, self.d):
            return kernels.residual(torch.empty_like(x), x, self.d, self.c, b)
        return b - self.apply(x)

    def transpose(self) -> Stencil:
        """A^T as a stencil: its coupling k at r is A's opposite coupling at r + off_k."""
        h, w = self.shape
        cp = pad1(self.c)
        ct = torch.stack([shifted(cp[opposite(k)], dy, dx, h, w) for k, (dy, dx) in enumerate(OFFSETS)])
        return Stencil(self.d.clone(), ct)

    def to_dense(self) -> torch.Tensor:
        """The (HW, HW) matrix in float64, for small grids (tests, the coarsest multigrid level)."""
        h, w = self.shape
        idx = torch.arange(h * w, device=self.d.device).view(h, w)
        a = torch.diag(self.d.reshape(-1).double())
        for k, (dy, dx) in enumerate(OFFSETS):
            rows = idx[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            cols = rows + dy * w + dx
            vals = self.c[k, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            a[rows.reshape(-1), cols.reshape(-1)] -= vals.reshape(-1).double()
        return a

    def pad_to_odd(self) -> Stencil:
        """Grow even sides by one decoupled identity row/column, so 2:1 coarsening is exact."""
        h, w = self.shape
        ph, pw = 1 - h % 2, 1 - w % 2
        if not (ph or pw):
            return self
        d = F.pad(self.d, (0, pw, 0, ph), value=1.0)
        c = F.pad(self.c, (0, pw, 0, ph))
        return Stencil(d, c)

    def swap_axes(self) -> Stencil:
        """The same operator on the transposed grid (a tall strip becomes a wide one)."""
        c = torch.stack([self.c[OFFSETS.index((dx, dy))].T for dy, dx in OFFSETS])
        return Stencil(self.d.T, c)

    def gauss_seidel(self, x: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """One four-colour Gauss-Seidel sweep (in place on x, returned).

        Pixels of equal (row % 2, col % 2) never couple in a 3x3 stencil, so each
        colour is updated at once; running the colours in reverse order after a
        forward sweep keeps a V-cycle symmetric, as CG's preconditioner must be.
        """
        if fused(x, b, self.d):
            return kernels.gauss_seidel(x, b, self.d, self.c, reverse)
        h, w = self.shape
        colours = ((0, 0), (0, 1), (1, 0), (1, 1))
        for ci, cj in (reversed(colours) if reverse else colours):
            xp = pad1(x)
            sub = (slice(ci, None, 2), slice(cj, None, 2))
            acc = b[(...,) + sub].clone()
            for k, (dy, dx) in enumerate(OFFSETS):
                nb = xp[..., 1 + ci + dy:1 + dy + h:2, 1 + cj + dx:1 + dx + w:2]
                acc += self.c[k][sub] * nb
            x[(...,) + sub] = acc / self.d[sub]
        return x
