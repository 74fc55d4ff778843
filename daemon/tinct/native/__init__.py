"""Native code, one doorway (`kernels`): the fused C loops of `_kernels.c` on the CPU and the Triton
kernels of `triton_kernels` on CUDA, for the solver's stencils and for the Lab conversions at the
two ends of every colorization.  Everyone above takes tensors; only `kernels` spells out addresses.
"""
