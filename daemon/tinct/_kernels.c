/* Fused CPU kernels for the nine-point stencils of tinct.stencil.
 *
 * PyTorch applies a stencil as sixteen separate passes over memory; these loops
 * do it in one, which is what makes the solver fast on a laptop CPU.  They are
 * an optional accelerator: tinct.stencil falls back to plain PyTorch (and uses
 * PyTorch on CUDA), and the tests check both give the same numbers.
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
#include <stddef.h>

static const int DY[8] = {-1, -1, -1, 0, 0, 1, 1, 1};
static const int DX[8] = {-1, 0, 1, -1, 1, -1, 0, 1};

/* Channels are handled in blocks of up to BLOCK at each pixel, so the couplings are read
 * once per block rather than once per channel (the stencils are memory-bound). */
#define BLOCK 4

/* acc[q] = sum_k c[k, i, j] * x[q][i + dy_k, j + dx_k] for the m channels of a block at one
 * pixel (x[q] = x + q * n), neighbours outside read as 0 */
static inline void coupled(float *acc, const float *x, const float *c, Py_ssize_t h, Py_ssize_t w,
                           Py_ssize_t i, Py_ssize_t j, int m) {
    const Py_ssize_t n = h * w, r = i * w + j;
    if (i > 0 && i < h - 1 && j > 0 && j < w - 1) {
        const float c0 = c[r], c1 = c[n + r], c2 = c[2 * n + r], c3 = c[3 * n + r], c4 = c[4 * n + r],
                    c5 = c[5 * n + r], c6 = c[6 * n + r], c7 = c[7 * n + r];
        for (int q = 0; q < m; q++) {
            const float *xq = x + q * n;
            acc[q] = c0 * xq[r - w - 1] + c1 * xq[r - w] + c2 * xq[r - w + 1] + c3 * xq[r - 1] + c4 * xq[r + 1]
                   + c5 * xq[r + w - 1] + c6 * xq[r + w] + c7 * xq[r + w + 1];
        }
    } else {
        for (int q = 0; q < m; q++) acc[q] = 0.f;
        for (int k = 0; k < 8; k++) {
            Py_ssize_t ii = i + DY[k], jj = j + DX[k];
            if (ii >= 0 && ii < h && jj >= 0 && jj < w)
                for (int q = 0; q < m; q++) acc[q] += c[k * n + r] * x[q * n + ii * w + jj];
        }
    }
}

/* y = b - A x  (or y = A x when b is NULL) */
static void residual(float *y, const float *x, const float *b, const float *d, const float *c,
                     Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int threads) {
    const Py_ssize_t n = h * w;
    for (Py_ssize_t ch = 0; ch < nc; ch += BLOCK) {
        const int m = nc - ch < BLOCK ? (int)(nc - ch) : BLOCK;
        const float *xc = x + ch * n;
        const float *bc = b ? b + ch * n : NULL;
        float *yc = y + ch * n;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t i = 0; i < h; i++)
            for (Py_ssize_t j = 0; j < w; j++) {
                const Py_ssize_t r = i * w + j;
                float acc[BLOCK];
                coupled(acc, xc, c, h, w, i, j, m);
                for (int q = 0; q < m; q++) {
                    const float ax = d[r] * xc[q * n + r] - acc[q];
                    yc[q * n + r] = bc ? bc[q * n + r] - ax : ax;
                }
            }
    }
}

/* One four-colour Gauss-Seidel sweep, colours (row%2, col%2) in the order
 * (0,0) (0,1) (1,0) (1,1), or the reverse.  Rows of one parity never couple,
 * so they run in parallel; inside a row the two column parities go in turn. */
static void gauss_seidel(float *x, const float *b, const float *d, const float *c,
                         Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int reverse, int threads) {
    const Py_ssize_t n = h * w;
    for (Py_ssize_t ch = 0; ch < nc; ch += BLOCK) {
        const int m = nc - ch < BLOCK ? (int)(nc - ch) : BLOCK;
        float *xc = x + ch * n;
        const float *bc = b + ch * n;
        for (int pass = 0; pass < 2; pass++) {
            const int ri = reverse ? 1 - pass : pass;
#pragma omp parallel for num_threads(threads) schedule(static)
            for (Py_ssize_t i = ri; i < h; i += 2)
                for (int half = 0; half < 2; half++) {
                    const int cj = reverse ? 1 - half : half;
                    for (Py_ssize_t j = cj; j < w; j += 2) {
                        const Py_ssize_t r = i * w + j;
                        float acc[BLOCK];
                        coupled(acc, xc, c, h, w, i, j, m);
                        for (int q = 0; q < m; q++) xc[q * n + r] = (bc[q * n + r] + acc[q]) / d[r];
                    }
                }
        }
    }
}

/* Interpolation weight planes (see tinct.multigrid.Prolongation.PLANES). */
enum { EW, EE, VN, VS, NW, NE, SW, SE };

/* x = P xc, or x += P xc when add: fine (2I, 2J) takes coarse (I, J); the others mix their
 * two or four coarse neighbours. */
static void prolong(float *x, const float *xc, const float *wt, Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w,
                    int add, int threads) {
    const Py_ssize_t hc = (h + 1) / 2, wc = (w + 1) / 2, n = h * w, m = hc * wc;
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        float *xf = x + ch * n;
        const float *c = xc + ch * m;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t i = 0; i < h; i++) {
            const Py_ssize_t I = i / 2;
            float *row = xf + i * w;
            for (Py_ssize_t j = 0; j < w; j++) {
                const Py_ssize_t J = j / 2, q = I * wc + J;
                float v;
                if (!(i & 1) && !(j & 1)) v = c[q];
                else if (!(i & 1)) v = wt[EW * m + q] * c[q] + wt[EE * m + q] * c[q + 1];
                else if (!(j & 1)) v = wt[VN * m + q] * c[q] + wt[VS * m + q] * c[q + wc];
                else v = wt[NW * m + q] * c[q] + wt[NE * m + q] * c[q + 1]
                       + wt[SW * m + q] * c[q + wc] + wt[SE * m + q] * c[q + wc + 1];
                row[j] = add ? row[j] + v : v;
            }
        }
    }
}

/* rc = P^T r: each coarse point gathers the fine pixels that interpolate from it. */
static void restrict_(float *rc, const float *r, const float *wt, Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w,
                      int threads) {
    const Py_ssize_t hc = (h + 1) / 2, wc = (w + 1) / 2, n = h * w, m = hc * wc;
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        const float *f = r + ch * n;
        float *out = rc + ch * m;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t I = 0; I < hc; I++)
            for (Py_ssize_t J = 0; J < wc; J++) {
                const Py_ssize_t i = 2 * I, j = 2 * J, q = I * wc + J;
                const int north = I > 0, south = I < hc - 1, west = J > 0, east = J < wc - 1;
                float acc = f[i * w + j];
                if (east) acc += wt[EW * m + q] * f[i * w + j + 1];
                if (west) acc += wt[EE * m + q - 1] * f[i * w + j - 1];
                if (south) acc += wt[VN * m + q] * f[(i + 1) * w + j];
                if (north) acc += wt[VS * m + q - wc] * f[(i - 1) * w + j];
                if (south && east) acc += wt[NW * m + q] * f[(i + 1) * w + j + 1];
                if (south && west) acc += wt[NE * m + q - 1] * f[(i + 1) * w + j - 1];
                if (north && east) acc += wt[SW * m + q - wc] * f[(i - 1) * w + j + 1];
                if (north && west) acc += wt[SE * m + q - wc - 1] * f[(i - 1) * w + j - 1];
                out[q] = acc;
            }
    }
}

/* out[ch] = sum u[ch] * v[ch], accumulated in double (float sums lose digits at megapixels). */
static void dot(double *out, const float *u, const float *v, Py_ssize_t nc, Py_ssize_t n, int threads) {
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        const float *a = u + ch * n, *b = v + ch * n;
        double acc = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : acc)
        for (Py_ssize_t i = 0; i < n; i++) acc += (double)a[i] * (double)b[i];
        out[ch] = acc;
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

/* residual(y, x, b_or_0, d, c, C, H, W, 0, threads) */
static PyObject *py_residual(PyObject *self, PyObject *args) {
    void *p[5];
    Py_ssize_t dims[3];
    int flag, threads;
    if (!parse(args, p, dims, &flag, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    residual(p[0], p[1], p[2], p[3], p[4], dims[0], dims[1], dims[2], threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gauss_seidel(x, b, d, c, 0, C, H, W, reverse, threads) */
static PyObject *py_gauss_seidel(PyObject *self, PyObject *args) {
    void *p[5];
    Py_ssize_t dims[3];
    int reverse, threads;
    if (!parse(args, p, dims, &reverse, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    gauss_seidel(p[0], p[1], p[2], p[3], dims[0], dims[1], dims[2], reverse, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* prolong(x, xc, weights, 0, 0, C, H, W, add, threads) with the fine H, W */
static PyObject *py_prolong(PyObject *self, PyObject *args) {
    void *p[5];
    Py_ssize_t dims[3];
    int add, threads;
    if (!parse(args, p, dims, &add, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    prolong(p[0], p[1], p[2], dims[0], dims[1], dims[2], add, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* restrict(rc, r, weights, 0, 0, C, H, W, 0, threads) with the fine H, W */
static PyObject *py_restrict(PyObject *self, PyObject *args) {
    void *p[5];
    Py_ssize_t dims[3];
    int flag, threads;
    if (!parse(args, p, dims, &flag, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    restrict_(p[0], p[1], p[2], dims[0], dims[1], dims[2], threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* dot(out_float64, u, v, 0, 0, C, H, W, 0, threads) */
static PyObject *py_dot(PyObject *self, PyObject *args) {
    void *p[5];
    Py_ssize_t dims[3];
    int flag, threads;
    if (!parse(args, p, dims, &flag, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    dot(p[0], p[1], p[2], dims[0], dims[1] * dims[2], threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"residual", py_residual, METH_VARARGS, "y = b - A x, or A x when b is 0."},
    {"gauss_seidel", py_gauss_seidel, METH_VARARGS, "One four-colour Gauss-Seidel sweep in place."},
    {"prolong", py_prolong, METH_VARARGS, "x = P xc (or x += P xc), black-box interpolation."},
    {"restrict", py_restrict, METH_VARARGS, "rc = P^T r."},
    {"dot", py_dot, METH_VARARGS, "Per-channel inner products, accumulated in double."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
