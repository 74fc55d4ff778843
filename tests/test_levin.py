"""The Levin system: weights as in the authors' code, stencils and multigrid pieces against dense
matrices, solutions against direct dense solves."""
import math

import numpy as np
import pytest
import torch

import tinct
from tinct.engines.optimization import krylov, levin, multigrid, stencil
from tinct.engines.optimization.engine import OptimizationEngine
from tinct.engines.optimization.multigrid import Multigrid, Prolongation, galerkin, lumped
from tinct.engines.optimization.stencil import OFFSETS, Stencil
from tinct.native import kernels


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
    """Levin's two systems (A, S) for lightness y (0..1) with the pixels in `fixed` pinned to ab."""
    w = levin.affinities(y)
    kappa = torch.zeros(y.shape, dtype=y.dtype)
    return levin.authors_system(w, ab, kappa, fixed)[0], levin.symmetric_system(w, ab, kappa, fixed)[0]


def test_weights_follow_the_authors_rule():
    y = tiny_photo()
    fixed = np.zeros(y.shape, bool)
    a, _ = systems(torch.tensor(y), torch.zeros(2, *y.shape, dtype=torch.float64), torch.tensor(fixed))
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


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
@pytest.mark.parametrize("channels", [1, 2, 5, 9])  # the kernels take channels in blocks of four
def test_c_kernels_match_pytorch(monkeypatch, channels):
    torch.manual_seed(2)
    st = Stencil(torch.rand(37, 29) + 8, torch.rand(8, 37, 29))
    p = Prolongation(st)
    x, b = torch.randn(channels, 37, 29), torch.randn(channels, 37, 29)
    xc = torch.randn(channels, 19, 15)

    coef = torch.randn(2, channels, 1, 1, dtype=torch.float64)

    def run():
        return (st.apply(x), st.residual(x, b), st.gauss_seidel(x.clone(), b),
                st.gauss_seidel(x.clone(), b, reverse=True),
                p.prolong(xc), p.prolong(xc, into=x.clone()), p.restrict(x), krylov.dot(x, b),
                krylov.dots(x, [b, xc.new_ones(x.shape)]), krylov.subtract(x.clone(), [b, x], coef))

    fast = run()
    for module in (stencil, multigrid, krylov):
        monkeypatch.setattr(module, "fused", lambda *tensors: False)
    for f, s in zip(fast, run()):
        torch.testing.assert_close(f, s.to(f.dtype), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
@pytest.mark.parametrize("shape", [(3, 5), (67, 9), (131, 41)])  # one row; 34 and 66 coarse rows: blocks of 32
def test_the_fused_c_restriction_is_residual_then_restrict_to_the_bit(shape):
    """The one-pass P^T (b - A x) keeps only three residual rows; it must be the same bits as the
    two passes at any thread count (a block's first row is recomputed, not carried)."""
    torch.manual_seed(4)
    st = Stencil(torch.rand(shape) + 8, torch.rand(8, *shape))
    p = Prolongation(st)
    x, b = torch.randn(2, *shape), torch.randn(2, *shape)
    two_passes = kernels.restrict(torch.empty(2, *p.weights.shape[-2:]), st.residual(x, b), p.weights)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out = torch.full((2, *p.weights.shape[-2:]), float("nan"))
            assert torch.equal(kernels.restrict_residual(out, x, b, st.d, st.c, p.weights), two_passes)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
def test_c_weights_match_pytorch(monkeypatch):
    y = torch.tensor(tiny_photo(23, 31, seed=10), dtype=torch.float32)
    y[3:6] = 0.5  # flat rows: the variance floor
    fast = levin.affinities(y, 1.7)
    monkeypatch.setattr(levin, "fused", lambda *tensors: False)
    torch.testing.assert_close(fast, levin.affinities(y, 1.7), rtol=1e-5, atol=1e-6)


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
    a, s = systems(y, ab, weight[0] > 0)
    for op in (a, s):
        p = Prolongation(op)
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


def test_final_follows_one_way_couplings_where_the_symmetric_form_leaks():
    """A thin dark strip along two borders, walled in by one-way couplings (its bright neighbours
    follow it, it ignores them): `final` must give the authors' answer at every pixel, which
    the symmetric `preview` form, tying the strip to its surroundings, does not."""
    n = 48
    rng = np.random.default_rng(0)
    y = np.full((n, n), 0.8) + rng.normal(0, 0.01, (n, n))
    y[n - 2:, :] = y[:, n - 2:] = 0.1
    y[n // 4:n // 2, n // 4:n // 2] = 0.5
    ab, weight = hints_for(n, n, {(5, 5): (40, 10), (n // 3, n // 3): (-20, 30), (n - 1, 3): (-50, -40)})
    fixed = weight[0].numpy() > 0
    rhs = np.where(fixed.reshape(-1), ab.numpy().reshape(2, -1), 0)
    expect = np.linalg.solve(authors_matrix(y, fixed), rhs.T).T.reshape(2, n, n)
    args = (torch.tensor(y * 100)[None].float(), ab.float(), weight.float())
    final, info = levin.solve_ab(*args)
    preview, _ = levin.solve_ab(*args, quality="preview")
    assert info["converged"] and info["error"] <= levin.ERROR_TOL["final"]
    assert np.abs(final.numpy() - expect).max() < 1.0
    assert np.abs(preview.numpy() - expect).max() > 5.0


def test_lumping_keeps_row_sums_and_gives_an_m_matrix():
    torch.manual_seed(8)
    c = torch.rand(8, 9, 11, dtype=torch.float64) - 0.3  # some couplings of the wrong sign
    inside = stencil.pad1(torch.ones(9, 11, dtype=torch.float64))
    c *= torch.stack([stencil.shifted(inside, dy, dx, 9, 11) for dy, dx in OFFSETS])  # none leaves the grid
    st = Stencil(torch.rand(9, 11, dtype=torch.float64) + 3, c)
    dense, lump = st.to_dense(), lumped(st).to_dense()
    off = ~torch.eye(99, dtype=torch.bool)
    assert (lump[off] <= 0).all() and (torch.diagonal(lump) >= -lump.masked_fill(~off, 0).sum(1) - 1e-12).all()
    torch.testing.assert_close(lump.sum(1), dense.sum(1).clamp_min(0))
    torch.testing.assert_close(lump[off].clamp_max(0), dense[off].clamp_max(0))


def test_multigrid_of_the_authors_system_is_a_good_preconditioner(monkeypatch):
    """Galerkin of the Levin operator, lumped, with transfers from its own rows: the coarse
    operators stay M-matrices, and GCR with one K-cycle per step solves it to 1e-8 in fewer
    steps than with the symmetric form's multigrid."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)  # a deep hierarchy on a grid small enough to solve densely
    h, w = 37, 41
    y = torch.tensor(tiny_photo(h, w, seed=9))
    ab, weight = hints_for(h, w, {(2, 2): (30, -10), (30, 35): (-40, 20)})
    a, s = systems(y, ab, weight[0] > 0)
    mg = Multigrid(a, lump=True, kcycle=True)
    assert mg.levels == 4
    for op in mg.ops[1:]:
        assert (op.c >= 0).all() and (op.d >= op.c.sum(0) - 1e-12).all()
    b = torch.randn(2, h, w, dtype=torch.float64)
    res = krylov.gcr(a.apply, b, torch.zeros_like(b), mg, 1e-8, 40)
    symmetric = krylov.gcr(a.apply, b, torch.zeros_like(b), Multigrid(s), 1e-8, 40)
    assert res.converged and res.iterations <= 25 and res.iterations < symmetric.iterations
    expect = torch.linalg.solve(a.to_dense(), b.reshape(2, -1).T).T.reshape(2, h, w)
    torch.testing.assert_close(res.x, expect, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("quality", ["final", "preview"])
def test_system_built_at_an_odd_size_is_the_padded_system(quality):
    """solve_ab builds its system at the multigrid's odd size at once instead of copying it into
    decoupled identity rows (Stencil.pad_to_odd): the same operator and right-hand side, bit for bit."""
    h, w = 20, 27
    y = torch.tensor(tiny_photo(h, w, seed=4), dtype=torch.float32)
    ab, weight = hints_for(h, w, {(3, 3): (20, -30), (15, 20): (-10, 25)})
    ab, weight = ab.float(), weight.float()
    kappa = torch.rand(h, w, generator=torch.Generator().manual_seed(2)) * (weight[0] == 0)
    fixed = weight[0] > 0
    system = levin.authors_system if quality == "final" else levin.symmetric_system
    wts = levin.affinities(y)
    a, b = system(wts, ab, kappa, fixed)
    grown, grown_b = system(wts, ab, kappa, fixed, (h + 1, w))
    padded = a.pad_to_odd()
    assert grown.shape == padded.shape == (h + 1, w)
    assert torch.equal(grown.d, padded.d) and torch.equal(grown.c, padded.c)
    assert torch.equal(grown_b, multigrid.fit(b, (h + 1, w)))


def test_coarse_levels_reuse_their_vectors_for_the_same_cycle(monkeypatch):
    """The cycles below the finest level write into vectors kept from call to call (fresh ones
    are page faults at 12 MP): the same answer as with fresh vectors every time, call after call,
    and the kept vectors are the same ones on the second call."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    y = torch.tensor(tiny_photo(37, 41, seed=9))
    ab, weight = hints_for(37, 41, {(2, 2): (30, -10), (30, 35): (-40, 20)})
    a, _ = systems(y.float(), ab.float(), weight[0] > 0)  # float32: the C kernels' path
    kept = Multigrid(a, lump=True, kcycle=True)
    fresh = Multigrid(a, lump=True, kcycle=True)
    monkeypatch.setattr(fresh, "scratch", lambda level, name, like, shape=None: like.new_empty(
        like.shape if shape is None else shape).fill_(math.nan))
    gen = torch.Generator().manual_seed(5)
    first = kept(torch.randn(2, 37, 41, generator=gen))
    vectors = {key: t.data_ptr() for key, t in kept._scratch.items()}
    assert {name for _, name in vectors} >= {"b", "z1", "z2", "w1", "w2", "r1"}
    for _ in range(3):
        r = torch.randn(2, 37, 41, generator=gen)
        assert torch.equal(kept(r), fresh(r))
    assert {key: t.data_ptr() for key, t in kept._scratch.items()} == vectors
    assert torch.isfinite(first).all()


def test_levels_below_the_kcycle_size_take_one_cycle(monkeypatch):
    """On CUDA the deep levels, where a kernel costs its launch whatever it moves, take one cycle
    instead of the K-cycle's two steps: level k is then visited 2^j times (j: the K-cycle levels
    above it), not 2^k, and GCR still solves the authors' system."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    monkeypatch.setattr(multigrid, "K_ENOUGH", 0.0)  # both steps always, as on CUDA
    h, w = 37, 41
    y = torch.tensor(tiny_photo(h, w, seed=9))
    ab, weight = hints_for(h, w, {(2, 2): (30, -10), (30, 35): (-40, 20)})
    a, _ = systems(y, ab, weight[0] > 0)
    b = torch.randn(2, h, w, dtype=torch.float64)

    def visits(kcycle_min: int) -> tuple[list[int], krylov.Result]:
        mg = Multigrid(a, lump=True, kcycle=True)
        monkeypatch.setattr(mg, "kcycle_min", lambda _b: kcycle_min)
        count = [0] * mg.levels
        cycle = mg._cycle

        def counted(level, rhs, x=None):
            count[level] += 1
            return cycle(level, rhs, x)

        monkeypatch.setattr(mg, "_cycle", counted)
        mg(b)
        calls = list(count)
        return calls, krylov.gcr(a.apply, b, torch.zeros_like(b), mg, 1e-8, 40)

    sizes = [op.shape[0] * op.shape[1] for op in Multigrid(a, lump=True, kcycle=True).ops]
    assert sizes == [37 * 41, 19 * 21, 11 * 11, 7 * 7]
    everywhere, full = visits(0)
    assert everywhere == [1, 2, 4, 4]  # the coarsest grid is solved once per visit of the level above
    shallow, cut = visits(200)  # level 1 (399 points) keeps two steps, level 2 (121) takes one
    assert shallow == [1, 2, 2, 2]
    assert full.converged and cut.converged and cut.iterations <= full.iterations + 3


def test_plain_pytorch_solve_matches_the_c_kernels(monkeypatch):
    """The path CUDA takes (no C kernels) gives the same colours, through the same hierarchy."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    h, w = 45, 52
    y = torch.tensor(tiny_photo(h, w, seed=11) * 100, dtype=torch.float32)[None]
    ab, weight = hints_for(h, w, {(3, 4): (30, -20), (40, 45): (-25, 35), (20, 10): (10, 10)})
    runs = []
    for extension in (kernels._kernels, None):  # without the extension, every `fused` says no
        monkeypatch.setattr(kernels, "_kernels", extension)
        runs.append(levin.solve_ab(y, ab.float(), weight.float()))
    (fast, info), (slow, info_slow) = runs
    assert info["levels"] == info_slow["levels"] >= 3 and info_slow["converged"]
    torch.testing.assert_close(fast, slow, atol=0.05, rtol=0)


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
    assert info["converged"] and info["residual"] <= levin.TOL["final"]
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


@pytest.mark.parametrize("quality", ["preview", "final"])
def test_multigrid_keeps_iterations_flat_as_the_image_grows(quality):
    iterations = []
    for n in (65, 257):  # two and four levels
        yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
        light = (50 + 30 * torch.sin(6 * xx) * torch.cos(4 * yy) + 20 * (xx > 0.5))[None]
        ab, weight = torch.zeros(2, n, n), torch.zeros(1, n, n)
        for i, j in ((2, 2), (n - 3, n - 3), (n // 2, 3)):
            ab[:, i, j], weight[0, i, j] = torch.tensor([30.0, -30.0]), 1
        _, info = levin.solve_ab(light, ab, weight, quality=quality)
        iterations.append(info["iterations"])
    assert iterations[1] <= iterations[0] + 4, iterations


def test_krylov_solvers_on_dense_systems():
    torch.manual_seed(6)
    n = 12
    spd = Stencil(torch.full((n, n), 4.0, dtype=torch.float64), torch.rand(8, n, n, dtype=torch.float64) * 0.4)
    sym = Stencil(spd.d, 0.5 * (spd.c + spd.transpose().c))
    b = torch.randn(2, n, n, dtype=torch.float64)
    def ident(r, out=None):
        return r.clone() if out is None else out.copy_(r)
    calls = []

    def varying(r, out=None):  # a preconditioner that changes from call to call, as a K-cycle does
        calls.append(1)
        return torch.mul(r, 1.0 + 0.5 * (len(calls) % 3), out=out)

    for solve, op, pre in ((krylov.pcg, sym, ident), (krylov.gcr, spd, ident), (krylov.gcr, spd, varying)):
        res = solve(op.apply, b, torch.zeros_like(b), pre, 1e-10, 500)
        assert res.converged, solve.__name__
        expect = torch.linalg.solve(op.to_dense(), b.reshape(2, -1).T).T.reshape(2, n, n)
        torch.testing.assert_close(res.x, expect, atol=1e-8, rtol=0)


def test_gcr_reuses_the_memory_of_dropped_directions_for_the_same_answer():
    """After a restart GCR hands its dropped directions back to the operator and the preconditioner
    as `out` (at 12 MP fresh ones cost a fifth of the solve in page faults): the same iterates."""
    y = torch.tensor(tiny_photo(33, 29, seed=3))
    ab, weight = hints_for(33, 29, {(4, 4): (30, -20), (25, 20): (-10, 40)})
    a, _ = systems(y, ab, weight[0] > 0)
    mg = Multigrid(a, lump=True, kcycle=True, dense_max=60)  # coarse enough not to be exact
    b = torch.randn(2, 33, 29, generator=torch.Generator().manual_seed(1))
    given = []

    def reusing(f):
        def call(x, out=None):
            given.append(out is not None)
            return f(x, out=out)
        return call

    def fresh(f):
        return lambda x, out=None: f(x)

    kept = krylov.gcr(reusing(a.apply), b, torch.zeros_like(b), reusing(mg), 1e-9, 40, restart=3)
    plain = krylov.gcr(fresh(a.apply), b, torch.zeros_like(b), fresh(mg), 1e-9, 40, restart=3)
    assert kept.iterations == plain.iterations > 3 and torch.equal(kept.x, plain.x)
    assert sum(given) >= kept.iterations - 3  # every step after the first restart reused memory


def test_gcr_waits_for_the_error_estimate_as_well_as_the_residual(monkeypatch):
    """A hint-free dark square walled in by edges: its colour costs little residual, so a loose
    residual alone stops with it wrong; the error estimate M^-1 r sees it and GCR goes on."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    n = 40
    rng = np.random.default_rng(1)
    y = np.full((n, n), 0.7) + rng.normal(0, 0.005, (n, n))
    y[10:30, 10:30] = 0.2 + rng.normal(0, 0.005, (20, 20))
    ab, weight = hints_for(n, n, {(2, 2): (40, 10), (37, 37): (-30, 20), (12, 12): (10, -40)})
    fixed = weight[0] > 0
    rhs = np.where(fixed.numpy().reshape(-1), ab.numpy().reshape(2, -1), 0)
    expect = torch.tensor(np.linalg.solve(authors_matrix(y, fixed.numpy()), rhs.T).T.reshape(2, n, n))
    a, b = levin.authors_system(levin.affinities(torch.tensor(y)), ab, torch.zeros(n, n, dtype=torch.float64), fixed)
    mg = Multigrid(a, lump=True, kcycle=True)
    loose = krylov.gcr(a.apply, b, torch.zeros_like(b), mg, 1e-2, 100)
    strict = krylov.gcr(a.apply, b, torch.zeros_like(b), mg, 1e-2, 100, error_tol=0.2)
    assert loose.converged and strict.converged and strict.error <= 0.2
    assert (loose.x - expect).abs().max() > 1.0 > 0.5 > (strict.x - expect).abs().max()
    # the estimate is the largest |M^-1 r| of either channel, whichever sign it has
    z = mg(b - a.apply(strict.x))
    assert strict.error == pytest.approx(float(z.abs().max()), rel=1e-3)
    flipped = krylov.gcr(a.apply, -b, torch.zeros_like(b), mg, 1e-2, 100, error_tol=0.2)
    assert flipped.error == pytest.approx(strict.error, rel=1e-6)


def test_vcycle_is_a_symmetric_operator_for_symmetric_input():
    y = torch.tensor(tiny_photo(19, 23, seed=7))
    ab, weight = hints_for(19, 23, {(3, 3): (10, 10)})
    _, s = systems(y, ab, weight[0] > 0)
    mg = Multigrid(s)
    u, v = torch.randn(1, 19, 23, dtype=torch.float64), torch.randn(1, 19, 23, dtype=torch.float64)
    assert float((mg(u) * v).sum()) == pytest.approx(float((u * mg(v)).sum()), rel=1e-9)
    assert float((mg(u) * u).sum()) > 0


def test_bad_quality_and_unknown_options_are_refused():
    args = (torch.ones(1, 4, 4), torch.zeros(2, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="quality"):
        levin.solve_ab(*args, quality="best")
    with pytest.raises(ValueError, match="unknown option.*method"):
        OptimizationEngine().predict_ab(*args, method="lu")


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 3), (7, 2), (9, 33), (30, 5)])
def test_strip_solver_is_an_exact_solve(shape):
    """Block cyclic reduction along the long side, wide and tall, for a non-symmetric M-matrix."""
    torch.manual_seed(12)
    h, w = shape
    inside = stencil.pad1(torch.ones(h, w, dtype=torch.float64))
    c = torch.rand(8, h, w, dtype=torch.float64) * torch.stack([stencil.shifted(inside, dy, dx, h, w)
                                                                 for dy, dx in OFFSETS])
    st = Stencil(c.sum(0) + torch.rand(h, w, dtype=torch.float64) * 0.1 + 1e-3, c)
    b = torch.randn(2, h, w, dtype=torch.float64)
    expect = torch.linalg.solve(st.to_dense(), b.reshape(2, -1).T).T.reshape(2, h, w)
    torch.testing.assert_close(multigrid.StripSolver(st)(b), expect, atol=1e-10, rtol=1e-10)


def strip_lightness(h, w, wiggle):
    """Lightness (1, H, W) along the strip's long side: dark, then bright from halfway (an edge),
    plus `wiggle`(t) for t from 0 to 1."""
    t = torch.linspace(0, 1, max(h, w), dtype=torch.float64)
    line = torch.where(t < 0.5, 30.0, 70.0) + wiggle(t)
    return (line[None, :].expand(h, w) if w >= h else line[:, None].expand(h, w)).float().contiguous()[None]


RED, BLUE = (60.0, 40.0), (20.0, -60.0)


def end_strokes(h, w):
    """RED on the strip's first line across, BLUE on its last."""
    ab, weight = torch.zeros(2, h, w), torch.zeros(1, h, w)
    first, last = ((slice(None), 0), (slice(None), -1)) if w >= h else ((0, slice(None)), (-1, slice(None)))
    for line, colour in ((first, RED), (last, BLUE)):
        ab[(slice(None),) + line] = torch.tensor(colour).view(2, 1)
        weight[(slice(None),) + line] = 1
    return ab, weight


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 30), (30, 2), (3, 3), (16, 40), (40, 16)])
@pytest.mark.parametrize("quality", ["final", "preview"])
def test_strips_match_a_direct_dense_solve(monkeypatch, shape, quality):
    """Strips solve the same systems as photos: the authors' I - W (final) and the Laplacian of
    (W + W^T)/2 (preview).  16 px wide strips coarsen once, onto a strip (the small DENSE_MAX
    makes that coarsest grid long enough for block cyclic reduction, as on a long strip)."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    h, w = shape
    light = strip_lightness(h, w, lambda t: 10 * t)  # a ramp: no region walled in by one-way couplings
    ab, weight = end_strokes(h, w)
    ab[:, h // 2, w // 2], weight[0, h // 2, w // 2] = torch.tensor([-30.0, 0.0]), 1  # a third stroke inside
    ours, info = levin.solve_ab(light, ab, weight, quality=quality, tol=1e-7, max_iter=300)
    # exact at once: final's nested start already is the answer, preview's first step
    assert info["converged"] and (info["iterations"] <= 1 or min(shape) > multigrid.COARSEST)
    y = light[0].double().numpy() / 100
    fixed = weight[0].numpy().reshape(-1) > 0
    hint = ab.double().numpy().reshape(2, -1)
    if quality == "final":
        expect = np.linalg.solve(authors_matrix(y, fixed.reshape(h, w)), np.where(fixed, hint, 0).T).T
    else:
        wts = np.eye(h * w) - authors_matrix(y, np.zeros((h, w), bool))
        sym = 0.5 * (wts + wts.T)
        lap = np.diag(sym.sum(1)) - sym
        expect = hint * fixed
        expect[:, ~fixed] = np.linalg.solve(lap[np.ix_(~fixed, ~fixed)],
                                            -(lap[np.ix_(~fixed, fixed)] @ hint[:, fixed].T)).T
    np.testing.assert_allclose(ours.numpy().reshape(2, -1), expect, atol=2e-3)


@pytest.mark.parametrize("quality", ["final", "preview"])
@pytest.mark.parametrize("shape", [(2, 65535), (1, 65535), (16, 2000), (1, 300)])
def test_long_strips_carry_colour_from_end_to_end(shape, quality):
    """A strip with RED at one end and BLUE at the other: a red end, a blue end, every pixel
    coloured (no grey middle), the colour between the strokes' (the maximum principle, which the
    float32 system of a 65535 px chain breaks), its biggest step at the
    lightness edge, and the same answer for the strip stood on end.  Strips up to COARSEST px
    wide are solved exactly (one iteration); wider ones coarsen onto such a strip, so their
    answers are as close as the solver's tolerance."""
    exact = min(shape) <= multigrid.COARSEST
    answers = []
    for h, w in (shape, shape[::-1]):
        ab, weight = end_strokes(h, w)
        out, info = levin.solve_ab(strip_lightness(h, w, lambda t: 5 * torch.sin(20 * t)), ab, weight, quality=quality)
        assert info["converged"] and info["iterations"] <= (1 if exact else 4)
        answers.append(out if w >= h else out.transpose(1, 2))
    torch.testing.assert_close(answers[1], answers[0], atol=1e-3 if exact else levin.ERROR_TOL["final"], rtol=0)
    line = answers[0][:, 0, :]  # (2, n) along the strip
    torch.testing.assert_close(line[:, 0], torch.tensor(RED), atol=1e-2, rtol=0)
    torch.testing.assert_close(line[:, -1], torch.tensor(BLUE), atol=1e-2, rtol=0)
    assert line.norm(dim=0).min() > 30  # the straight blend from RED to BLUE never comes near grey
    for channel, (lo, hi) in enumerate(zip(BLUE, RED)):
        assert min(lo, hi) - 0.5 <= line[channel].min() and line[channel].max() <= max(lo, hi) + 0.5
    steps = (line[:, 1:] - line[:, :-1]).norm(dim=0)
    edge = int((torch.linspace(0, 1, line.shape[1], dtype=torch.float64) < 0.5).sum()) - 1  # dark to bright
    assert int(steps.argmax()) == edge and steps[edge] > 10 * steps[torch.arange(len(steps)) != edge].max()


@pytest.mark.parametrize("quality", ["final", "preview"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (2, 65535), (65535, 2)])
def test_colorize_colours_strips(shape, quality):
    """The finding's reproduction: a grey ramp with a red stroke at one end and a blue one at the
    other came back grey; now the red end is red, the blue end blue and no pixel is left grey."""
    h, w = shape
    n = max(h, w)
    ramp = np.linspace(0.2, 0.8, n)
    grey = np.round(255 * (ramp[None, :] if w >= h else ramp[:, None]) * np.ones((h, w))).astype(np.uint8)
    hints = np.zeros((h, w, 4), np.uint8)
    first, last = (np.s_[:, 0], np.s_[:, -1]) if w >= h else (np.s_[0, :], np.s_[-1, :])
    hints[last] = (30, 60, 220, 255)
    hints[first] = (220, 30, 30, 255)  # a 1x1 image gets only this one
    rgb = tinct.colorize(grey, hints, quality=quality).astype(int)
    line = rgb[0] if w >= h else rgb[:, 0]  # (n, 3) along the strip
    assert line[0, 0] > line[0, 2] + 50
    if n > 1:
        assert line[-1, 2] > line[-1, 0] + 30
    assert (line.max(1) - line.min(1)).min() > 20


def test_a_prior_on_every_pixel_is_solved_by_sweeps_alone(monkeypatch):
    """The learned engine's automatic case (prior weight 1 everywhere) skips the multigrid: the
    same answer as with it, within final's error goal, and still the authors' system (dense solve)."""
    n = 60  # more points than DENSE_MAX, so the multigrid has levels
    rng = np.random.default_rng(3)
    y = np.clip(tiny_photo(n, n, seed=3) + rng.normal(0, 0.02, (n, n)), 0, 1)
    light = torch.tensor(y * 100, dtype=torch.float32)[None]
    prior = torch.tensor(rng.normal(0, 30, (2, n, n)), dtype=torch.float32)
    ab, weight = hints_for(n, n, {(3, 3): (40, 10)})
    args = (light, ab.float(), weight.float(), prior, 1.0)
    swept, info = levin.solve_ab(*args)
    assert info["levels"] == 1 and info["converged"]
    monkeypatch.setattr(levin, "DOMINANT", math.inf)
    cycled, info = levin.solve_ab(*args)
    assert info["levels"] > 1
    torch.testing.assert_close(swept, cycled, atol=levin.ERROR_TOL["final"], rtol=0)
    fixed = weight[0].numpy() > 0
    a = authors_matrix(y, fixed) + np.diag(np.where(fixed.reshape(-1), 0.0, 1.0))
    rhs = np.where(fixed.reshape(-1), ab.numpy().reshape(2, -1), prior.double().numpy().reshape(2, -1))
    expect = np.linalg.solve(a, rhs.T).T.reshape(2, n, n)
    assert np.abs(swept.numpy() - expect).max() < 1.0


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
def test_dense_coarse_solve_sums_in_index_order():
    """kernels.dense is b @ t with each output's terms added first to last, as a plain loop would."""
    g = torch.Generator().manual_seed(3)
    m = torch.rand(300, 300, generator=g)
    b = torch.randn(2, 300, generator=g)
    out = kernels.dense(torch.empty_like(b), b, m.T.contiguous())
    assert torch.allclose(out, b @ m.T, rtol=1e-5, atol=1e-4)
    exact = (b.double() @ m.T.double()).float()
    ordered = torch.stack([torch.stack([sum((m[i, j] * b[c, j] for j in range(300)), torch.tensor(0.0))
                                        for i in range(3)]) for c in range(2)])
    assert torch.equal(out[:, :3], ordered) and torch.allclose(out, exact, atol=1e-4)
