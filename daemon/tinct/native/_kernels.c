/* Fused CPU loops: the nine-point stencils of tinct.engines.optimization, and the Lab conversions
 * at the two ends of every job (tinct.color.pixels).
 *
 * PyTorch applies a stencil as sixteen separate passes over memory, and a Lab conversion as a
 * dozen; these loops do each in one, which is what makes 12 MP photos fast on a laptop CPU.  They
 * are an optional accelerator: the callers fall back to plain PyTorch (and use Triton on CUDA), and
 * the tests check both give the same numbers.  Every sum runs in a fixed order, so the answers
 * are the same bits at any thread count.
 *
 * Layout (all float32, C-contiguous): x, y, b are (C, H, W); d is (H, W);
 * c is (8, H, W) with the neighbour order of tinct.stencil.OFFSETS.  The
 * multigrid transfers work on odd fine sizes H x W and coarse (H+1)/2 x (W+1)/2
 * grids, with the eight interpolation weights of tinct.multigrid.Prolongation
 * packed as (8, Hc, Wc), each indexed by the coarse point north-west of the
 * fine pixel it serves.
 * Arguments are raw addresses (tensor.data_ptr()) and sizes; the GIL is
 * released while the loops run, so the daemon keeps answering meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const int DY[8] = {-1, -1, -1, 0, 0, 1, 1, 1};
static const int DX[8] = {-1, 0, 1, -1, 1, -1, 0, 1};

/* Every sum over the eight neighbours runs in this order (the rows above and below, then left and
 * right), here, in the Triton kernels and so in the Gauss-Seidel sweep, which adds the rows above
 * and below for a whole row at once and only then the same row's neighbours it is updating. */
static const int ORDER[8] = {0, 1, 2, 5, 6, 7, 3, 4};

/* sum_k c[k, i, j] * x[i + dy_k, j + dx_k] for one pixel of one channel, neighbours outside
 * read as 0: the border pixels' slow path. */
static inline float coupled(const float *x, const float *c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t i,
                            Py_ssize_t j) {
    const Py_ssize_t n = h * w, r = i * w + j;
    float acc = 0.f;
    for (int t = 0; t < 8; t++) {
        const int k = ORDER[t];
        const Py_ssize_t ii = i + DY[k], jj = j + DX[k];
        if (ii >= 0 && ii < h && jj >= 0 && jj < w) acc += c[k * n + r] * x[ii * w + jj];
    }
    return acc;
}

/* The rows above and below only, for the pixels j0 <= j < j1 of an interior row (0 < i < h-1,
 * 0 < j0, j1 < w): no bounds tests and unit stride, so the compiler vectorises it. */
static inline void vertical_row(float *restrict acc, const float *restrict x, const float *restrict c,
                                Py_ssize_t n, Py_ssize_t w, Py_ssize_t i, Py_ssize_t j0, Py_ssize_t j1) {
    const float *xm = x + (i - 1) * w, *xp = x + (i + 1) * w;
    const Py_ssize_t r0 = i * w;
    const float *c0 = c + r0, *c1 = c + n + r0, *c2 = c + 2 * n + r0, *c5 = c + 5 * n + r0, *c6 = c + 6 * n + r0,
                *c7 = c + 7 * n + r0;
    for (Py_ssize_t j = j0; j < j1; j++)
        acc[j] = c0[j] * xm[j - 1] + c1[j] * xm[j] + c2[j] * xm[j + 1] + c5[j] * xp[j - 1] + c6[j] * xp[j]
               + c7[j] * xp[j + 1];
}

/* All eight neighbours for the pixels j0 <= j < j1 of an interior row: acc[j] for each. */
static inline void coupled_row(float *restrict acc, const float *restrict x, const float *restrict c,
                               Py_ssize_t n, Py_ssize_t w, Py_ssize_t i, Py_ssize_t j0, Py_ssize_t j1) {
    vertical_row(acc, x, c, n, w, i, j0, j1);
    const float *x0 = x + i * w, *c3 = c + 3 * n + i * w, *c4 = c + 4 * n + i * w;
    for (Py_ssize_t j = j0; j < j1; j++) acc[j] = acc[j] + c3[j] * x0[j - 1] + c4[j] * x0[j + 1];
}

/* Row i of one channel's y = b - A x (or A x when b is NULL), into yrow; acc is w floats of
 * scratch.  x and b are that channel's planes. */
static inline void residual_row(float *restrict yrow, float *restrict acc, const float *x, const float *b,
                                const float *d, const float *c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t i) {
    const int inner = i > 0 && i < h - 1 && w > 2;
    if (inner) coupled_row(acc, x, c, h * w, w, i, 1, w - 1);
    for (Py_ssize_t j = 0; j < w; j++)
        if (!inner || j == 0 || j == w - 1) acc[j] = coupled(x, c, h, w, i, j);
    const float *di = d + i * w, *xi = x + i * w;
    if (b) {
        const float *bi = b + i * w;
        for (Py_ssize_t j = 0; j < w; j++) yrow[j] = bi[j] - (di[j] * xi[j] - acc[j]);
    } else {
        for (Py_ssize_t j = 0; j < w; j++) yrow[j] = di[j] * xi[j] - acc[j];
    }
}

/* y = b - A x  (or y = A x when b is NULL), row by row; a row's couplings are read from memory
 * once and stay in cache for every channel. */
static void residual(float *y, const float *x, const float *b, const float *d, const float *c,
                     Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int threads) {
    const Py_ssize_t n = h * w;
#pragma omp parallel num_threads(threads)
    {
        float *acc = malloc(w * sizeof(float));
#pragma omp for schedule(static)
        for (Py_ssize_t i = 0; i < h; i++)
            for (Py_ssize_t ch = 0; ch < nc; ch++)
                residual_row(y + ch * n + i * w, acc, x + ch * n, b ? b + ch * n : NULL, d, c, h, w, i);
        free(acc);
    }
}

/* One four-colour Gauss-Seidel sweep, colours (row%2, col%2) in the order
 * (0,0) (0,1) (1,0) (1,1), or the reverse.  Rows of one parity never couple,
 * so they run in parallel; inside a row the rows above and below are summed for every
 * pixel at once, then the two column parities add their left and right neighbours in turn. */
static void gauss_seidel(float *x, const float *b, const float *d, const float *c,
                         Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int reverse, int threads) {
    const Py_ssize_t n = h * w;
    for (int pass = 0; pass < 2; pass++) {
        const int ri = reverse ? 1 - pass : pass;
#pragma omp parallel num_threads(threads)
        {
            float *acc = malloc(w * sizeof(float));
#pragma omp for schedule(static)
            for (Py_ssize_t i = ri; i < h; i += 2)
                for (Py_ssize_t ch = 0; ch < nc; ch++) {
                    float *xc = x + ch * n, *xi = xc + i * w;
                    const float *bi = b + ch * n + i * w, *di = d + i * w;
                    const float *c3 = c + 3 * n + i * w, *c4 = c + 4 * n + i * w;
                    const int inner = i > 0 && i < h - 1 && w > 2;
                    if (inner) vertical_row(acc, xc, c, n, w, i, 1, w - 1);
                    for (int half = 0; half < 2; half++) {
                        const int cj = reverse ? 1 - half : half;
                        if (inner) {
                            for (Py_ssize_t j = cj ? 1 : 2; j < w - 1; j += 2)  /* columns 0, w - 1: slow path */
                                xi[j] = (bi[j] + (acc[j] + c3[j] * xi[j - 1] + c4[j] * xi[j + 1])) / di[j];
                            if (cj == 0) xi[0] = (bi[0] + coupled(xc, c, h, w, i, 0)) / di[0];
                            if ((w - 1) % 2 == cj) xi[w - 1] = (bi[w - 1] + coupled(xc, c, h, w, i, w - 1)) / di[w - 1];
                        } else {
                            for (Py_ssize_t j = cj; j < w; j += 2) xi[j] = (bi[j] + coupled(xc, c, h, w, i, j)) / di[j];
                        }
                    }
                }
            free(acc);
        }
    }
}

/* Interpolation weight planes, in the order of tinct.multigrid.Prolongation.planes(). */
enum { EW, EE, VN, VS, NW, NE, SW, SE };

/* x = P xc, or x += P xc when add: fine (2I, 2J) takes coarse (I, J); the others mix their
 * two or four coarse neighbours.  Rows and columns go by parity, so no pixel tests which it is. */
static void prolong(float *x, const float *xc, const float *wt, Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w,
                    int add, int threads) {
    const Py_ssize_t hc = (h + 1) / 2, wc = (w + 1) / 2, n = h * w, m = hc * wc;
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        float *xf = x + ch * n;
        const float *c = xc + ch * m;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t i = 0; i < h; i++) {
            const Py_ssize_t I = i / 2, r = I * wc;
            float *row = xf + i * w;
            const float *c0 = c + r, *c1 = c + r + wc;  /* coarse rows I and I + 1 */
            if (!(i & 1)) {
                const float *ew = wt + EW * m + r, *ee = wt + EE * m + r;
                for (Py_ssize_t J = 0; 2 * J < w; J++) {
                    const float v = c0[J];
                    row[2 * J] = add ? row[2 * J] + v : v;
                }
                for (Py_ssize_t J = 0; 2 * J + 1 < w; J++) {
                    const float v = ew[J] * c0[J] + ee[J] * c0[J + 1];
                    row[2 * J + 1] = add ? row[2 * J + 1] + v : v;
                }
            } else {
                const float *vn = wt + VN * m + r, *vs = wt + VS * m + r, *nw = wt + NW * m + r,
                            *ne = wt + NE * m + r, *sw = wt + SW * m + r, *se = wt + SE * m + r;
                for (Py_ssize_t J = 0; 2 * J < w; J++) {
                    const float v = vn[J] * c0[J] + vs[J] * c1[J];
                    row[2 * J] = add ? row[2 * J] + v : v;
                }
                for (Py_ssize_t J = 0; 2 * J + 1 < w; J++) {
                    const float v = nw[J] * c0[J] + ne[J] * c0[J + 1] + sw[J] * c1[J] + se[J] * c1[J + 1];
                    row[2 * J + 1] = add ? row[2 * J + 1] + v : v;
                }
            }
        }
    }
}

/* Coarse point (I, J) of one channel's P^T r, from the fine rows 2I-1 (fm), 2I (f0) and 2I+1 (fp):
 * the grid's edges, where some of the eight neighbours are missing. */
static inline float restrict_point(const float *fm, const float *f0, const float *fp, const float *wt,
                                   Py_ssize_t I, Py_ssize_t J, Py_ssize_t hc, Py_ssize_t wc) {
    const Py_ssize_t m = hc * wc, j = 2 * J, q = I * wc + J;
    const int north = I > 0, south = I < hc - 1, west = J > 0, east = J < wc - 1;
    float acc = f0[j];
    if (east) acc += wt[EW * m + q] * f0[j + 1];
    if (west) acc += wt[EE * m + q - 1] * f0[j - 1];
    if (south) acc += wt[VN * m + q] * fp[j];
    if (north) acc += wt[VS * m + q - wc] * fm[j];
    if (south && east) acc += wt[NW * m + q] * fp[j + 1];
    if (south && west) acc += wt[NE * m + q - 1] * fp[j - 1];
    if (north && east) acc += wt[SW * m + q - wc] * fm[j + 1];
    if (north && west) acc += wt[SE * m + q - wc - 1] * fm[j - 1];
    return acc;
}

/* Coarse row I of one channel's P^T r, into out (that channel's coarse plane), from the fine
 * rows 2I-1 (fm, NULL for I = 0), 2I (f0) and 2I+1 (fp, NULL for the last row).  Inside the grid
 * the same sum, in the same order, without the tests. */
static inline void restrict_row(float *out, const float *fm, const float *f0, const float *fp, const float *wt,
                                Py_ssize_t I, Py_ssize_t hc, Py_ssize_t wc) {
    const Py_ssize_t m = hc * wc, r = I * wc;
    if (I == 0 || I == hc - 1 || wc < 3) {
        for (Py_ssize_t J = 0; J < wc; J++) out[r + J] = restrict_point(fm, f0, fp, wt, I, J, hc, wc);
        return;
    }
    const float *ew = wt + EW * m + r, *ee = wt + EE * m + r - 1, *vn = wt + VN * m + r, *vs = wt + VS * m + r - wc,
                *nw = wt + NW * m + r, *ne = wt + NE * m + r - 1, *sw = wt + SW * m + r - wc,
                *se = wt + SE * m + r - wc - 1;
    out[r] = restrict_point(fm, f0, fp, wt, I, 0, hc, wc);
    for (Py_ssize_t J = 1; J < wc - 1; J++) {
        const Py_ssize_t j = 2 * J;
        out[r + J] = f0[j] + ew[J] * f0[j + 1] + ee[J] * f0[j - 1] + vn[J] * fp[j] + vs[J] * fm[j]
                   + nw[J] * fp[j + 1] + ne[J] * fp[j - 1] + sw[J] * fm[j + 1] + se[J] * fm[j - 1];
    }
    out[r + wc - 1] = restrict_point(fm, f0, fp, wt, I, wc - 1, hc, wc);
}

/* rc = P^T r: each coarse point gathers the fine pixels that interpolate from it. */
static void restrict_(float *rc, const float *r, const float *wt, Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w,
                      int threads) {
    const Py_ssize_t hc = (h + 1) / 2, wc = (w + 1) / 2, n = h * w, m = hc * wc;
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        const float *f = r + ch * n;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t I = 0; I < hc; I++)
            restrict_row(rc + ch * m, I > 0 ? f + (2 * I - 1) * w : NULL, f + 2 * I * w,
                         I < hc - 1 ? f + (2 * I + 1) * w : NULL, wt, I, hc, wc);
    }
}

/* rc = P^T (b - A x) in one pass: the residual lives only in three rows per channel (rows 2I-1,
 * 2I, 2I+1 for coarse row I), computed as `residual` computes them, so the answer is the same bits
 * as `residual` then `restrict_` without writing and re-reading a residual the size of x.  Each
 * thread takes blocks of RR_ROWS coarse rows and carries row 2I+1 over as the next row's 2I-1. */
#define RR_ROWS 32
static void restrict_residual(float *rc, const float *x, const float *b, const float *d, const float *c,
                              const float *wt, Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int threads) {
    const Py_ssize_t hc = (h + 1) / 2, wc = (w + 1) / 2, n = h * w, m = hc * wc;
    const Py_ssize_t blocks = (hc + RR_ROWS - 1) / RR_ROWS;
#pragma omp parallel num_threads(threads)
    {
        float *acc = malloc(w * sizeof(float)), *ring = malloc(3 * nc * w * sizeof(float));
#pragma omp for schedule(static)
        for (Py_ssize_t blk = 0; blk < blocks; blk++) {
            const Py_ssize_t I0 = blk * RR_ROWS, I1 = I0 + RR_ROWS < hc ? I0 + RR_ROWS : hc;
            for (Py_ssize_t I = I0; I < I1; I++) {
                const Py_ssize_t i = 2 * I, first = I == I0 && I > 0 ? i - 1 : i, last = I < hc - 1 ? i + 1 : i;
                for (Py_ssize_t row = first; row <= last; row++)  /* a row's couplings stay in cache for every channel */
                    for (Py_ssize_t ch = 0; ch < nc; ch++)
                        residual_row(ring + (3 * ch + row % 3) * w, acc, x + ch * n, b + ch * n, d, c, h, w, row);
                for (Py_ssize_t ch = 0; ch < nc; ch++) {
                    const float *rows = ring + 3 * ch * w;
                    restrict_row(rc + ch * m, I > 0 ? rows + (i - 1) % 3 * w : NULL, rows + i % 3 * w,
                                 I < hc - 1 ? rows + (i + 1) % 3 * w : NULL, wt, I, hc, wc);
                }
            }
        }
        free(acc);
        free(ring);
    }
}

/* Gram-Schmidt against m stored vectors (addresses in vecs, each (C, H, W) like u), in one
 * pass each way instead of one per vector: out[i, ch] = v_i[ch] . u[ch] in double, and
 * u[ch] -= sum_i coef[i, ch] v_i[ch]. */
#define MAX_VECS 64
#define SUM_BLOCK 4096
#define LANES 8

static void dots(double *out, const float *const *vecs, const float *u, Py_ssize_t m, Py_ssize_t nc,
                 Py_ssize_t n, int threads) {
    /* Sums over fixed blocks of SUM_BLOCK pixels, added up in block order: the same answer, to the
     * last bit, whatever the thread count (tinct colorize --cluster promises local mode's bytes).
     * Inside a block each vector keeps LANES running sums (pixel p goes to lane p % LANES), added
     * up in lane order at the end: independent sums the compiler turns into vector adds, where
     * one running sum would wait on every add before it. */
    const Py_ssize_t nb = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    double *part = malloc(sizeof(double) * (size_t)(nb > 0 ? nb : 1) * (size_t)m);
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
#pragma omp parallel for num_threads(part ? threads : 1) schedule(static)
        for (Py_ssize_t b = 0; b < nb; b++) {
            const Py_ssize_t start = b * SUM_BLOCK, end = (b + 1) * SUM_BLOCK < n ? (b + 1) * SUM_BLOCK : n;
            const float *ub = u + ch * n + start;
            const Py_ssize_t len = end - start, whole = len - len % LANES;
            for (Py_ssize_t i = 0; i < m; i++) {
                const float *vb = vecs[i] + ch * n + start;
                double lane[LANES] = {0};
                for (Py_ssize_t p = 0; p < whole; p += LANES)
                    for (int k = 0; k < LANES; k++) lane[k] += (double)ub[p + k] * (double)vb[p + k];
                for (Py_ssize_t p = whole; p < len; p++) lane[p - whole] += (double)ub[p] * (double)vb[p];
                double acc = 0.0;
                for (int k = 0; k < LANES; k++) acc += lane[k];
                if (part) part[b * m + i] = acc;
                else out[i * nc + ch] = (b ? out[i * nc + ch] : 0.0) + acc;  /* no memory: in order, one thread */
            }
        }
        if (part)
            for (Py_ssize_t i = 0; i < m; i++) {
                double total = 0.0;
                for (Py_ssize_t b = 0; b < nb; b++) total += part[b * m + i];
                out[i * nc + ch] = total;
            }
        else if (nb == 0)
            for (Py_ssize_t i = 0; i < m; i++) out[i * nc + ch] = 0.0;
    }
    free(part);
}

/* out[ch] = sum u[ch] * v[ch], accumulated in double (float sums lose digits at megapixels). */
static void dot(double *out, const float *u, const float *v, Py_ssize_t nc, Py_ssize_t n, int threads) {
    const float *vecs[1] = {v};
    dots(out, vecs, u, 1, nc, n, threads);
}

static void combine(float *u, const float *const *vecs, const float *coef, Py_ssize_t m, Py_ssize_t nc,
                    Py_ssize_t n, int threads) {
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        float cf[MAX_VECS];
        for (Py_ssize_t i = 0; i < m; i++) cf[i] = coef[i * nc + ch];
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t p = 0; p < n; p++) {
            float acc = 0.f;
            for (Py_ssize_t i = 0; i < m; i++) acc += cf[i] * vecs[i][ch * n + p];
            u[ch * n + p] -= acc;
        }
    }
}

/* out (C, N) = b (C, N) times the dense matrix whose transpose is t (N, N): the coarsest grid's
 * exact solve.  Each output sums its N terms in index order whichever thread owns it (BLAS splits
 * the sum by thread count, and the answer moved by an ulp between a laptop and a cluster node). */
#define DENSE_BLOCK 256
static void dense(float *out, const float *t, const float *b, Py_ssize_t nc, Py_ssize_t n, int threads) {
    const Py_ssize_t nb = (n + DENSE_BLOCK - 1) / DENSE_BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (Py_ssize_t ch = 0; ch < nc; ch++)
        for (Py_ssize_t blk = 0; blk < nb; blk++) {
            const Py_ssize_t i0 = blk * DENSE_BLOCK, i1 = i0 + DENSE_BLOCK < n ? i0 + DENSE_BLOCK : n;
            float *o = out + ch * n;
            for (Py_ssize_t i = i0; i < i1; i++) o[i] = 0.f;
            for (Py_ssize_t j = 0; j < n; j++) {
                const float bj = b[ch * n + j], *tj = t + j * n;
                for (Py_ssize_t i = i0; i < i1; i++) o[i] += tj[i] * bj;
            }
        }
}

#define INV_LOG100 0.217147241f /* 1 / log(100): the authors' floor on sigma is the nearest d^2 / log(100) */

/* exp(-u) for u >= 0 in arithmetic the compiler vectorises (expf is a library call a value):
 * 2^n times Cephes' polynomial for the remainder, within 1e-7 relatively; e^-87 from u = 87 on. */
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math") /* see weights_row */
static inline float exp_neg(float u) {
    const float x = u < 87.f ? -u : -87.f;
    const float n = (x * 1.44269504f + 12582912.f) - 12582912.f; /* round(x / ln 2), no library call */
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* The Levin weights of tinct.levin.affinities: wt (8, H, W) from the lightness y (H, W) and
 * params = {0.6 / edge_sensitivity, variance floor, weight floor}.  A border pixel, with its
 * neighbours inside the image: */
static void weights_at(float *wt, const float *y, const float *params, Py_ssize_t h, Py_ssize_t w, Py_ssize_t i,
                       Py_ssize_t j) {
    const Py_ssize_t n = h * w, r = i * w + j;
    const float yc = y[r];
    float nb[8], sum = yc, nearest = INFINITY;
    int ok[8], count = 1;
    for (int k = 0; k < 8; k++) {
        const Py_ssize_t ii = i + DY[k], jj = j + DX[k];
        ok[k] = ii >= 0 && ii < h && jj >= 0 && jj < w;
        nb[k] = ok[k] ? y[ii * w + jj] : 0.f;
        if (ok[k]) {
            sum += nb[k];
            count++;
            const float d2 = (nb[k] - yc) * (nb[k] - yc);
            if (d2 < nearest) nearest = d2;
        }
    }
    const float mean = sum / count;
    float var = (yc - mean) * (yc - mean);
    for (int k = 0; k < 8; k++)
        if (ok[k]) var += (nb[k] - mean) * (nb[k] - mean);
    var /= count;
    float sigma = params[0] * var;
    if (nearest * INV_LOG100 > sigma) sigma = nearest * INV_LOG100;
    if (sigma < params[1]) sigma = params[1];
    float e[8], total = 0.f;
    for (int k = 0; k < 8; k++) {
        e[k] = 0.f;
        if (ok[k]) {
            e[k] = exp_neg((nb[k] - yc) * (nb[k] - yc) / sigma);
            if (e[k] < params[2]) e[k] = params[2];
            total += e[k];
        }
    }
    for (int k = 0; k < 8; k++) wt[k * n + r] = e[k] / total;
}

/* An interior row: the same sums in the same order, all eight neighbours there, no tests, so
 * the compiler runs the pixels in vector lanes (which it does only when told that no code here
 * watches for floating-point exceptions: the values are the same). */
static void weights_row(float *wt, const float *y, const float *params, Py_ssize_t h, Py_ssize_t w, Py_ssize_t i) {
    const Py_ssize_t n = h * w;
    const float scale = params[0], min_var = params[1], floor_ = params[2];
    const float *up = y + (i - 1) * w, *mid = y + i * w, *dn = y + (i + 1) * w;
    float *out = wt + i * w;
#pragma omp simd
    for (Py_ssize_t j = 1; j < w - 1; j++) {
        const float c = mid[j];
        const float v[8] = {up[j - 1], up[j], up[j + 1], mid[j - 1], mid[j + 1], dn[j - 1], dn[j], dn[j + 1]};
        float sum = c, nearest = INFINITY, d[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            sum += v[k];
            d[k] = (v[k] - c) * (v[k] - c);
            nearest = d[k] < nearest ? d[k] : nearest;
        }
        const float mean = sum / 9.f;
        float var = (c - mean) * (c - mean);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) var += (v[k] - mean) * (v[k] - mean);
        var /= 9.f;
        float sigma = scale * var;
        sigma = nearest * INV_LOG100 > sigma ? nearest * INV_LOG100 : sigma;
        sigma = sigma < min_var ? min_var : sigma;
        float e[8], total = 0.f;
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const float x = exp_neg(d[k] / sigma);
            e[k] = x < floor_ ? floor_ : x;
            total += e[k];
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) out[k * n + j] = e[k] / total;
    }
}

#pragma GCC pop_options

static void affinities(float *wt, const float *y, const float *params, Py_ssize_t h, Py_ssize_t w, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t i = 0; i < h; i++) {
        if (i == 0 || i == h - 1 || w < 3) {
            for (Py_ssize_t j = 0; j < w; j++) weights_at(wt, y, params, h, w, i, j);
            continue;
        }
        weights_at(wt, y, params, h, w, i, 0);
        weights_row(wt, y, params, h, w, i);
        weights_at(wt, y, params, h, w, i, w - 1);
    }
}

/* The proxy's colour brought to full size (the `live` quality): out (C, H, W) at each fine pixel
 * is its 2x2 nearest proxy pixels' values (small (C, h, w), h = ceil(H/f)), weighted bilinearly
 * and by how close each one's lightness (guide_small (h, w)) is to the pixel's own (guide
 * (H, W)): exp(-(dL)^2 * params[0]).  Joint bilateral upsampling (Kopf et al. 2007), so colour
 * edges fall on the full-resolution lightness edges.  Where every neighbour's lightness is far
 * off, the plain bilinear weights decide. */
/* The two proxy samples around full-size position `at` along one axis of `size` proxy samples,
 * and how far towards the second it lies (the pixel centres of a downsample by f). */
static inline float between(Py_ssize_t at, int f, Py_ssize_t size, Py_ssize_t *k0, Py_ssize_t *k1) {
    float p = (at + 0.5f) / f - 0.5f;
    if (p < 0.f) p = 0.f;
    *k0 = (Py_ssize_t)p;
    if (*k0 > size - 1) *k0 = size - 1;
    *k1 = *k0 + 1 < size ? *k0 + 1 : size - 1;
    return p - *k0 > 1.f ? 1.f : p - *k0;
}

/* exp(-u) from a table of EXP_STEPS points per unit, linearly interpolated (relative error below
 * 1e-5: four expf a pixel were most of a 12 MP upsample); 0 from EXP_MAX on and for NaN, 1 below 0. */
#define EXP_STEPS 128
#define EXP_MAX 60
static inline float decay(const float *table, float u) {
    if (!(u < (float)EXP_MAX)) return 0.f;
    const float p = u > 0.f ? u * EXP_STEPS : 0.f;
    const int k = (int)p;
    return table[k] + (p - k) * (table[k + 1] - table[k]);
}

static void upsample(float *out, const float *small, const float *guide, const float *guide_small,
                     const float *params, Py_ssize_t nc, Py_ssize_t H, Py_ssize_t W, int f, int threads) {
    const Py_ssize_t h = (H + f - 1) / f, w = (W + f - 1) / f, n = H * W, m = h * w;
    const float range = params[0];
    float table[EXP_MAX * EXP_STEPS + 2];
    for (int k = 0; k < EXP_MAX * EXP_STEPS + 2; k++) table[k] = expf(-(float)k / EXP_STEPS);
    /* Every row has the same columns: their proxy samples and fractions, worked out once. */
    Py_ssize_t *cols = malloc(2 * W * sizeof(Py_ssize_t));
    float *fracs = malloc(W * sizeof(float));
    const int cached = cols && fracs;
    for (Py_ssize_t x = 0; cached && x < W; x++) fracs[x] = between(x, f, w, &cols[2 * x], &cols[2 * x + 1]);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t y = 0; y < H; y++) {
        Py_ssize_t i0, i1;
        const float ty = between(y, f, h, &i0, &i1);
        for (Py_ssize_t x = 0; x < W; x++) {
            Py_ssize_t j0, j1;
            float tx;
            if (cached) {
                j0 = cols[2 * x], j1 = cols[2 * x + 1], tx = fracs[x];
            } else {
                tx = between(x, f, w, &j0, &j1);
            }
            const Py_ssize_t q[4] = {i0 * w + j0, i0 * w + j1, i1 * w + j0, i1 * w + j1};
            const float lin[4] = {(1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx};
            const float g = guide[y * W + x];
            float wt[4], total = 0.f;
            for (int k = 0; k < 4; k++) {
                const float d = g - guide_small[q[k]];
                wt[k] = lin[k] * decay(table, d * d * range);
                total += wt[k];
            }
            if (!(total > 1e-20f)) {
                total = 1.f;
                for (int k = 0; k < 4; k++) wt[k] = lin[k];
            }
            for (Py_ssize_t ch = 0; ch < nc; ch++) {
                const float *s = small + ch * m;
                out[ch * n + y * W + x] = (wt[0] * s[q[0]] + wt[1] * s[q[1]] + wt[2] * s[q[2]] + wt[3] * s[q[3]]) / total;
            }
        }
    }
    free(cols);
    free(fracs);
}

/* The two ends of every job, one pass each: the photo's Lab lightness straight from the caller's
 * pixels, and the answer's sRGB (L kept, a,b pulled towards grey until the colour fits) straight
 * into the caller's layout.  Per-pixel arithmetic only, so the result does not depend on the
 * thread count.  The matrices (D65 white folded in) and the sRGB decoding tables come from
 * tinct.color.lab, where the conventions are written; the CIE constants below are the same ones. */
enum { U8 = 0, U16 = 1, F32 = 2 };

static inline float decoded(const void *src, int depth, Py_ssize_t k, const float *table) {
    if (depth == U8) return table[((const unsigned char *)src)[k]];
    if (depth == U16) return table[((const unsigned short *)src)[k]];
    const float v = ((const float *)src)[k];
    return v > 0.04045f ? powf((v + 0.055f) / 1.055f, 2.4f) : v / 12.92f;
}

static inline float lab_l(float y) {  /* Lab L of luminance Y (white 1) */
    const float f = y > 0.008856f ? cbrtf(y) : 7.787f * y + 16.f / 116.f;
    return 116.f * f - 16.f;
}

static inline unsigned code(const void *src, int depth, Py_ssize_t k) {
    return depth == U8 ? ((const unsigned char *)src)[k] : ((const unsigned short *)src)[k];
}

/* L (H, W) of src (H, W, C) with C = 1, 2 (grey) or 3, 4 (RGB), alpha ignored; y_row: Y of linear RGB.
 * An 8- or 16-bit grey pixel's L is a function of its code alone: a table of every code's L (the same
 * arithmetic, so the same bits) turns a cube root a pixel into a lookup, for grey photos and for the
 * grey pixels of RGB ones (a black-and-white photo in an editor's RGB layer). */
static void lightness(float *L, const void *src, const float *table, const float *y_row, Py_ssize_t nc,
                      Py_ssize_t h, Py_ssize_t w, int depth, int threads) {
    const Py_ssize_t g = nc >= 3 ? 1 : 0, n = h * w;
    const float grey = y_row[0] + y_row[1] + y_row[2];
    const Py_ssize_t codes = depth == F32 ? 0 : depth == U8 ? 256 : 65536;
    float *per_code = codes && n > 4 * codes ? malloc(codes * sizeof(float)) : NULL;
    if (per_code)
        for (Py_ssize_t v = 0; v < codes; v++)
            per_code[v] = lab_l(g ? y_row[0] * table[v] + y_row[1] * table[v] + y_row[2] * table[v] : grey * table[v]);
    if (per_code && !g) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t i = 0; i < n; i++) L[i] = per_code[code(src, depth, i * nc)];
        free(per_code);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t k = i * nc;
        if (per_code) {
            const unsigned r = code(src, depth, k);
            if (r == code(src, depth, k + 1) && r == code(src, depth, k + 2)) {
                L[i] = per_code[r];
                continue;
            }
        }
        const float y = g ? y_row[0] * decoded(src, depth, k, table) + y_row[1] * decoded(src, depth, k + 1, table)
                                + y_row[2] * decoded(src, depth, k + 2, table)
                          : grey * decoded(src, depth, k, table);
        L[i] = lab_l(y);
    }
    free(per_code);
}

static inline float cube_or_linear(float f) {
    const float cube = f * f * f, line = (f - 16.f / 116.f) * (1.f / 7.787f);
    return f > 0.2068966f ? cube : line;
}

/* Linear RGB of (L, a, b); returns whether it lies inside 0..1 on every channel. */
static inline int lab_linear(float *rgb, float L, float a, float b, const float *m) {
    const float fy = (L + 16.f) * (1.f / 116.f), t[3] = {cube_or_linear(a * (1.f / 500.f) + fy), cube_or_linear(fy),
                                                         cube_or_linear(fy - b * (1.f / 200.f))};
    int inside = 1;
    for (int c = 0; c < 3; c++) {
        rgb[c] = m[3 * c] * t[0] + m[3 * c + 1] * t[1] + m[3 * c + 2] * t[2];
        inside &= rgb[c] >= 0.f && rgb[c] <= 1.f;
    }
    return inside;
}

/* out (H, W, C) in depth (C = 3, or 4 with alpha (H, W) of the same depth copied in) = sRGB of
 * L (H, W) and ab (2, H, W), L clamped to 0..100; an out-of-gamut colour keeps its hue and L with
 * its chroma scaled by the largest of 16 bisection steps that fits (lab.lab_to_srgb_keep_l).
 * params: XYZ/white -> RGB (9); the linear values where 8-bit codes 1..255 begin, then +inf (256);
 * the code at each of 4097 linear values k / 4096 (4097). */
static void encode(void *out, const float *L, const float *ab, const float *params, const void *alpha,
                   Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int depth, int threads) {
    const Py_ssize_t n = h * w;
    const float *m = params, *starts = params + 9, *below = params + 9 + 256;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t i = 0; i < n; i++) {
        const float l = L[i] < 0.f ? 0.f : (L[i] > 100.f ? 100.f : L[i]), a = ab[i], b = ab[n + i];
        float rgb[3];
        if (!lab_linear(rgb, l, a, b, m)) {
            float lo = 0.f, hi = 1.f;
            for (int s = 0; s < 16; s++) {
                const float mid = (lo + hi) / 2;
                if (lab_linear(rgb, l, mid * a, mid * b, m)) lo = mid; else hi = mid;
            }
            lab_linear(rgb, l, lo * a, lo * b, m);
        }
        for (int c = 0; c < 3; c++) {
            const float v = rgb[c] >= 0.f ? (rgb[c] <= 1.f ? rgb[c] : 1.f) : 0.f;  /* NaN -> 0: a safe index */
            if (depth == U8) {  /* the code whose rounding interval holds v: a table look-up, no power */
                int code = (int)below[(int)(v * 4096.f)];
                code += v >= starts[code];  /* a 1/4096 bucket holds at most one code's start */
                ((unsigned char *)out)[i * nc + c] = (unsigned char)code;
                continue;
            }
            float e = v > 0.0031308f ? 1.055f * powf(v, 1.f / 2.4f) - 0.055f : v * 12.92f;
            e = e < 0.f ? 0.f : (e > 1.f ? 1.f : e);
            if (depth == U16) ((unsigned short *)out)[i * nc + c] = (unsigned short)floorf(e * 65535.f + 0.5f);
            else ((float *)out)[i * nc + c] = e;
        }
        if (nc == 4) {
            if (depth == U8) ((unsigned char *)out)[i * 4 + 3] = ((const unsigned char *)alpha)[i];
            else if (depth == U16) ((unsigned short *)out)[i * 4 + 3] = ((const unsigned short *)alpha)[i];
            else ((float *)out)[i * 4 + 3] = ((const float *)alpha)[i];
        }
    }
}

/* Every entry point takes five addresses, C, H, W, a flag and a thread count. */
static int parse(PyObject *args, void **p, Py_ssize_t *dims, int *flag, int *threads) {
    Py_ssize_t a[5];
    if (!PyArg_ParseTuple(args, "nnnnnnnnii", &a[0], &a[1], &a[2], &a[3], &a[4],
                          &dims[0], &dims[1], &dims[2], flag, threads))
        return 0;
    for (int i = 0; i < 5; i++) p[i] = (void *)a[i];
    return 1;
}

/* An entry point: the common arguments parsed, CHECK (may return NULL), then CALL without the GIL.
   In CALL, p[0..4] are the five addresses, C/H/W the dims, flag the flag, threads the thread count. */
#define ENTRY(name, CHECK, CALL)                                            \
    static PyObject *py_##name(PyObject *self, PyObject *args) {           \
        void *p[5];                                                         \
        Py_ssize_t dims[3];                                                 \
        int flag, threads;                                                  \
        if (!parse(args, p, dims, &flag, &threads)) return NULL;            \
        Py_ssize_t C = dims[0], H = dims[1], W = dims[2];                   \
        (void)C; (void)H; (void)W;                                          \
        CHECK                                                               \
        Py_BEGIN_ALLOW_THREADS                                              \
        CALL;                                                               \
        Py_END_ALLOW_THREADS                                                \
        Py_RETURN_NONE;                                                     \
    }
#define AT_MOST_MAX_VECS \
    if ((Py_ssize_t)p[3] > MAX_VECS) return PyErr_Format(PyExc_ValueError, "at most %d vectors", MAX_VECS);

/* residual(y, x, b_or_0, d, c, C, H, W, 0, threads) */
ENTRY(residual, , residual(p[0], p[1], p[2], p[3], p[4], C, H, W, threads))
/* gauss_seidel(x, b, d, c, 0, C, H, W, reverse, threads) */
ENTRY(gauss_seidel, , gauss_seidel(p[0], p[1], p[2], p[3], C, H, W, flag, threads))
/* prolong(x, xc, weights, 0, 0, C, H, W, add, threads) with the fine H, W */
ENTRY(prolong, , prolong(p[0], p[1], p[2], C, H, W, flag, threads))
/* restrict(rc, r, weights, 0, 0, C, H, W, 0, threads) with the fine H, W */
ENTRY(restrict, , restrict_(p[0], p[1], p[2], C, H, W, threads))
/* dot(out_float64, u, v, 0, 0, C, H, W, 0, threads) */
ENTRY(dot, , dot(p[0], p[1], p[2], C, H * W, threads))
/* affinities(wt, y, params, 0, 0, 1, H, W, 0, threads) */
ENTRY(affinities, , affinities(p[0], p[1], p[2], H, W, threads))
/* dots(out_float64 (m, C), vecs (int64 addresses), u, m, 0, C, H, W, 0, threads) */
ENTRY(dots, AT_MOST_MAX_VECS, dots(p[0], p[1], p[2], (Py_ssize_t)p[3], C, H * W, threads))
/* combine(u, vecs (int64 addresses), coef_float32 (m, C), m, 0, C, H, W, 0, threads) */
ENTRY(combine, AT_MOST_MAX_VECS, combine(p[0], p[1], p[2], (Py_ssize_t)p[3], C, H * W, threads))
/* upsample(out, small, guide, guide_small, params (float32: 1 / (2 sigma^2)), C, H, W, factor, threads) */
ENTRY(upsample, if (flag < 1) return PyErr_Format(PyExc_ValueError, "factor must be >= 1");,
      upsample(p[0], p[1], p[2], p[3], p[4], C, H, W, flag, threads))
/* dense(out, t, b, 0, 0, C, N, 1, 0, threads): out (C, N) = b @ t */
ENTRY(dense, , dense(p[0], p[1], p[2], C, H, threads))
#define A_DEPTH if (flag < U8 || flag > F32) return PyErr_Format(PyExc_ValueError, "unknown depth %d", flag);
/* lightness(L, src, table_or_0, y_row, 0, C, H, W, depth (0 uint8, 1 uint16, 2 float32), threads) */
ENTRY(lightness, A_DEPTH if (C < 1 || C > 4) return PyErr_Format(PyExc_ValueError, "%zd channels", C);,
      lightness(p[0], p[1], p[2], p[3], C, H, W, flag, threads))
/* encode(out, L, ab, params (9 + 256 + 4097 float32), alpha_or_0, C (3 or 4), H, W, depth, threads) */
ENTRY(encode, A_DEPTH if (C != 3 && C != 4) return PyErr_Format(PyExc_ValueError, "%zd channels", C);,
      encode(p[0], p[1], p[2], p[3], p[4], C, H, W, flag, threads))

/* restrict_residual(rc, x, b, d, c, weights, C, H, W, threads) with the fine H, W: six addresses. */
static PyObject *py_restrict_residual(PyObject *self, PyObject *args) {
    Py_ssize_t a[6], C, H, W;
    int threads;
    if (!PyArg_ParseTuple(args, "nnnnnnnnni", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &C, &H, &W, &threads))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    restrict_residual((float *)a[0], (const float *)a[1], (const float *)a[2], (const float *)a[3],
                      (const float *)a[4], (const float *)a[5], C, H, W, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"residual", py_residual, METH_VARARGS, "y = b - A x, or A x when b is 0."},
    {"gauss_seidel", py_gauss_seidel, METH_VARARGS, "One four-colour Gauss-Seidel sweep in place."},
    {"prolong", py_prolong, METH_VARARGS, "x = P xc (or x += P xc), black-box interpolation."},
    {"restrict", py_restrict, METH_VARARGS, "rc = P^T r."},
    {"restrict_residual", py_restrict_residual, METH_VARARGS, "rc = P^T (b - A x) in one pass."},
    {"dot", py_dot, METH_VARARGS, "Per-channel inner products, accumulated in double."},
    {"affinities", py_affinities, METH_VARARGS, "The Levin weights of a lightness image."},
    {"dots", py_dots, METH_VARARGS, "Inner products of one vector with m others, in double."},
    {"combine", py_combine, METH_VARARGS, "u -= sum_i coef_i v_i."},
    {"upsample", py_upsample, METH_VARARGS, "Joint bilateral upsampling of a proxy by its lightness."},
    {"dense", py_dense, METH_VARARGS, "out = b @ t for a dense t, each sum in index order."},
    {"lightness", py_lightness, METH_VARARGS, "Lab lightness of an image in the caller's layout."},
    {"encode", py_encode, METH_VARARGS, "sRGB of L and ab, L kept, into the caller's layout."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
