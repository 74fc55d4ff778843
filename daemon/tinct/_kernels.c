/* Fused CPU kernels for the nine-point stencils of tinct.stencil.
 *
 * PyTorch applies a stencil as sixteen separate passes over memory; these loops
 * do it in one, which is what makes the solver fast on a laptop CPU.  They are
 * an optional accelerator: tinct.stencil falls back to plain PyTorch (and uses
 * PyTorch on CUDA), and the tests check both give the same numbers.
 *
 * Layout (all float32, C-contiguous): x, y, b are (C, H, W); d is (H, W);
 * c is (8, H, W) with the neighbour order of tinct.stencil.OFFSETS.
 * Arguments are raw addresses (tensor.data_ptr()) and sizes; the GIL is
 * released while the loops run, so the daemon keeps answering meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

static const int DY[8] = {-1, -1, -1, 0, 0, 1, 1, 1};
static const int DX[8] = {-1, 0, 1, -1, 1, -1, 0, 1};

/* sum_k c[k, i, j] * x[i + dy_k, j + dx_k] for one pixel, neighbours outside read as 0 */
static inline float coupled(const float *x, const float *c, Py_ssize_t h, Py_ssize_t w,
                            Py_ssize_t i, Py_ssize_t j) {
    const Py_ssize_t n = h * w, r = i * w + j;
    float acc = 0.f;
    if (i > 0 && i < h - 1 && j > 0 && j < w - 1) {
        acc = c[r] * x[r - w - 1] + c[n + r] * x[r - w] + c[2 * n + r] * x[r - w + 1]
            + c[3 * n + r] * x[r - 1] + c[4 * n + r] * x[r + 1]
            + c[5 * n + r] * x[r + w - 1] + c[6 * n + r] * x[r + w] + c[7 * n + r] * x[r + w + 1];
    } else {
        for (int k = 0; k < 8; k++) {
            Py_ssize_t ii = i + DY[k], jj = j + DX[k];
            if (ii >= 0 && ii < h && jj >= 0 && jj < w)
                acc += c[k * n + r] * x[ii * w + jj];
        }
    }
    return acc;
}

/* y = b - A x  (or y = A x when b is NULL) */
static void residual(float *y, const float *x, const float *b, const float *d, const float *c,
                     Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int threads) {
    const Py_ssize_t n = h * w;
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        const float *xc = x + ch * n;
        const float *bc = b ? b + ch * n : NULL;
        float *yc = y + ch * n;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (Py_ssize_t i = 0; i < h; i++)
            for (Py_ssize_t j = 0; j < w; j++) {
                Py_ssize_t r = i * w + j;
                float ax = d[r] * xc[r] - coupled(xc, c, h, w, i, j);
                yc[r] = bc ? bc[r] - ax : ax;
            }
    }
}

/* One four-colour Gauss-Seidel sweep, colours (row%2, col%2) in the order
 * (0,0) (0,1) (1,0) (1,1), or the reverse.  Rows of one parity never couple,
 * so they run in parallel; inside a row the two column parities go in turn. */
static void gauss_seidel(float *x, const float *b, const float *d, const float *c,
                         Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, int reverse, int threads) {
    const Py_ssize_t n = h * w;
    for (Py_ssize_t ch = 0; ch < nc; ch++) {
        float *xc = x + ch * n;
        const float *bc = b + ch * n;
        for (int pass = 0; pass < 2; pass++) {
            const int ri = reverse ? 1 - pass : pass;
#pragma omp parallel for num_threads(threads) schedule(static)
            for (Py_ssize_t i = ri; i < h; i += 2)
                for (int half = 0; half < 2; half++) {
                    const int cj = reverse ? 1 - half : half;
                    for (Py_ssize_t j = cj; j < w; j += 2) {
                        Py_ssize_t r = i * w + j;
                        xc[r] = (bc[r] + coupled(xc, c, h, w, i, j)) / d[r];
                    }
                }
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

static PyMethodDef methods[] = {
    {"residual", py_residual, METH_VARARGS, "y = b - A x, or A x when b is 0."},
    {"gauss_seidel", py_gauss_seidel, METH_VARARGS, "One four-colour Gauss-Seidel sweep in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
