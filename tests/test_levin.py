"""The Levin system: weights as in the authors' code, stencils against dense matrices,
solutions against direct dense solves."""
import math

import numpy as np
import pytest
import torch

from tinct import krylov, levin, stencil
from tinct.multigrid import Prolongation, VCycle, galerkin
from tinct.stencil import OFFSETS, Stencil


def authors_matrix(y, fixed):
    """A literal port of getColorExact.m's loops (float64): rows of I - W, identity at hints."""
    h, w = y.shape
    a = np.eye(h * w)
    for i in range(h):
        for j in range(w):
            if fixed[i, j]:
                continue
            nbrs = [(i + dy, j + dx) for dy, dx in OFFSETS if 0 <= i + dy < h and 0 <= j + dx < w]
            g = np.array([y[p] for p in nbrs])
            vals = np.append(g, y[i, j])
            csig = np.mean((vals - vals.mean()) ** 2) * 0.6
            mgv = np.min((g - y[i, j]) ** 2)
            csig = max(csig, -mgv / math.log(0.01), 0.000002)
            wts = np.exp(-(g - y[i, j]) ** 2 / csig)
            wts /= wts.sum()
            for (ii, jj), v in zip(nbrs, wts):
                a[i * w + j, ii * w + jj] = -v
    return a


def tiny_photo(h=9, w=11, seed=0):
    """Lightness with flat patches, a hard edge and noise: every branch of the weight rule."""
    rng = np.random.default_rng(seed)
    y = np.full((h, w), 0.3)
    y[:, w // 2:] = 0.8
    y[h // 2:, : w // 3] = rng.uniform(0, 1, (h - h // 2, w // 3))
    return y


def hints_for(h, w, points):
    ab = torch.zeros(2, h, w, dtype=torch.float64)
    weight = torch.zeros(1, h, w, dtype=torch.float64)
    for (i, j), (a, b) in points.items():
        ab[:, i, j] = torch.tensor([a, b], dtype=torch.float64)
        weight[0, i, j] = 1
    return ab, weight


def systems(y, ab, fixed):
    """Levin's two systems for lightness y (0..1) with the pixels in `fixed` pinned to ab."""
    w = levin.affinities(y)
    return levin.systems(w, levin.transpose(w), ab, torch.zeros(y.shape, dtype=y.dtype), fixed)


def test_weights_follow_the_authors_rule():
    y = tiny_photo()
    fixed = np.zeros(y.shape, bool)
    a, _, _, _ = systems(torch.tensor(y), torch.zeros(2, *y.shape, dtype=torch.float64), torch.tensor(fixed))
    ref = authors_matrix(y, fixed)
    # Our floor only lifts weights the authors' float64 code leaves below 1e-6.
    np.testing.assert_allclose(a.to_dense().numpy(), ref, atol=2e-6)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 8)])
def test_stencil_matches_its_dense_matrix(shape):
    torch.manual_seed(1)
    st = Stencil(torch.rand(shape, dtype=torch.float64) + 3, torch.rand(8, *shape, dtype=torch.float64))
    x = torch.randn(2, *shape, dtype=torch.float64)
    dense = st.to_dense()
    np.testing.assert_allclose(st.apply(x).reshape(2, -1).numpy(), (x.reshape(2, -1) @ dense.T).numpy(), atol=1e-12)
    np.testing.assert_allclose(st.transpose().to_dense().numpy(), dense.T.numpy(), atol=1e-12)


@pytest.mark.skipif(stencil._kernels is None, reason="the C kernels were not built (no compiler)")
def test_c_kernels_match_pytorch(monkeypatch):
    torch.manual_seed(2)
    st = Stencil(torch.rand(37, 29) + 8, torch.rand(8, 37, 29))
    x, b = torch.randn(2, 37, 29), torch.randn(2, 37, 29)
    fast = (st.apply(x), st.residual(x, b), st.gauss_seidel(x.clone(), b), st.gauss_seidel(x.clone(), b, reverse=True))
    monkeypatch.setattr(stencil, "_kernels", None)
    slow = (st.apply(x), st.residual(x, b), st.gauss_seidel(x.clone(), b), st.gauss_seidel(x.clone(), b, reverse=True))
    for f, s in zip(fast, slow):
        torch.testing.assert_close(f, s, rtol=1e-5, atol=1e-5)


def test_gauss_seidel_is_a_true_gauss_seidel_sweep():
    """Four-colour ordering: a forward sweep equals solving the (permuted) lower triangle."""
    torch.manual_seed(3)
    h, w = 6, 7
    st = Stencil(torch.rand(h, w, dtype=torch.float64) + 8, torch.rand(8, h, w, dtype=torch.float64))
    b = torch.randn(1, h, w, dtype=torch.float64)
    x0 = torch.randn(1, h, w, dtype=torch.float64)
    x = st.gauss_seidel(x0.clone(), b)
    order = sorted(range(h * w), key=lambda r: ((r // w) % 2, (r % w) % 2, r))
    a, xr, br = st.to_dense(), x0.reshape(-1).clone(), b.reshape(-1)
    for r in order:
        xr[r] = (br[r] - (a[r] @ xr - a[r, r] * xr[r])) / a[r, r]
    np.testing.assert_allclose(x.reshape(-1).numpy(), xr.numpy(), atol=1e-12)


def test_galerkin_probing_equals_dense_triple_product():
    y = torch.tensor(tiny_photo(11, 13))
    ab, weight = hints_for(11, 13, {(2, 2): (40, 0)})
    a, s, _, _ = systems(y, ab, weight[0] > 0)
    for op in (a, s):
        p = Prolongation(s)
        coarse = galerkin(op, p)
        pd = torch.stack([p.prolong(e.view(1, 6, 7))[0].reshape(-1) for e in torch.eye(42, dtype=torch.float64)], 1)
        np.testing.assert_allclose(coarse.to_dense().numpy(), (pd.T @ op.to_dense() @ pd).numpy(), atol=1e-10)


def test_restriction_is_the_transpose_of_prolongation():
    torch.manual_seed(4)
    st = Stencil(torch.rand(9, 7, dtype=torch.float64) + 8, torch.rand(8, 9, 7, dtype=torch.float64))
    p = Prolongation(st)
    xc, rf = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 9, 7, dtype=torch.float64)
    assert torch.allclose((p.prolong(xc) * rf).sum(), (xc * p.restrict(rf)).sum())


@pytest.mark.parametrize("quality", ["final", "preview"])
def test_solution_matches_a_direct_dense_solve(quality):
    """final: the authors' I - W; preview: the Laplacian of (W + W^T)/2; hints fixed in both."""
    h, w = 12, 14
    y = tiny_photo(h, w, seed=5)
    ab, weight = hints_for(h, w, {(1, 1): (50, -20), (10, 12): (-30, 60), (6, 3): (0, 40)})
    ours, info = levin.solve_ab(torch.tensor(y * 100)[None].float(), ab.float(), weight.float(),
                                quality=quality, tol=1e-7, max_iter=300)
    assert info["residual"] <= 1e-6
    fixed = weight[0].numpy().reshape(-1) > 0
    free = ~fixed
    hint = ab.numpy().reshape(2, -1)
    if quality == "final":
        system = authors_matrix(y, fixed.reshape(h, w))
        rhs = np.where(fixed, hint, 0)
        expect = np.linalg.solve(system, rhs.T).T
    else:
        wts = np.eye(h * w) - authors_matrix(y, np.zeros((h, w), bool))
        sym = 0.5 * (wts + wts.T)
        lap = np.diag(sym.sum(1)) - sym
        expect = hint * fixed
        expect[:, free] = np.linalg.solve(lap[np.ix_(free, free)], -(lap[np.ix_(free, fixed)] @ hint[:, fixed].T)).T
    np.testing.assert_allclose(ours.numpy().reshape(2, -1), expect, atol=2e-3)


def test_no_hints_give_grey_without_solving():
    ab, info = levin.solve_ab(torch.rand(1, 20, 20) * 100, torch.zeros(2, 20, 20), torch.zeros(1, 20, 20))
    assert torch.count_nonzero(ab) == 0 and info["iterations"] == 0


def test_contradictory_hints_converge_between_the_two_colours():
    h, w = 16, 16
    ab = torch.zeros(2, h, w)
    weight = torch.zeros(1, h, w)
    ab[:, 8, 7], ab[:, 8, 8] = torch.tensor([60.0, 0]), torch.tensor([-60.0, 0])  # touching, same lightness
    weight[0, 8, 7:9] = 1
    out, info = levin.solve_ab(torch.full((1, h, w), 50.0), ab, weight)
    assert info["residual"] <= levin.TOL["final"]
    assert torch.isfinite(out).all() and out[0].abs().max() <= 60.0 + 1e-3
    assert out[0, 8, 0] > 0 > out[0, 8, 15]


def test_partial_alpha_pulls_without_fixing():
    h, w = 8, 8
    ab, weight = torch.zeros(2, h, w), torch.zeros(1, h, w)
    ab[0, 0, 0], weight[0, 0, 0] = 50.0, 1.0
    ab[0, 7, 7], weight[0, 7, 7] = -50.0, 0.5
    out, _ = levin.solve_ab(torch.full((1, h, w), 40.0), ab, weight)
    assert out[0, 0, 0] == pytest.approx(50.0, abs=1e-4)
    assert -50.0 < float(out[0, 7, 7]) < 0.0


def test_prior_is_a_soft_data_term():
    h, w = 10, 10
    prior = torch.zeros(2, h, w)
    prior[1] = 30.0
    out, _ = levin.solve_ab(torch.full((1, h, w), 50.0), torch.zeros(2, h, w), torch.zeros(1, h, w),
                            prior_ab=prior, prior_weight=0.1)
    torch.testing.assert_close(out[1], torch.full((h, w), 30.0), atol=1e-2, rtol=0)


def test_multigrid_keeps_cg_iterations_flat_as_the_image_grows():
    iterations = []
    for n in (33, 129):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
        light = (50 + 30 * torch.sin(6 * xx) * torch.cos(4 * yy) + 20 * (xx > 0.5))[None]
        ab, weight = torch.zeros(2, n, n), torch.zeros(1, n, n)
        for i, j in ((2, 2), (n - 3, n - 3), (n // 2, 3)):
            ab[:, i, j], weight[0, i, j] = torch.tensor([30.0, -30.0]), 1
        _, info = levin.solve_ab(light, ab, weight, quality="preview")
        iterations.append(info["cg_iterations"])
    assert iterations[1] <= iterations[0] + 6, iterations


def test_krylov_solvers_on_dense_systems():
    torch.manual_seed(6)
    n = 12
    spd = Stencil(torch.full((n, n), 4.0, dtype=torch.float64), torch.rand(8, n, n, dtype=torch.float64) * 0.4)
    sym = Stencil(spd.d, 0.5 * (spd.c + spd.transpose().c))
    b = torch.randn(2, n, n, dtype=torch.float64)
    ident = lambda r: r.clone()  # noqa: E731
    for solve, op in ((krylov.pcg, sym), (krylov.gmres, spd), (krylov.bicgstab, spd)):
        res = solve(op.apply, b, torch.zeros_like(b), ident, 1e-10, 500)
        assert res.converged, solve.__name__
        expect = torch.linalg.solve(op.to_dense(), b.reshape(2, -1).T).T.reshape(2, n, n)
        torch.testing.assert_close(res.x, expect, atol=1e-8, rtol=0)


def test_vcycle_is_a_symmetric_operator_for_symmetric_input():
    y = torch.tensor(tiny_photo(19, 23, seed=7))
    ab, weight = hints_for(19, 23, {(3, 3): (10, 10)})
    _, s, _, _ = systems(y, ab, weight[0] > 0)
    mg = VCycle(s)
    u, v = torch.randn(1, 19, 23, dtype=torch.float64), torch.randn(1, 19, 23, dtype=torch.float64)
    assert float((mg(u) * v).sum()) == pytest.approx(float((u * mg(v)).sum()), rel=1e-9)
    assert float((mg(u) * u).sum()) > 0


def test_bad_quality_and_method_are_refused():
    args = (torch.ones(1, 4, 4), torch.zeros(2, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="quality"):
        levin.solve_ab(*args, quality="best")
    with pytest.raises(ValueError, match="method"):
        levin.solve_ab(*args, method="lu")
