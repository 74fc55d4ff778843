"""The optimization engine: Levin, Lischinski & Weiss (2004) solved matrix-free.

`engine` (the registry's entry) -> `levin` (the systems and `solve_ab`) -> `multigrid`
(the preconditioner) and `krylov` (GCR, CG, BiCGStab) -> `stencil` (9-point operators) ->
`kernels`, the one doorway to the optional C loops in `_kernels.c`.
"""
