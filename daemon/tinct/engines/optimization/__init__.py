"""The optimization engine: Levin, Lischinski & Weiss (2004) solved matrix-free.

`engine` (the registry's entry) -> `levin` (the systems and `solve_ab`) -> `multigrid`
(the preconditioner) and `krylov` (GCR, CG, BiCGStab) -> `stencil` (9-point operators) ->
`kernels`, the one doorway to native code: the optional C loops of `_kernels.c` on the CPU, the
Triton kernels of `triton_kernels` on CUDA (`graphs` replays a solve's preconditioner there).
"""
