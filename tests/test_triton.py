"""The Triton kernels (tinct.native.triton_kernels) against the C loops, one by one and
through whole `final` and `preview` solves.

Without a GPU they run in Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 has to be set before
Triton decorates the kernels, so this module sets it before anything imports them (on the CPU nothing
else does: the CPU path never imports Triton).  With a GPU the same tests run the compiled kernels on
CUDA tensors, and the `cuda` tests below add what only a GPU can show.  Interpreted, the kernels do
the C loops' arithmetic in the same order, so they must agree exactly, except exp (the weights) and
float64 sums taken in another order (inner products); compiled, fused multiply-adds and the GPU's
division round differently, hence the tolerances.
"""
import os
import sys

import numpy as np
import pytest
import torch

if sys.platform != "linux":  # Triton's wheels are Linux-only; there the test extra installs it (pyproject.toml)
    pytest.skip("Triton runs on Linux only", allow_module_level=True)
CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when the default is left implicit

import tinct  # noqa: E402
from tinct.color import lab, pixels  # noqa: E402
from tinct.engines.optimization import graphs, krylov, levin, multigrid  # noqa: E402
from tinct.engines.optimization.multigrid import Prolongation  # noqa: E402
from tinct.engines.optimization.stencil import Stencil  # noqa: E402
from tinct.native import kernels  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="the C kernels were not built (no compiler)")
DEVICE = torch.device("cuda" if CUDA else "cpu")
EXACT = not CUDA
H, W = 37, 71  # odd (the transfers' grids), and across the 8 x 64 tiles' edges


@pytest.fixture
def triton(monkeypatch):
    """Triton for every tensor, CPU ones included (interpreted): the kernels module imported."""
    monkeypatch.setattr(kernels, "CPU_BACKEND", "triton")
    assert kernels.triton_kernels() is not None, kernels.triton_error()
    return kernels


def same(fast: torch.Tensor, reference: torch.Tensor, rtol: float = 2e-5, atol: float = 1e-5) -> None:
    fast = fast.cpu()
    if EXACT:
        assert torch.equal(fast, reference), f"largest difference {(fast - reference).abs().max():.3g}"
    else:
        torch.testing.assert_close(fast, reference, rtol=rtol, atol=atol)


def problem(channels: int, seed: int = 2):
    torch.manual_seed(seed)
    st = Stencil(torch.rand(H, W) + 8, torch.rand(8, H, W))
    return st, torch.randn(channels, H, W), torch.randn(channels, H, W)


def on(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(DEVICE) for t in tensors]


def c_path(monkeypatch, fn):
    """fn() through the C loops (the reference), whatever the test set CPU_BACKEND to."""
    with monkeypatch.context() as mp:
        mp.setattr(kernels, "CPU_BACKEND", "c")
        return fn()


@pytest.mark.parametrize("channels", [1, 2, 9])  # one; a and b; the Galerkin probes
def test_residual_and_apply(triton, monkeypatch, channels):
    st, x, b = problem(channels)
    ref_r = c_path(monkeypatch, lambda: kernels.residual(torch.empty_like(x), x, st.d, st.c, b))
    ref_a = c_path(monkeypatch, lambda: kernels.residual(torch.empty_like(x), x, st.d, st.c))
    xg, bg, d, c = on(x, b, st.d, st.c)
    same(triton.residual(torch.empty_like(xg), xg, d, c, bg), ref_r)
    same(triton.residual(torch.empty_like(xg), xg, d, c), ref_a)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(H, W), (40, 66)])  # and even sides
def test_gauss_seidel(triton, monkeypatch, reverse, shape):
    torch.manual_seed(3)
    st = Stencil(torch.rand(shape) + 8, torch.rand(8, *shape))
    x, b = torch.randn(2, *shape), torch.randn(2, *shape)
    ref = c_path(monkeypatch, lambda: kernels.gauss_seidel(x.clone(), b, st.d, st.c, reverse))
    xg, bg, d, c = on(x, b, st.d, st.c)
    same(triton.gauss_seidel(xg, bg, d, c, reverse), ref)


@pytest.mark.parametrize("channels", [1, 2])
def test_prolong_restrict_and_the_fused_residual_restriction(triton, monkeypatch, channels):
    st, x, b = problem(channels)
    p = Prolongation(st)
    xc = torch.randn(channels, (H + 1) // 2, (W + 1) // 2)

    def run(d, c, wt, x, b, xc):
        rc = xc.new_empty(xc.shape)
        return (kernels.prolong(x.new_empty(x.shape), xc, wt), kernels.prolong(x.clone(), xc, wt, accumulate=True),
                kernels.restrict(xc.new_empty(xc.shape), x, wt), kernels.restrict_residual(rc, x, b, d, c, wt))

    refs = c_path(monkeypatch, lambda: run(st.d, st.c, p.weights, x, b, xc))
    fused_restriction = refs[3]
    residual_then_restrict = c_path(
        monkeypatch, lambda: kernels.restrict(xc.new_empty(xc.shape), st.residual(x, b), p.weights))
    for fast, ref in zip(run(*on(st.d, st.c, p.weights, x, b, xc)), refs):
        same(fast, ref)
    assert torch.equal(fused_restriction, residual_then_restrict)


def test_inner_products_in_float64(triton, monkeypatch):
    st, u, v = problem(2)
    vs = [v, u, torch.ones_like(u)]
    ref_dot = c_path(monkeypatch, lambda: krylov.dot(u, v))
    ref_dots = c_path(monkeypatch, lambda: krylov.dots(u, vs))
    ug, vg, *vsg = on(u, v, *vs)
    torch.testing.assert_close(krylov.dot(ug, vg).cpu(), ref_dot, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(krylov.dots(ug, vsg).cpu(), ref_dots, rtol=1e-12, atol=1e-9)
    assert krylov.dots(ug, vsg).dtype == torch.float64


def test_inner_products_past_one_launch(triton, monkeypatch):
    """Eleven vectors: two launches of eight vectors a pass."""
    st, u, v = problem(2)
    vs = [v * k for k in range(11)]
    ref = c_path(monkeypatch, lambda: krylov.dots(u, vs))
    torch.testing.assert_close(krylov.dots(*on(u), on(*vs)).cpu(), ref, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("count", [3, 11])  # one launch (the C loop's order: exact); two (rounded apart)
def test_gram_schmidt_combination(triton, monkeypatch, count):
    st, u, v = problem(2)
    vs = [v + k * torch.ones_like(u) for k in range(count)]
    coef = torch.randn(count, 2, 1, 1, dtype=torch.float64)
    ref = c_path(monkeypatch, lambda: krylov.subtract(u.clone(), vs, coef))
    fast = krylov.subtract(*on(u.clone()), on(*vs), coef.to(DEVICE))
    if count <= 8:
        same(fast, ref)
    else:
        torch.testing.assert_close(fast.cpu(), ref, rtol=1e-5, atol=1e-4)


def test_weights(triton, monkeypatch):
    torch.manual_seed(4)
    y = torch.rand(H, W)
    y[3:6] = 0.5  # flat rows: the variance floor
    y[:, 20] = 0.9  # a hard edge
    ref = c_path(monkeypatch, lambda: levin.affinities(y, 1.7))
    fast = levin.affinities(y.to(DEVICE), 1.7).cpu()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-7)  # exp: C's expf against numpy's or the GPU's


def photo(h: int, w: int):
    """Lightness with flat patches, a hard edge and noise, and three strokes."""
    gen = torch.Generator().manual_seed(11)
    y = torch.full((h, w), 30.0)
    y[:, w // 2:] = 80.0
    y[h // 2:, :w // 3] = torch.rand(h - h // 2, w // 3, generator=gen) * 100
    ab, weight = torch.zeros(2, h, w), torch.zeros(1, h, w)
    for (i, j), (a, b) in {(3, 4): (30, -20), (h - 5, w - 7): (-25, 35), (h // 2, 10): (10, 10)}.items():
        ab[:, i, j] = torch.tensor([a, b])
        weight[0, i, j] = 1
    return y[None], ab, weight


@pytest.mark.parametrize("quality", ["final", "preview"])
def test_whole_solves_through_triton_match_the_c_kernels(triton, monkeypatch, quality):
    """Every native loop of a solve through the Triton kernels (setup, GCR or CG, K-cycle or V-cycle, the
    fused residual restriction), three levels deep, against the same solve through the C loops."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    y, ab, weight = photo(29, 33)
    ref, ref_info = c_path(monkeypatch, lambda: levin.solve_ab(y, ab, weight, quality=quality))
    out, info = levin.solve_ab(*on(y, ab, weight), quality=quality)
    assert out.device.type == DEVICE.type
    assert info["levels"] == ref_info["levels"] >= 3 and info["converged"] and ref_info["converged"]
    if EXACT:  # the same arithmetic, so the same iterates (up to the order of float64 sums)
        assert info["iterations"] == ref_info["iterations"]
        torch.testing.assert_close(out.cpu(), ref, atol=0.05, rtol=0)
    else:  # on CUDA the K-cycle always takes both steps: another preconditioner, the same stopping rule
        torch.testing.assert_close(out.cpu(), ref, atol=levin.ERROR_TOL["final"], rtol=0)


PIXEL_SIZE = (29, 47)  # 1363 pixels: three blocks of 512, the last one partial
DEPTHS = [np.uint8, np.uint16, np.float32]


def caller_pixels(dtype, channels: int, seed: int) -> np.ndarray:
    """An editor's pixels: every code of the depth likely, the extremes included."""
    rng = np.random.default_rng(seed)
    shape = (*PIXEL_SIZE, channels)
    if np.dtype(dtype).kind == "u":
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
        image[0, :2] = [[0], [np.iinfo(dtype).max]]
    else:
        image = rng.random(shape).astype(dtype)
        image[0, :2] = [[0.0], [1.0]]
    return image


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DEPTHS)
def test_lightness_of_the_callers_pixels(triton, monkeypatch, dtype, channels):
    """Lab L straight from the caller's pixels (moved in their own width) against the C loop.  Within 1e-4 of
    L's 0..100: cbrtf (and powf for float32) are exp2(y log2 x) in the Triton kernel, a few ulps away."""
    image = caller_pixels(dtype, channels, seed=channels)
    y_row, _ = lab.native_constants()
    table = lab.linear_table(np.iinfo(dtype).max + 1) if np.dtype(dtype).kind == "u" else None
    ref = c_path(monkeypatch, lambda: kernels.lightness(torch.empty(PIXEL_SIZE), image, table, y_row))
    src = kernels.to_device(image, DEVICE)
    assert src.dtype == kernels.TRAVELS_AS[image.dtype] and src.element_size() == image.itemsize
    table_there = None if table is None else table.to(DEVICE)
    fast = kernels.lightness(torch.empty(PIXEL_SIZE, device=DEVICE), src, table_there, y_row.to(DEVICE))
    torch.testing.assert_close(fast.cpu(), ref, rtol=0, atol=1e-4)


def test_tensor_pixels_only_go_to_triton(monkeypatch):
    """The C loops take the caller's arrays; tensors handed to them are refused, not read as addresses."""
    monkeypatch.setattr(kernels, "CPU_BACKEND", "c")
    y_row, params = lab.native_constants()
    image = torch.zeros((*PIXEL_SIZE, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="Triton"):
        kernels.lightness(torch.empty(PIXEL_SIZE), image, lab.linear_table(256), y_row)
    with pytest.raises(ValueError, match="Triton"):
        kernels.encode(image, torch.zeros(PIXEL_SIZE), torch.zeros(2, *PIXEL_SIZE), params, None)


def lab_answer(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L a little past 0..100 (clamped), and a, b from grey to far outside the gamut (bisected)."""
    gen = torch.Generator().manual_seed(seed)
    L = torch.rand(PIXEL_SIZE, generator=gen) * 110 - 5
    ab = torch.randn(2, *PIXEL_SIZE, generator=gen) * 60
    ab[:, :3] = 0  # grey rows
    return L, ab


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("dtype", DEPTHS)
def test_encode_into_the_callers_depth(triton, monkeypatch, dtype, channels):
    """sRGB with L kept, written in the caller's depth, against the C loop.  8-bit: the same codes (no fused
    multiply-adds, the same rounding points).  16-bit: within one code, float32: within 1e-6, since
    powf is exp2(y log2 x) here.  Alpha: copied bit for bit."""
    L, ab = lab_answer(seed=channels)
    _, params = lab.native_constants()
    alpha = caller_pixels(dtype, 1, seed=9)[..., 0] if channels == 4 else None
    ref = c_path(monkeypatch, lambda: kernels.encode(np.empty((*PIXEL_SIZE, channels), dtype), L, ab, params, alpha))
    out = torch.empty((*PIXEL_SIZE, channels), dtype=kernels.TRAVELS_AS[np.dtype(dtype)], device=DEVICE)
    moved = None if alpha is None else kernels.to_device(alpha, DEVICE)
    fast = kernels.from_device(kernels.encode(out, *on(L, ab, params), moved), np.dtype(dtype))
    assert fast.dtype == dtype and fast.shape == ref.shape
    if alpha is not None:
        assert np.array_equal(fast[..., 3], alpha)
    colour, expected = fast[..., :3].astype(np.float64), ref[..., :3].astype(np.float64)
    if dtype == np.uint8:
        assert np.array_equal(colour, expected), f"{(colour != expected).sum()} codes differ"
    else:
        np.testing.assert_allclose(colour, expected, rtol=0, atol=1 if dtype == np.uint16 else 1e-6)
    assert lab.lab_to_srgb(torch.cat([L[None], ab]), clip=False).min() < 0  # some colours were bisected


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 2)])
def test_whole_colorize_through_triton_matches_the_cpu(triton, monkeypatch, dtype, channels):
    """tinct.colorize with every native step on the Triton kernels (the photo's L, the solve, the encoding)
    against the same job through the C loops.  The Triton L is a few ulps from the C one and the solve
    carries that on: 8-bit, the same codes at all but the odd pixel, none off by more than one; 16-bit,
    most codes the same, none off by more than 8 of 65535."""
    monkeypatch.setattr(multigrid, "DENSE_MAX", 64)
    image = caller_pixels(dtype, channels, seed=5)
    image[..., 0] = np.linspace(0, np.iinfo(dtype).max, PIXEL_SIZE[1]).astype(dtype)  # a ramp under the noise
    image[10:20, 10:30, 0] = np.iinfo(dtype).max // 3  # a flat patch
    hints = np.zeros((*PIXEL_SIZE, 4), np.uint8)
    hints[2:4, 3:5] = (200, 40, 40, 255)
    hints[-4:-2, -6:-4] = (30, 60, 220, 255)
    hints[14, 20] = (20, 200, 60, 255)
    ref = c_path(monkeypatch, lambda: tinct.colorize(image, hints))
    fast = tinct.colorize(image, hints, device=DEVICE)
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape == (*PIXEL_SIZE, 4 if channels == 2 else 3)
    diff = np.abs(fast.astype(np.int64) - ref.astype(np.int64))
    if EXACT:
        assert diff.max() <= (1 if dtype == np.uint8 else 8), f"largest difference {diff.max()}"
        assert (diff == 0).mean() > (0.99 if dtype == np.uint8 else 0.75)
    else:  # on CUDA the solve itself differs, by up to its error tolerance of 1 in a, b (the test above)
        assert diff.max() <= 4 * (1 if dtype == np.uint8 else 257), f"largest difference {diff.max()}"
    assert np.ptp(ref[..., 0].astype(np.int64) - ref[..., 2].astype(np.int64)) > np.iinfo(dtype).max // 4  # colour


def test_cpu_path_does_not_import_triton():
    """A fresh process solving on the CPU never imports Triton (it is the CUDA path's alone)."""
    import subprocess

    code = ("import sys, torch; from tinct.engines.optimization import levin\n"
            "levin.solve_ab(torch.rand(1, 40, 40) * 100, torch.ones(2, 40, 40), torch.ones(1, 40, 40) * 0.5)\n"
            "assert 'triton' not in sys.modules, 'triton imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_no_kernel_argument_is_named_like_the_launchers_own_variables():
    """Triton's compiled launch binds the arguments in a generated function whose own locals are
    these names (Triton 3.6); a kernel argument named `params` was overwritten by a dict there and
    every `encode` failed on the first real GPU, while the interpreter, which has no such function,
    passed.  The spec signatures are the kernels' own argument lists (the compile proof uses them)."""
    from tinct.native.triton_kernels import KERNELS

    launcher = {"params", "specialization", "options", "backend", "specialize_impl"}
    for name, spec in KERNELS.items():
        assert not launcher & set(spec.signature), (name, launcher & set(spec.signature))


def test_doctor_says_which_gpu_and_whether_the_kernels_compiled_for_it():
    from tinct.tools import doctor

    row = doctor.check_gpu()
    if CUDA:
        assert row.status == "ok" and "GiB" in row.detail and "Triton kernels compiled for sm_" in row.detail
    else:
        assert row.status == "-" and "no GPU" in row.detail


cuda = pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", DEPTHS)
def test_cuda_pixels_at_a_megapixel_match_the_cpu(dtype):
    """The two ends of a job on the GPU (pixels.lightness and encode_lab: the caller's RGBA crossing in its own
    width, the compiled kernels, the planes back) against the C loops, at 1000 x 1000.  Tolerances as in the
    interpreted tests above: the GPU's exp2 and log2 are a few ulps, and 8-bit codes exact."""
    rng = np.random.default_rng(3)
    if dtype == np.float32:
        image = rng.random((1000, 1000, 4)).astype(dtype)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, (1000, 1000, 4), endpoint=True).astype(dtype)
    here, there = pixels.decode(image), pixels.decode(image, "cuda")
    L = pixels.lightness(here)
    L_gpu = pixels.lightness(there)
    assert L_gpu.device.type == "cuda"
    torch.testing.assert_close(L_gpu.cpu(), L, rtol=0, atol=1e-4)
    ab = torch.from_numpy(rng.normal(0, 50, (2, 1000, 1000)).astype(np.float32))
    ref = pixels.encode_lab(L, ab, here)
    out = pixels.encode_lab(L.cuda(), ab.cuda(), there)
    assert out.dtype == ref.dtype and out.shape == ref.shape and np.array_equal(out[..., 3], image[..., 3])
    colour, expected = out[..., :3].astype(np.float64), ref[..., :3].astype(np.float64)
    if dtype == np.uint8:
        assert np.array_equal(colour, expected), f"{(colour != expected).sum()} codes differ"
    else:
        np.testing.assert_allclose(colour, expected, rtol=0, atol=1 if dtype == np.uint16 else 1e-6)


@pytest.mark.cuda
@cuda
def test_cuda_solve_at_a_megapixel_matches_the_cpu():
    y, ab, weight = photo(1000, 1000)
    ref, ref_info = levin.solve_ab(y, ab, weight)
    out, info = levin.solve_ab(*on(y, ab, weight))
    assert info["converged"] and ref_info["converged"]
    # both stop within ERROR_TOL (ab units) of the exact answer by the error estimate, the GPU's K-cycle
    # taking both steps always: the two agree to that at all but the odd pixel
    assert (out.cpu() - ref).abs().flatten()[::7].quantile(0.999) < 2 * levin.ERROR_TOL["final"]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("quality", ["final", "preview"])
def test_cuda_graph_replays_the_preconditioner(quality):
    """The K-cycle (final) and V-cycle (preview), captured once and replayed, give what they give when
    launched call by call: nothing in them reads back to the host or allocates outside the graph."""
    y, ab, weight = on(*photo(300, 400))
    w = levin.affinities(y[0] / 100)
    fixed = weight[0] >= levin.FIXED
    system = levin.authors_system if quality == "final" else levin.symmetric_system
    a, b = system(w, ab, torch.zeros_like(weight[0]), fixed)
    mg = multigrid.Multigrid(a, lump=quality == "final", kcycle=quality == "final")
    replayed = graphs.Replayed(mg)
    first = replayed(b)  # run as usual, then captured
    assert replayed.graph is not None
    again = replayed(b * 2)  # replayed
    torch.testing.assert_close(first, mg(b), rtol=0, atol=0)
    torch.testing.assert_close(again, mg(b * 2), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@cuda
def test_cuda_out_of_memory_is_retried_on_the_cpu():
    """tinctd's worker on the GPU, capped at 64 MiB, runs out of memory on a megapixel job for real and
    answers it from the CPU, saying so (tests/test_worker.py simulates the error; this is the real one)."""
    from test_worker import striped, worker

    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(64 * 2**20 / torch.cuda.get_device_properties(0).total_memory)
    try:
        reply = worker("cuda:0").answer(striped(960))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert reply["ok"] and reply["device"] == "cpu" and "CPU" in reply["note"]
