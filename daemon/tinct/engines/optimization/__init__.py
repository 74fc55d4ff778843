"""The optimization engine: Levin, Lischinski & Weiss (2004) solved matrix-free.

`engine` (the registry's entry) -> `levin` (the systems and `solve_ab`) -> `multigrid`
(the preconditioner) and `krylov` (GCR, CG) -> `stencil` (9-point operators) -> `tinct.native.kernels`,
the one doorway to native code (`graphs` replays a solve's preconditioner on CUDA); `proxy` is the
`live` quality's smaller problem and its edge-aware way back.
"""
